"""The simulated bench's processes: started detached, recorded in pid files, stopped without leftovers.

Every part of a sim (broker, cloud stand-in, router, sshd, board) runs in its own session and process
group, so one signal reaches it and everything it started (the board's hub binary, sshd's session
children). `rig sim up` returns while the parts keep running; `rig sim down` — possibly in another process,
after the one that started them crashed or was SIGKILLed — finds them through `DIR/run/<name>.json`.
A record holds the pid, the process group and the kernel's start time of the leader (so a recycled pid
is never signalled). Stopping is SIGTERM to the group → wait → SIGKILL, then waiting until no member of the
group is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rig.errors import InfrastructureError

_POLL_S = 0.02


@dataclass(frozen=True)
class ProcessRecord:
    """What is needed to find one started process again, from any later process."""

    name: str
    pid: int
    pgid: int
    start_ticks: int
    argv: list[str]
    log: str


def start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None when no such process lives."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = _stat_fields(stat)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _stat_fields(stat: str) -> list[str] | None:
    """Fields 3… of /proc/PID/stat (state first); None for the empty read of a process that just left."""
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    end = stat.rfind(")")
    fields = stat[end + 2 :].split() if end >= 0 else []
    return fields if len(fields) > 19 else None


def group_members(pgid: int) -> list[int]:
    """Living (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = _stat_fields(stat)
        if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _reap(pid: int) -> None:
    """Collect `pid`'s exit status if it is our own child (tests start parts in-process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class Processes:
    """The processes of one sim, recorded in `run_dir` (one JSON file per part)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def _file(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ProcessRecord:
        """Start `argv` detached (own session, stdin from /dev/null, output appended to `log`)."""
        if self.alive(name):
            raise InfrastructureError(f"sim part {name!r} is already running (see {self._file(name)})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            try:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=None if env is None else dict(env),
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise InfrastructureError(f"sim part {name!r}: cannot start {argv[0]}: {exc}") from None
        ticks = start_ticks(proc.pid) or 0
        record = ProcessRecord(name, proc.pid, proc.pid, ticks, list(argv), str(log))
        self._write(record)
        return record

    def adopt(self, name: str, pid: int, argv: Sequence[str], log: Path) -> ProcessRecord:
        """Record a process some other code started in its own session (e.g. the broker)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = ProcessRecord(name, pid, os.getpgid(pid), start_ticks(pid) or 0, list(argv), str(log))
        self._write(record)
        return record

    def _write(self, record: ProcessRecord) -> None:
        tmp = self._file(record.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(self._file(record.name))

    def record(self, name: str) -> ProcessRecord | None:
        try:
            data = json.loads(self._file(name).read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise InfrastructureError(f"{self._file(name)}: damaged pid file ({exc}); delete it") from None
        return ProcessRecord(**data)

    def names(self) -> list[str]:
        if not self.run_dir.is_dir():
            return []
        return sorted(p.stem for p in self.run_dir.glob("*.json"))

    def alive(self, name: str) -> bool:
        """True when the recorded leader still runs (same pid *and* same start time)."""
        record = self.record(name)
        if record is None:
            return False
        _reap(record.pid)
        ticks = start_ticks(record.pid)
        return ticks is not None and (record.start_ticks == 0 or ticks == record.start_ticks)

    def stop(self, name: str, timeout: float = 5.0) -> bool:
        """Stop part `name` and its whole process group; True if something had to be stopped."""
        record = self.record(name)
        if record is None:
            return False
        _reap(record.pid)
        ticks = start_ticks(record.pid)
        # Linux never hands out a pid still in use as a process group id, so a living process with
        # the leader's pid but another start time means the group is gone and the pid was recycled.
        recycled = ticks is not None and record.start_ticks != 0 and ticks != record.start_ticks
        if recycled or (ticks is None and not group_members(record.pgid)):
            self._file(name).unlink(missing_ok=True)
            return False
        stop_group(record.pgid, record.pid, timeout)
        self._file(name).unlink(missing_ok=True)
        return True

    def stop_all(self, timeout: float = 5.0) -> list[str]:
        """Stop every recorded part, newest first; the names of those that were running."""
        records = [r for r in (self.record(n) for n in self.names()) if r is not None]
        stopped = []
        for record in sorted(records, key=lambda r: r.start_ticks, reverse=True):
            if self.stop(record.name, timeout):
                stopped.append(record.name)
        return stopped


def sim_processes(folder: Path) -> list[int]:
    """Living processes of the sim in `folder`: its Python parts (`-m rig.sim.…`) and its hub binary,
    recognised by their command line naming the folder. Never a shell or tool that merely mentions it."""
    found = []
    folder_b = os.fsencode(str(folder))
    hub_b = os.fsencode(str(folder / "hub"))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ours = argv[0].startswith(hub_b) or (
            len(argv) > 2 and argv[1] == b"-m" and argv[2].startswith(b"rig.sim.")
        )
        if ours and any(folder_b in arg for arg in argv) and start_ticks(int(entry.name)) is not None:
            found.append(int(entry.name))
    return found


def sweep(folder: Path, timeout: float = 5.0) -> list[int]:
    """Stop the sim's stragglers (`sim_processes`) that left its parts' process groups.

    sshd starts each login in a new session, so a router command still streaming when its sshd is
    stopped (`simrouter capture`) is in no recorded group; its command line names the sim's folder.
    """
    stragglers = sim_processes(folder)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in stragglers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while stragglers and time.monotonic() < deadline:
            for pid in stragglers:
                _reap(pid)
            stragglers = [pid for pid in stragglers if start_ticks(pid) is not None]
            time.sleep(_POLL_S)
    return stragglers


def stop_group(pgid: int, leader: int, timeout: float) -> None:
    """SIGTERM the group, wait up to `timeout`, SIGKILL what is left, and wait until it is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(leader)
            if not group_members(pgid):
                return
            time.sleep(_POLL_S)
    left = group_members(pgid)
    if left:
        raise InfrastructureError(
            f"process group {pgid} survived SIGKILL (pids {left}); check `ps -g {pgid}`"
        )


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, timeout: float, *, what: str, log: Path | None = None) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:`port`; InfrastructureError if not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                hint = f" — see {log}" if log is not None else ""
                raise InfrastructureError(
                    f"{what} is not listening on 127.0.0.1:{port} after {timeout:.0f} s{hint}"
                ) from None
            time.sleep(0.05)
