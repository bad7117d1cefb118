"""The bench lease across real processes: one owner at a time, the owner named, no stale lock.

The other owner is always a separate Python process holding a `BenchLease`, so the lease file, the
flock guard and the pid check are exercised as they are between a nightly job and a developer.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig.drivers.lease import BenchLease
from rig.errors import InfrastructureError
from rig.events import EventLog

HOLDER = """
import sys, time
from pathlib import Path
from rig.drivers.lease import BenchLease
lease = BenchLease(Path(sys.argv[1]), "lab-1", sys.argv[2])
lease.open(timeout=10)
print("held", flush=True)
hold_for = float(sys.argv[3])
time.sleep(hold_for)
lease.close()
print("released", flush=True)
"""


class Holder:
    """Another process that takes the lease and holds it for a while (or until killed)."""

    def __init__(self, state_dir: Path, purpose: str, hold_for: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(state_dir), purpose, str(hold_for)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "held"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.stop()


def test_a_second_process_is_refused_with_the_owner_named(tmp_path: Path, holders: list[Holder]) -> None:
    holders.append(Holder(tmp_path, "nightly", 30))
    pid = holders[0].process.pid

    with pytest.raises(InfrastructureError) as caught:
        BenchLease(tmp_path, "lab-1", "manual").open(timeout=0.5)

    message = str(caught.value)
    owner = f"{getpass.getuser()}@{socket.gethostname()} pid {pid} (nightly) since "
    assert message.startswith(f"bench lab-1 is in use by {owner}")
    assert message.endswith("or if that run is gone: rig bench lock break --bench <this bench file>")


def test_owner_reports_who_holds_the_bench(tmp_path: Path, holders: list[Holder]) -> None:
    holders.append(Holder(tmp_path, "gate", 30))
    owner = BenchLease(tmp_path, "lab-1", "manual").owner()
    assert owner is not None
    assert (owner["pid"], owner["purpose"], owner["user"]) == (
        holders[0].process.pid,
        "gate",
        getpass.getuser(),
    )


def test_a_waiting_process_gets_the_lease_when_the_owner_releases_it(
    tmp_path: Path, holders: list[Holder]
) -> None:
    holders.append(Holder(tmp_path, "nightly", 0.5))
    events = EventLog()
    lease = BenchLease(tmp_path, "lab-1", "manual", events=events)
    lease.open(timeout=10)
    try:
        assert lease.owner() is not None and lease.owner()["pid"] == os.getpid()
        assert [e.kind for e in events.history] == ["lease_waiting", "lease_acquired"]
        assert events.history[0].fields["owner"]["purpose"] == "nightly"
    finally:
        lease.close()


def test_an_owner_killed_with_sigkill_leaves_no_stale_lock(tmp_path: Path, holders: list[Holder]) -> None:
    holders.append(Holder(tmp_path, "nightly", 30))
    holders[0].process.send_signal(signal.SIGKILL)
    holders[0].process.wait(timeout=5)

    events = EventLog()
    lease = BenchLease(tmp_path, "lab-1", "manual", events=events)
    assert lease.owner() is None
    lease.open(timeout=0)  # no waiting: the lease lapsed with its owner
    lease.close()
    lapsed = [e for e in events.history if e.kind == "lease_lapsed"]
    assert [e.fields["reason"] for e in lapsed] == ["its process is gone"]


def test_a_lease_from_another_host_counts_until_it_expires(tmp_path: Path) -> None:
    record = {"token": "x", "user": "ci", "host": "bench-runner-7", "pid": 1, "purpose": "nightly"}
    lease_file = tmp_path / "lab-1.lease"
    now = time.time()
    lease_file.write_text(json.dumps({**record, "since": now, "renewed": now, "expires": now + 30}))
    with pytest.raises(InfrastructureError, match=r"in use by ci@bench-runner-7 pid 1 \(nightly\)"):
        BenchLease(tmp_path, "lab-1", "manual").open(timeout=0)

    lease_file.write_text(json.dumps({**record, "since": now - 99, "renewed": now - 60, "expires": now - 30}))
    with BenchLease(tmp_path, "lab-1", "manual") as lease:
        assert lease.owner() is not None and lease.owner()["purpose"] == "manual"
    assert not lease_file.exists()


def test_the_owner_renews_its_lease_while_it_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rig.drivers.lease.RENEW_EVERY_S", 0.05)
    with BenchLease(tmp_path, "lab-1", "nightly") as lease:
        first = json.loads(lease.path.read_text())["expires"]
        time.sleep(0.3)
        assert json.loads(lease.path.read_text())["expires"] > first
        lease.check()


def test_breaking_a_lease_is_noticed_by_its_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rig.drivers.lease.RENEW_EVERY_S", 0.05)
    events = EventLog()
    owner = BenchLease(tmp_path, "lab-1", "nightly", events=events)
    owner.open(timeout=0)
    broken = BenchLease(tmp_path, "lab-1", "manual").break_()
    assert broken is not None and broken["purpose"] == "nightly"
    deadline = time.monotonic() + 5
    while owner.error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(InfrastructureError, match=r"lost the bench lease: it is now held by nobody"):
        owner.check()
    assert "lease_lost" in [e.kind for e in events.history]
    owner.close()


def test_releasing_never_removes_somebody_elses_lease(tmp_path: Path, holders: list[Holder]) -> None:
    mine = BenchLease(tmp_path, "lab-1", "manual")
    mine.open(timeout=0)
    mine.break_()
    holders.append(Holder(tmp_path, "nightly", 30))
    mine.close()
    assert BenchLease(tmp_path, "lab-1", "x").owner()["pid"] == holders[0].process.pid
