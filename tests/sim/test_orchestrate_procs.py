"""Process records of the sim: found again from another process, whole groups stopped, recycled pids spared."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig.sim.procs import Processes, group_members, start_ticks


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    table = Processes(tmp_path / "run")
    yield table
    table.stop_all(timeout=1)


def living(pids: list[int]) -> list[int]:
    return [pid for pid in pids if start_ticks(pid) is not None]


def wait_members(pgid: int, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while len(group_members(pgid)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    members = group_members(pgid)
    assert len(members) == count
    return members


def stop_from_another_process(run_dir: Path) -> list[str]:
    code = (
        "import json, pathlib; from rig.sim.procs import Processes; "
        f"print(json.dumps(Processes(pathlib.Path({str(run_dir)!r})).stop_all()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(done.stdout))


def test_a_part_and_its_children_are_stopped_by_a_later_controller(
    processes: Processes, tmp_path: Path
) -> None:
    record = processes.start("part", ["sh", "-c", "sleep 300 & sleep 300; wait"], log=tmp_path / "part.log")
    assert processes.alive("part")
    members = wait_members(record.pgid, 3)  # the shell and its two sleeps
    assert stop_from_another_process(processes.run_dir) == ["part"]
    assert living(members) == []
    assert processes.names() == []


def test_a_group_whose_leader_exited_is_still_stopped(processes: Processes, tmp_path: Path) -> None:
    record = processes.start("part", ["sh", "-c", "sleep 300 & exit 0"], log=tmp_path / "part.log")
    deadline = time.monotonic() + 10
    while processes.alive("part") and time.monotonic() < deadline:
        time.sleep(0.01)
    orphans = wait_members(record.pgid, 1)  # the sleep lives on in the group without its leader
    assert processes.stop("part") is True
    assert living(orphans) == []


def test_a_part_that_ignores_sigterm_is_killed(processes: Processes, tmp_path: Path) -> None:
    record = processes.start("stubborn", ["sh", "-c", "trap '' TERM; sleep 300"], log=tmp_path / "s.log")
    members = wait_members(record.pgid, 2)
    assert processes.stop("stubborn", timeout=0.3) is True
    assert living(members) == []


def test_a_recycled_pid_is_never_signalled(processes: Processes, tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        ticks = start_ticks(stranger.pid)
        assert ticks is not None
        # A record of an earlier part that had the same pid but started at another time.
        record = {"name": "old", "pid": stranger.pid, "pgid": stranger.pid, "start_ticks": ticks - 1,
                  "argv": ["old"], "log": "old.log"}  # fmt: skip
        processes.run_dir.mkdir(parents=True)
        (processes.run_dir / "old.json").write_text(json.dumps(record))
        assert not processes.alive("old")
        assert processes.stop("old") is False
        assert stranger.poll() is None
        assert processes.names() == []
    finally:
        os.kill(stranger.pid, signal.SIGKILL)
        stranger.wait(timeout=5)


def test_records_carry_what_is_needed_to_find_the_process_again(processes: Processes, tmp_path: Path) -> None:
    record = processes.start("part", ["sleep", "300"], log=tmp_path / "part.log")
    assert processes.record("part") == record
    assert dataclasses.asdict(record)["pgid"] == record.pid == os.getpgid(record.pid)
    assert record.start_ticks == start_ticks(record.pid)
