"""The bench router over SSH: select a network path, verify it, restore the baseline, capture packets.

A path (landline, satellite…) is a list of `activate` shell commands and a `verify` command whose output
must match a regex (`ip route get <endpoint>` on an OpenWrt router, `simrouter route` on the simulated
bench). `select()` runs the first, then polls the second until it matches and returns the time taken.

Leaving the bench as it was found is the router's main duty. Before switching away from the baseline
it writes a record to the bench's state directory; `session()` restores the baseline when the run ends
for any reason (a failing test, Ctrl-C, SIGTERM) and, at the start of the next run, restores a bench a
killed run left behind and logs the fact. `capture()` streams the bench's capture command (tcpdump on the
LAN side) as pcap into the attempt's folder. Values put into command templates are shell-quoted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import signal
import socket
import string
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import paramiko

from rig.config import BenchConfig, PathConfig
from rig.drivers.part import Part
from rig.drivers.ssh import CommandResult, SshConnection
from rig.errors import ConfigError, InfrastructureError
from rig.events import EventLog

log = logging.getLogger(__name__)

SOURCE = "router"
STATE_FILE = "router.json"
CAPTURE_STOP_S = 5.0  # how long a stopped capture may take to flush its last packets
CAPTURE_READY_S = 3.0  # how long to wait for the capture's first word (tcpdump: "listening on …")


def render_command(template: str, **values: str) -> str:
    """`template` with each `{name}` replaced by the shell-quoted value (an empty value by nothing)."""
    names = {field for _, field, _, _ in string.Formatter().parse(template) if field}
    missing = names - values.keys()
    if missing:
        raise ConfigError(f"command template {template!r}: no value for {', '.join(sorted(missing))}")
    return template.format(**{k: shlex.quote(v) if v else "" for k, v in values.items()}).strip()


class Router(Part):
    """Switches the bench's uplink over SSH; its `session()` guarantees the bench ends on the baseline."""

    name = SOURCE

    def __init__(
        self, bench: BenchConfig, *, events: EventLog | None = None, state_dir: Path | None = None
    ) -> None:
        self.bench = bench
        self.events = events if events is not None else EventLog()
        self.state_dir = (
            state_dir or bench.state_dir or Path.home() / ".cache" / "rig" / bench.name
        ).expanduser()
        self._connections: dict[str, SshConnection] = {}

    # ------------------------------------------------------------------------------------ lifecycle

    def _connection(self, host: str) -> SshConnection:
        if host not in self.bench.ssh_hosts:
            raise ConfigError(f"no ssh_hosts entry `{host}` (there are: {', '.join(self.bench.ssh_hosts)})")
        if host not in self._connections:
            self._connections[host] = SshConnection(host, self.bench.ssh_hosts[host], events=self.events)
        return self._connections[host]

    def _hosts(self) -> list[str]:
        used = [p.host for p in self.bench.paths.values()]
        if self.bench.capture is not None:
            used.append(self.bench.capture.host)
        return list(dict.fromkeys(used))

    def open(self, timeout: float | None = None) -> None:
        """Log into every host the paths and the capture use (pinned keys; errors say what to check).

        `timeout` bounds each host's connection (default: its entry's `connect_timeout_s`).
        """
        for host in self._hosts():
            self._connection(host).open(timeout)

    @property
    def connected(self) -> bool:
        """Logged into every host the paths and the capture use."""
        return all(host in self._connections and self._connections[host].connected for host in self._hosts())

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()

    # ------------------------------------------------------------------------------------ commands

    def run(self, host: str, command: str, timeout: float) -> CommandResult:
        """Run a shell command line on the `ssh_hosts` entry `host`."""
        return self._connection(host).run(command, timeout)

    def select(self, path: str) -> float:
        """Make `path` the active uplink: its activate commands, then verify until it matches.

        Returns the seconds from the first activate command to the matching verify output.
        """
        spec = self._path(path)
        started = time.monotonic()
        self._write_state(path, verified=False)
        self.events.emit("path_select", SOURCE, path=path)
        for command in spec.activate:
            result = self.run(spec.host, command, self.bench.timeouts.path_switch_s)
            if not result.ok:
                raise InfrastructureError(
                    f"router {spec.host}: activating path `{path}`: `{command}` exited {result.rc}: "
                    f"{(result.stderr or result.stdout).strip()[-300:]!r}; check the command in paths.{path}.activate"
                )
        pattern = re.compile(spec.verify.expect)
        deadline = time.monotonic() + spec.verify.timeout_s
        attempts = 0
        while True:
            attempts += 1
            result = self.run(spec.host, spec.verify.command, spec.verify.timeout_s)
            if pattern.search(result.stdout):
                break
            if time.monotonic() + spec.verify.interval_s > deadline:
                raise InfrastructureError(
                    f"router {spec.host}: path `{path}` not verified within {spec.verify.timeout_s:g} s: "
                    f"the output of `{spec.verify.command}` never matched {spec.verify.expect!r} "
                    f"({attempts} tries; last output {result.stdout.strip()[-300:]!r}, rc {result.rc}); "
                    f"check paths.{path}.activate and paths.{path}.verify"
                )
            time.sleep(spec.verify.interval_s)
        seconds = round(time.monotonic() - started, 3)
        self._write_state(path, verified=True)
        self.events.emit("path_selected", SOURCE, path=path, seconds=seconds, verify_attempts=attempts)
        return seconds

    def probe(self, path: str) -> str:
        """Run `path`'s probe: does its uplink reach the cloud endpoint? Returns the probe's output line.

        `InfrastructureError` (part `uplink`, for that path only) naming the command and what it printed
        when it does not; a path without `probe:` is not checked and says so.
        """
        spec = self._path(path)
        if spec.probe is None:
            return f"no probe configured (paths.{path}.probe)"
        started = time.monotonic()
        result = self.run(spec.host, spec.probe.command, spec.probe.timeout_s)
        output = (result.stdout + result.stderr).strip()
        seconds = round(time.monotonic() - started, 3)
        ok = result.ok and re.search(spec.probe.expect, result.stdout) is not None
        self.events.emit("path_probe", SOURCE, path=path, ok=ok, seconds=seconds, output=output[-300:])
        if not ok:
            raise InfrastructureError(
                f"router {spec.host}: the {path} uplink does not reach the cloud endpoint: `{spec.probe.command}` "
                f"exited {result.rc} with {output[-300:]!r} (expected {spec.probe.expect!r}) — check the "
                f"{path} uplink (modem, dish, line) before any cell runs on it",
                part="uplink",
                path=path,
            )
        return output.splitlines()[-1] if output else "ok"

    def current(self) -> str | None:
        """The path whose verify command matches now (the first one in the bench file), or None."""
        for name, spec in self.bench.paths.items():
            result = self.run(spec.host, spec.verify.command, spec.verify.timeout_s)
            if re.search(spec.verify.expect, result.stdout):
                return name
        return None

    def restore(self) -> None:
        """Select the baseline path again. Always safe to call, also on a bench already there."""
        seconds = self.select(self.bench.baseline)
        self.events.emit("path_restored", SOURCE, path=self.bench.baseline, seconds=seconds)

    def _path(self, path: str) -> PathConfig:
        if path not in self.bench.paths:
            raise ConfigError(f"unknown path `{path}`; the bench has: {', '.join(self.bench.paths)}")
        return self.bench.paths[path]

    # ------------------------------------------------------------------------------------ the record

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def _write_state(self, path: str, *, verified: bool) -> None:
        """Persist which path the bench is on before and after each switch (a killed run leaves it)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "bench": self.bench.name,
            "path": path,
            "verified": verified,
            "baseline": self.bench.baseline,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(self.state_file)

    def left_dirty(self) -> dict[str, Any] | None:
        """The record of a previous run that left the bench off its baseline (or mid-switch), if any."""
        try:
            record: dict[str, Any] = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return {"path": None, "error": f"unreadable {self.state_file}: {exc}"}
        if record.get("path") == self.bench.baseline and record.get("verified"):
            return None
        return record

    # ------------------------------------------------------------------------------------ session

    def session(self) -> RouterSession:
        """The bench held on its baseline for a run: `with router.session():` (see `RouterSession`)."""
        return RouterSession(self)

    def restore_at_exit(self, pending: BaseException | None) -> None:
        """Restore the baseline as a run ends; a failed restore is raised only when nothing else is."""
        with _sigint_deferred():
            try:
                self.restore()
            except InfrastructureError as exc:
                self.events.emit("restore_failed", SOURCE, error=str(exc))
                if pending is None:
                    raise
                # The run's own error goes on; the record stays dirty and the next start repairs it.
                log.error("could not restore the baseline: %s", exc)

    # ------------------------------------------------------------------------------------ capture

    @contextlib.contextmanager
    def capture(self, out: Path) -> Iterator[None]:
        """Stream the bench's capture command's stdout (pcap) into `out` while the body runs.

        The command is wrapped so that closing our end stops it on the router (tcpdump would otherwise
        run on until its next packet fails to write). A bench without `capture:` captures nothing.
        """
        cfg = self.bench.capture
        if cfg is None:
            self.events.emit("capture_skipped", SOURCE, reason="the bench has no capture section")
            yield
            return
        command = render_command(cfg.command, interface=cfg.interface, filter=cfg.filter)
        # The capture runs in the background; `cat` ends when we close stdin, then the capture is stopped.
        wrapped = f"( {command} ) & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid"
        connection = self._connection(cfg.host)
        channel = connection.open_channel(wrapped, self.bench.timeouts.path_switch_s)
        out.parent.mkdir(parents=True, exist_ok=True)
        pump = _Pump(channel, out)
        pump.start()
        # Packets sent before tcpdump listens are lost: wait for its first output (stderr or pcap).
        ready = pump.ready.wait(CAPTURE_READY_S)
        self.events.emit("capture_started", SOURCE, ready=ready, host=cfg.host, command=command, out=str(out))
        failed: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            failed = exc
            raise
        finally:
            with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
                channel.shutdown_write()
            pump.join(CAPTURE_STOP_S)
            channel.close()
            pump.join(1.0)
            rc = channel.exit_status if channel.exit_status_ready() else None
            self.events.emit(
                "capture_stopped", SOURCE, out=str(out), bytes=pump.bytes, rc=rc, stderr=pump.stderr[-300:]
            )
            if failed is None:
                if pump.error is not None:
                    raise InfrastructureError(
                        f"router {cfg.host}: writing the capture to {out} failed: {pump.error}"
                    ) from pump.error
                if rc not in (0, None, 143) and pump.bytes == 0:
                    raise InfrastructureError(
                        f"router {cfg.host}: capture `{command}` exited {rc}: {pump.stderr.strip()[-300:]!r}; "
                        "check capture.command and capture.interface"
                    )


class RouterSession(Part):
    """A run's hold on the router: the bench repaired at the start, back on its baseline at the end.

    `open()` logs in (if the router is not already) and restores a bench a previous run left dirty,
    logging `bench_left_dirty`. Leaving restores the baseline however the run ends: a failing test,
    Ctrl-C (KeyboardInterrupt) and SIGTERM (turned into SystemExit while the session is open in the main
    thread) all end the body like any exception; a second Ctrl-C during the restore is held back until
    the restore is done. A SIGKILLed run cannot clean up: the next session does. The connections stay
    open for the `Router`'s own `close()`.
    """

    name = "router-session"

    def __init__(self, router: Router) -> None:
        self.router = router
        self._signals: contextlib.ExitStack | None = None

    def open(self, timeout: float | None = None) -> None:
        if self._signals is not None:
            return
        router = self.router
        router.open(timeout)
        dirty = router.left_dirty()
        if dirty is not None:
            log.warning("bench %s was left on %s by a previous run; restoring", router.bench.name, dirty)
            router.events.emit("bench_left_dirty", SOURCE, previous=dirty, baseline=router.bench.baseline)
            router.restore()
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(_sigterm_as_exit())

    def close(self) -> None:
        self._leave(None)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._leave(exc)

    def _leave(self, pending: BaseException | None) -> None:
        signals, self._signals = self._signals, None
        if signals is None:
            return
        with signals:  # SIGTERM stays a SystemExit until the restore is done
            self.router.restore_at_exit(pending)


class _Pump(threading.Thread):
    """Copies a channel's stdout into a file; its error is reported by `capture()`."""

    def __init__(self, channel: paramiko.Channel, out: Path) -> None:
        super().__init__(name=f"capture-{out.name}", daemon=True)
        self.channel = channel
        self.out = out
        self.bytes = 0
        self.stderr = ""
        self.error: BaseException | None = None
        self.ready = threading.Event()  # the command said something, or ended

    def run(self) -> None:
        err = bytearray()
        try:
            self.channel.settimeout(0.2)
            with self.out.open("wb") as sink:
                while True:
                    try:
                        chunk = self.channel.recv(65536)
                    except TimeoutError:
                        chunk = None
                    while self.channel.recv_stderr_ready():
                        err += self.channel.recv_stderr(65536)
                        self.ready.set()
                    if chunk == b"":
                        break
                    if chunk:
                        self.ready.set()
                        sink.write(chunk)
                        sink.flush()
                        self.bytes += len(chunk)
        except BaseException as exc:  # reported by capture() when the attempt ends
            self.error = exc
        finally:
            self.stderr = err.decode(errors="replace")
            self.ready.set()


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While the body runs, SIGTERM (a cancelled CI job) raises SystemExit so cleanup happens."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while the baseline is restored; raise it afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
