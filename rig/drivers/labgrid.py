"""The bench's lease as a labgrid place: reserved through a lab's labgrid coordinator, not a file of the rig's.

A lab that already shares its benches through a `labgrid-coordinator` names the bench's place in the
bench file (`lease.labgrid`): for a run, the rig acquires that place (so `labgrid-client` users see it
taken, by this host and user) and releases it afterwards. It speaks to the coordinator through
labgrid's own client, `labgrid-client` (its `acquire`, `release` and `show` commands), run as a
process with a timeout: labgrid's Python package depends on `pyserial-labgrid`, a fork that installs
over pyserial's own `serial` package, which the rig's UART driver is built on — so labgrid lives in
an environment of its own (`make setup` installs it into `build/labgrid`) and the rig calls its client.

- A place someone else holds is waited for (up to the lease timeout, polling), then refused with one
  line naming the holder and how to free it.
- A run that dies without releasing (SIGKILL, power loss) leaves a record in `state_dir`; the next run
  on this host finds the place still acquired by this user with the record's process gone, releases
  it (`lease_repaired`) and acquires it again.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from rig.config import LabgridLeaseConfig
from rig.drivers.part import Part
from rig.errors import ConfigError, InfrastructureError
from rig.events import EventLog

CLIENT_TIMEOUT_S = 30.0  # one labgrid-client call (it fails at once on an unreachable coordinator)
POLL_S = 1.0  # how often a held place is looked at again while waiting for it
_ACQUIRED = re.compile(r"^\s*acquired:\s*(\S+)\s*$", re.MULTILINE)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LabgridPlace(Part):
    """The lease of one bench through a labgrid coordinator; `open()` acquires the place, `close()` releases it."""

    name = "lease"

    def __init__(
        self,
        config: LabgridLeaseConfig,
        state_dir: Path,
        bench_name: str,
        purpose: str,
        *,
        events: EventLog | None = None,
        acquire_timeout: float = 0.0,
    ) -> None:
        self.config = config
        self.state_dir = Path(state_dir)
        self.bench_name = bench_name
        self.purpose = purpose
        self.events = events if events is not None else EventLog()
        self.acquire_timeout = acquire_timeout
        self.record_path = self.state_dir / f"{bench_name}.labgrid.json"
        self._held = False

    @property
    def where(self) -> str:
        return f"labgrid place {self.config.place} on {self.config.coordinator}"

    @property
    def me(self) -> str:
        """How the coordinator names this client: `host/user` (labgrid's LG_HOSTNAME/LG_USERNAME apply)."""
        host = os.environ.get("LG_HOSTNAME", socket.gethostname())
        return f"{host}/{os.environ.get('LG_USERNAME', getpass.getuser())}"

    @property
    def held(self) -> bool:
        return self._held

    # ------------------------------------------------------------------------------------ the client

    def _client(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(self.config.client), "-x", self.config.coordinator, "-p", self.config.place, *args]
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=CLIENT_TIMEOUT_S,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise ConfigError(
                f"lease.labgrid.client: {self.config.client} not found — install labgrid's client (`make setup` "
                "puts one in build/labgrid/bin) or fix the path in the bench file"
            ) from None
        except subprocess.TimeoutExpired:
            raise InfrastructureError(
                f"{self.where}: labgrid-client {args[0]} did not answer within {CLIENT_TIMEOUT_S:g} s — check the coordinator",
                part="lease",
            ) from None

    @staticmethod
    def _said(done: subprocess.CompletedProcess[str]) -> str:
        lines = [line for line in (done.stderr + done.stdout).strip().splitlines() if line.strip()]
        return lines[-1].removeprefix("labgrid-client: ").strip() if lines else f"exit {done.returncode}"

    def owner(self) -> dict[str, Any] | None:
        """Who holds the place (`{"holder": "host/user"}`), or None when it is free."""
        done = self._client("show")
        if done.returncode != 0:
            raise InfrastructureError(
                f"{self.where}: {self._said(done)} — check lease.labgrid in the bench file", part="lease"
            )
        found = _ACQUIRED.search(done.stdout)
        holder = found.group(1) if found else "None"
        return (
            None if holder == "None" else {"holder": holder, "place": self.config.place, "purpose": "labgrid"}
        )

    # ------------------------------------------------------------------------------------ lifecycle

    def open(self, timeout: float | None = None) -> None:
        """Acquire the place, waiting up to `timeout` s (default: the lease timeout) for its holder."""
        if self._held:
            return
        wait = self.acquire_timeout if timeout is None else timeout
        self._repair()
        deadline = time.monotonic() + wait
        announced = False
        while True:
            done = self._client("acquire")
            if done.returncode == 0:
                break
            holder = self.owner()
            if holder is None:  # it was freed meanwhile, or the failure is another one
                if time.monotonic() >= deadline:
                    raise InfrastructureError(
                        f"{self.where}: acquire failed: {self._said(done)}", part="lease"
                    )
                time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
                continue
            if wait > 0 and not announced:  # said once, also when the holder outlasts the wait at once
                self.events.emit("lease_waiting", "labgrid", owner=holder)
                announced = True
            if time.monotonic() >= deadline:
                raise InfrastructureError(
                    f"{self.where} is held by {holder['holder']} — wait for it to be released, or ask its holder to "
                    f"run `labgrid-client -x {self.config.coordinator} -p {self.config.place} release`",
                    part="lease",
                )
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        self._held = True
        self.state_dir.mkdir(parents=True, exist_ok=True)
        record = {"place": self.config.place, "coordinator": self.config.coordinator, "pid": os.getpid(),
                  "holder": self.me, "purpose": self.purpose, "since": time.time()}  # fmt: skip
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        tmp.replace(self.record_path)
        self.events.emit(
            "lease_acquired", "labgrid", bench=self.bench_name, place=self.config.place, purpose=self.purpose
        )

    def close(self) -> None:
        """Release the place (only if this object holds it)."""
        if not self._held:
            return
        done = self._client("release")
        self._held = False
        self.record_path.unlink(missing_ok=True)
        if done.returncode != 0:
            raise InfrastructureError(f"{self.where}: release failed: {self._said(done)}", part="lease")
        self.events.emit("lease_released", "labgrid", bench=self.bench_name, place=self.config.place)

    def check(self) -> None:
        """The place is still ours (nobody released or took it from under the run)."""
        if not self._held:
            return
        holder = self.owner()
        if holder is None or holder["holder"] != self.me:
            taken = holder["holder"] if holder else "nobody (it was released)"
            raise InfrastructureError(
                f"{self.where}: lost the place: it is now held by {taken}", part="lease"
            )

    def break_(self) -> dict[str, Any] | None:
        """Release the place whoever holds it (labgrid's `release --kick`), for a run known to be gone."""
        holder = self.owner()
        if holder is None:
            return None
        done = self._client("release", "--kick")
        if done.returncode != 0:
            raise InfrastructureError(
                f"{self.where}: release --kick failed: {self._said(done)}", part="lease"
            )
        self.events.emit("lease_broken", "labgrid", owner=holder)
        return holder

    def _repair(self) -> None:
        """Release the place a dead run of this host left acquired (its record names a process that is gone)."""
        try:
            record: dict[str, Any] = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return
        same_host = record.get("holder") == self.me
        if not same_host or _pid_alive(int(record.get("pid", 0))):
            return
        holder = self.owner()
        if holder is not None and holder["holder"] == self.me:
            done = self._client("release")
            if done.returncode != 0:
                raise InfrastructureError(
                    f"{self.where}: could not release the place a dead run left acquired: {self._said(done)}",
                    part="lease",
                )
            self.events.emit("lease_repaired", "labgrid", previous=record)
        self.record_path.unlink(missing_ok=True)
