"""The bench's lease as a labgrid place, against a real `labgrid-coordinator` on the loopback.

The coordinator and labgrid's client come from `build/labgrid` (`make setup` installs them in an
environment of their own). Each test starts a coordinator on a free port, creates the bench's place,
and holds the rig's lease against it: acquired for the run, released after, a place someone else
holds waited for and then refused naming the holder, a place a killed run left acquired repaired.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rig.cli import main
from rig.config import LabgridLeaseConfig
from rig.drivers.labgrid import LabgridPlace
from rig.errors import ConfigError, InfrastructureError
from rig.events import EventLog
from tests.peers.drivers import bench_dict, free_port, stop_process, wait_listening

LABGRID = Path(
    os.environ.get("RIG_LABGRID_BIN", Path(__file__).resolve().parents[2] / "build" / "labgrid" / "bin")
)
CLIENT = LABGRID / "labgrid-client"


@dataclass
class Coordinator:
    address: str

    def client(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **({"LG_USERNAME": user} if user else {})}
        return subprocess.run(
            [str(CLIENT), "-x", self.address, *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    if not CLIENT.is_file():
        pytest.fail(f"labgrid is not installed in {LABGRID} — run `make setup` (it installs build/labgrid)")
    port = free_port()
    log = (tmp_path / "coordinator.log").open("wb")
    process = subprocess.Popen(
        [str(LABGRID / "labgrid-coordinator"), "-l", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        stdout=log,
        stderr=log,
    )
    try:
        wait_listening(port, 15.0, process)
        running = Coordinator(f"127.0.0.1:{port}")
        created = running.client("-p", "bench-1", "create")
        assert created.returncode == 0, created.stderr
        yield running
    finally:
        stop_process(process)
        log.close()


def lease(
    coordinator: Coordinator, tmp_path: Path, events: EventLog | None = None, timeout: float = 0.0
) -> LabgridPlace:
    config = LabgridLeaseConfig(coordinator=coordinator.address, place="bench-1", client=str(CLIENT))
    return LabgridPlace(
        config, tmp_path / "state", "lab-1", "nightly", events=events, acquire_timeout=timeout
    )


def holder(coordinator: Coordinator) -> str:
    shown = coordinator.client("-p", "bench-1", "show")
    return next(line.split(":", 1)[1].strip() for line in shown.stdout.splitlines() if "acquired:" in line)


def test_the_place_is_acquired_for_the_run_and_released_after(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    events = EventLog()
    place = lease(coordinator, tmp_path, events)
    with place:
        assert place.held and holder(coordinator) == place.me
        place.check()
    assert holder(coordinator) == "None"
    assert [e.kind for e in events.history] == ["lease_acquired", "lease_released"]
    assert not place.record_path.exists()


def test_a_place_held_by_someone_else_is_waited_for_then_refused_naming_the_holder(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    taken = coordinator.client("-p", "bench-1", "acquire", user="alice")
    assert taken.returncode == 0, taken.stderr
    events = EventLog()
    place = lease(coordinator, tmp_path, events, timeout=1.5)
    with pytest.raises(
        InfrastructureError, match=r"labgrid place bench-1 on 127\.0\.0\.1:\d+ is held by \S+/alice"
    ) as caught:
        place.open()
    assert caught.value.part == "lease"
    assert "labgrid-client -x" in str(caught.value) and "release" in str(caught.value)
    assert [e.kind for e in events.history] == ["lease_waiting"]
    assert not place.held


def test_a_place_freed_while_waiting_is_taken(coordinator: Coordinator, tmp_path: Path) -> None:
    assert coordinator.client("-p", "bench-1", "acquire", user="alice").returncode == 0
    releaser = subprocess.Popen(
        [sys.executable, "-c", "import time, subprocess, sys; time.sleep(1.5); subprocess.run(sys.argv[1:], check=True)",
         str(CLIENT), "-x", coordinator.address, "-p", "bench-1", "release"],
        env={**os.environ, "LG_USERNAME": "alice"},
    )  # fmt: skip
    try:
        place = lease(coordinator, tmp_path, timeout=20.0)
        with place:
            assert holder(coordinator) == place.me
    finally:
        releaser.wait(timeout=30)


KILLED_RUN = """
import sys, time
from pathlib import Path
from rig.cli import main
from rig.config import LabgridLeaseConfig
from rig.drivers.labgrid import LabgridPlace
config = LabgridLeaseConfig(coordinator=sys.argv[1], place="bench-1", client=sys.argv[2])
LabgridPlace(config, Path(sys.argv[3]), "lab-1", "nightly").open()
print("acquired", flush=True)
time.sleep(60)
"""


def test_a_place_a_killed_run_left_acquired_is_released_and_taken_by_the_next_run(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, coordinator.address, str(CLIENT), str(tmp_path / "state")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert run.stdout is not None and run.stdout.readline().strip() == "acquired"
    finally:
        run.kill()
        run.wait(timeout=10)
        if run.stdout is not None:
            run.stdout.close()
    events = EventLog()
    place = lease(coordinator, tmp_path, events)
    assert holder(coordinator) == place.me  # left acquired by the dead run
    with place:
        assert holder(coordinator) == place.me
    kinds = [e.kind for e in events.history]
    assert kinds == ["lease_repaired", "lease_acquired", "lease_released"]
    assert next(e for e in events.history if e.kind == "lease_repaired").fields["previous"]["pid"] == run.pid


def test_an_unreachable_coordinator_and_a_missing_client_say_what_to_check(tmp_path: Path) -> None:
    gone = Coordinator(f"127.0.0.1:{free_port()}")
    with pytest.raises(InfrastructureError, match=r"Could not connect to coordinator — check lease\.labgrid"):
        lease(gone, tmp_path).open()
    config = LabgridLeaseConfig(coordinator=gone.address, place="bench-1", client=str(tmp_path / "no-client"))
    with pytest.raises(ConfigError, match=r"lease\.labgrid\.client: .*no-client not found"):
        LabgridPlace(config, tmp_path, "lab-1", "nightly").open()


def test_the_bench_and_rig_bench_lock_use_the_labgrid_place(coordinator: Coordinator, tmp_path: Path) -> None:
    data = bench_dict({"router": {"host": "127.0.0.1", "user": "root", "agent": True, "host_keys": [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBP4cwUs++3a9OxhogTfNxh9WtvilhbCCC12D2QUOS04"]}},
        {"landline": {"host": "router", "activate": ["true"], "verify": {"command": "true", "expect": "."}, "rtt_ms": 30}},
        "landline")  # fmt: skip
    data["lease"] = {
        "labgrid": {"coordinator": coordinator.address, "place": "bench-1", "client": str(CLIENT)}
    }
    data["state_dir"] = str(tmp_path / "state")
    bench_file = tmp_path / "lab.yaml"
    bench_file.write_text(yaml.safe_dump(data))
    assert coordinator.client("-p", "bench-1", "acquire", user="alice").returncode == 0
    status = CliRunner().invoke(main, ["bench", "lock", "status", "--bench", str(bench_file)])
    assert (
        status.exit_code == 0
        and "held by" in status.stdout
        and "/alice (labgrid place bench-1)" in status.stdout
    )
    broke = CliRunner().invoke(main, ["bench", "lock", "break", "--bench", str(bench_file)])
    assert broke.exit_code == 0 and "broke the lease of" in broke.stdout
    assert holder(coordinator) == "None"
