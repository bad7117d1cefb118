"""The bench lease: one owner per bench at a time, across processes and users.

A bench is one lockable resource (a nightly job, a developer's `pytest -m satellite` and the release
gate must not program the same hub at once). The lease is a JSON file `<state_dir>/<bench>.lease`
naming its owner (user, host, pid, purpose, since) and when it expires. The owner renews it from a
background thread; a lease whose owner died lapses on its own: at once when the owner ran on this host
and its pid is gone (a CI job killed with SIGKILL leaves no stale lock), otherwise when it expires.
Reading and writing the file happens under an `flock` of a side file, so two processes never both
take a free lease. Waiting for a lease has a timeout, and the error names the current owner.
Several users share a bench through a `state_dir` they can all write (a group-writable folder): the
lease files are created group- and world-writable within the umask.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from rig.drivers.part import Part
from rig.errors import InfrastructureError
from rig.events import EventLog

log = logging.getLogger(__name__)

# A lease not renewed for this long has lapsed (its owner is gone or frozen).
LEASE_TTL_S = 30.0
# The owner renews this often: three renewals can be missed before the lease lapses.
RENEW_EVERY_S = LEASE_TTL_S / 3
# The guard file is locked only around one read or write; longer means its holder is frozen.
GUARD_TIMEOUT_S = 10.0
# How often a waiting process looks at the lease again.
POLL_S = 0.2


def describe(owner: dict[str, Any]) -> str:
    """`alice@bench-pc pid 4242 (nightly) since 09:12:03` for messages and `rig bench lock status`."""
    if "holder" in owner:  # a labgrid place (rig.drivers.labgrid): the coordinator knows host/user only
        return f"{owner['holder']} (labgrid place {owner.get('place', '?')})"
    since = datetime.fromtimestamp(float(owner.get("since", 0))).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{owner.get('user', '?')}@{owner.get('host', '?')} pid {owner.get('pid', '?')} "
        f"({owner.get('purpose', '?')}) since {since}"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


class BenchLease(Part):
    """The lease of one bench: `open()` takes it (waiting at most `acquire_timeout`), `close()` gives it back."""

    name = "lease"

    def __init__(
        self,
        state_dir: Path,
        bench_name: str,
        purpose: str,
        *,
        events: EventLog | None = None,
        acquire_timeout: float = 0.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.bench_name = bench_name
        self.purpose = purpose
        self.events = events if events is not None else EventLog()
        self.acquire_timeout = acquire_timeout
        self.path = self.state_dir / f"{bench_name}.lease"
        self._guard = self.state_dir / f"{bench_name}.lease.lock"
        self._token = uuid.uuid4().hex
        self._held = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.error: str | None = None

    # -- file access under the guard

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._guard, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise InfrastructureError(
                f"bench lease {self.path}: cannot use the state folder ({exc.strerror}) — check state_dir "
                "in the bench file and its permissions"
            ) from None
        try:
            # Held for one read or write only; a holder frozen with it (SIGSTOP, a hung NFS) is reported.
            deadline = time.monotonic() + GUARD_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise InfrastructureError(
                            f"bench lease {self.path}: {self._guard} stayed locked for {GUARD_TIMEOUT_S:g} s — "
                            "a process holding it is frozen; find it with `fuser` and end it"
                        ) from None
                    time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("bench lease %s is unreadable; treating it as free", self.path)
            return None
        return data if isinstance(data, dict) else None

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.chmod(tmp, 0o664)
        os.replace(tmp, self.path)

    @staticmethod
    def _lapsed(owner: dict[str, Any], now: float) -> str | None:
        """Why `owner`'s lease no longer counts, or None when it still does."""
        if owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", -1))):
            return "its process is gone"
        if float(owner.get("expires", 0)) < now:
            return "it was not renewed"
        return None

    # -- the public primitives

    def owner(self) -> dict[str, Any] | None:
        """The current owner's record, or None when the bench is free (a lapsed lease is free)."""
        with self._locked():
            current = self._read()
        if current is None or self._lapsed(current, time.time()) is not None:
            return None
        return current

    @property
    def held(self) -> bool:
        return self._held

    def open(self, timeout: float | None = None) -> None:
        """Take the lease, waiting up to `timeout` seconds; `InfrastructureError` naming the owner if not."""
        if self._held:
            return
        timeout = self.acquire_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            with self._locked():
                current = self._read()
                now = time.time()
                if current is not None and current.get("token") != self._token:
                    why = self._lapsed(current, now)
                    if why is not None:
                        self.events.emit("lease_lapsed", "lock", owner=current, reason=why)
                        log.info("bench %s: lease of %s lapsed (%s)", self.bench_name, describe(current), why)
                        current = None
                if current is None or current.get("token") == self._token:
                    self._write(self._record(now))
                    break
            if time.monotonic() >= deadline:
                raise InfrastructureError(
                    f"bench {self.bench_name} is in use by {describe(current)} — wait for it to finish, "
                    f"or if that run is gone: rig bench lock break --bench <this bench file>"
                )
            if not announced:
                log.warning("bench %s: waiting for the lease held by %s", self.bench_name, describe(current))
                self.events.emit("lease_waiting", "lock", owner=current)
                announced = True
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        self._held = True
        self.error = None
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="bench-lease", daemon=True)
        self._renewer.start()
        self.events.emit("lease_acquired", "lock", bench=self.bench_name, purpose=self.purpose)

    def close(self) -> None:
        """Give the lease back (only if this object still holds it)."""
        if not self._held:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5.0)
        with self._locked():
            current = self._read()
            if current is not None and current.get("token") == self._token:
                self.path.unlink(missing_ok=True)
        self._held = False
        self.events.emit("lease_released", "lock", bench=self.bench_name)

    def break_(self) -> dict[str, Any] | None:
        """Remove whoever's lease this is (for a run known to be gone); returns the record removed."""
        with self._locked():
            current = self._read()
            self.path.unlink(missing_ok=True)
        if current is not None:
            self.events.emit("lease_broken", "lock", owner=current)
        return current

    def check(self) -> None:
        """Raise `InfrastructureError` if the lease was lost while held (renewal failed or taken over)."""
        if self.error is not None:
            raise InfrastructureError(f"bench {self.bench_name}: {self.error}")

    # -- internals

    def _record(self, now: float) -> dict[str, Any]:
        return {
            "token": self._token,
            "user": getpass.getuser(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "purpose": self.purpose,
            "since": now,
            "renewed": now,
            "expires": now + LEASE_TTL_S,
        }

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_EVERY_S):
            try:
                with self._locked():
                    current = self._read()
                    if current is None or current.get("token") != self._token:
                        taken = describe(current) if current else "nobody (the lease was broken)"
                        self.error = f"lost the bench lease: it is now held by {taken}"
                        break
                    now = time.time()
                    current.update(renewed=now, expires=now + LEASE_TTL_S)
                    self._write(current)
            except (OSError, InfrastructureError) as exc:
                self.error = f"renewing the bench lease {self.path} failed: {exc}"
                break
        if self.error is not None:
            log.error("bench %s: %s", self.bench_name, self.error)
            self.events.emit("lease_lost", "lock", reason=self.error)
