"""One attempt of one cell (variant × path): image → path → reset → live trace → verdict → evidence.

This is the heart of the HIL suite, used by the pytest plugin (one test = one cell) and by `rig gate`.
An attempt owns a fresh evidence folder; the bench's drivers stream into it (UART, events, programmer
output, pcap) and the attempt adds `diagnosis.json`. The live verdict reads the UART line by line into
the incremental Mbed TLS parser while the DUT works and ends the attempt as soon as the outcome is known:

- `completed`: the handshake is over, the DUT printed its MQTT-session line (`dut.mqtt_connected`), and,
  when the bench has `cloud.events`, the cloud reported the DUT's client id connected;
- `failed`: the log shows an error or an alert;
- `stalled`: Mbed TLS waits for input and no inbound byte has arrived for `stall_after` seconds;
- `timeout`: none of those within `timeouts.cell_s`.

`stall_after = timeouts.stall.floor_s + timeouts.stall.rtt_multiple × path.rtt_ms / 1000`. In a healthy
TLS 1.2 handshake the client waits for input at most one round trip plus the server's work at a time
(ServerHello flight, then the server's ChangeCipherSpec/Finished), so the longest healthy silence is
about 1 RTT + ~1 s of server and DUT processing. With the defaults (6 s + 6 RTT) a 2 s RTT path gives
18 s — nine times the RTT and far above any healthy wait — while the incident's satellite path (600 ms)
is judged stalled after 9.6 s instead of the firmware's own 60 s read timeout. (Measured on a recorded
sim handshake stretched to 2 s RTT: the longest wait for input is 2.6 s, 14 % of stall_after.)

Only the boot this attempt's reset caused is judged: the UART must have been quiet for QUIET_S before
the reset (lines of an earlier boot still on their way are drained), and judging starts at the boot
banner (`dut.banner_sha256`), whose image sha256 must be the programmed one; a DUT that prints no banner
is judged from the reset on once `timeouts.boot_s` has passed.

A verdict rests on the lines of that boot, so it needs all of them: the UART driver records every
time its port was gone (`rig.drivers.uart.gaps`), and the judge (`rig.hil.judge.capture_problem`)
makes a gap between the judged boot's banner and the verdict — or one after the reset with no banner
seen — a bench problem naming the gaps. A gap that ended before the banner (a USB console
re-enumerating on the reset) costs nothing. Every gap is in the record's `uart_gaps`, with what it cost.

Bench problems (programmer, UART, router, cloud) raise `InfrastructureError`; they are never turned into
a verdict. The attempt's record (`rig.report.records.AttemptRecord`) is filled as it goes; a firmware
verdict other than completed is raised by `record.raise_for_failure()` as `rig.errors.HandshakeFailed`
(a `FirmwareFailure` whose class names the diagnosis category, so pytest's strict xfail can expect exactly that category).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any, Literal, Protocol

from rig import __version__
from rig.config import BenchConfig, Loaded, PathConfig, TimeoutsConfig, VariantConfig
from rig.drivers.programmers import ProgramResult
from rig.drivers.uart.gaps import UartGap
from rig.drivers.uart.port import UartLine
from rig.errors import ConfigError, InfrastructureError
from rig.hil.judge import Boot, Judgement, Rules, Witnesses, gap_effect, judge
from rig.mbedtls import LogParser
from rig.report import evidence as files
from rig.report import theories, wire_vs_stack
from rig.report.evidence import write_json, write_wire_json
from rig.report.records import AttemptRecord, UartGapRecord, cell_id
from rig.report.theories import Theories
from rig.report.wire_vs_stack import WireVsStack
from rig.wire import WireView, read_capture

log = logging.getLogger(__name__)

# Mbed TLS prints the negotiated suite only at debug level 3; firmware at level 2 usually prints
# `mbedtls_ssl_get_ciphersuite()` itself once connected: the suite's name is recognised on any line.
SUITE_NAME = re.compile(r"\bTLS-[A-Z0-9]+(?:-[A-Z0-9]+)*-WITH-[A-Z0-9]+(?:-[A-Z0-9]+)*")
WIRE_POLL_S = 1.0  # how often the growing capture is read again while the attempt is watched
POLL_S = 0.1  # how often the live verdict is re-evaluated while the UART is quiet
QUIET_S = 0.5  # UART silence that says the DUT printed everything from before the reset
BUDGET_RTTS = 10  # round trips a healthy connect may take (TCP, TLS 1.2 with client auth, MQTT CONNECT)
# Verdicts that are the firmware's failure (not a bench problem): theories answered, a forensic rerun.
FIRMWARE_FAILURES = ("failed", "stalled", "timeout", "incomplete")


def stall_after_s(timeouts: TimeoutsConfig, path: PathConfig) -> float:
    """Seconds without inbound progress, while Mbed TLS waits for input, that make a stall (see above)."""
    return timeouts.stall.floor_s + timeouts.stall.rtt_multiple * path.rtt_ms / 1000.0


def time_budget_s(timeouts: TimeoutsConfig, path: PathConfig) -> float:
    """How long reset → MQTT session may take on `path`: boot, then BUDGET_RTTS round trips."""
    return timeouts.boot_s + BUDGET_RTTS * path.rtt_ms / 1000.0


# ----------------------------------------------------------------------------------------- the bench


class LineSource(Protocol):
    """A subscription to the DUT's UART lines (rig.drivers.uart.port.UartSubscription)."""

    def get(self, timeout: float) -> UartLine | None: ...

    def close(self) -> None: ...


class CellBench(Protocol):
    """What a cell needs from the bench (rig.hil.session.LiveBench adapts rig.hil.bench.Bench to it)."""

    @property
    def config(self) -> BenchConfig: ...

    def attach(self, folder: Path | None) -> None:
        """Record the UART and the bench's events into `folder` (None: stop)."""
        ...

    def ensure_image(self, variant: VariantConfig, out_dir: Path, *, forensic: bool = False) -> ProgramResult:
        """Put the variant's image (`forensic`: its forensic image) on the DUT unless it runs it already."""
        ...

    def select_path(self, name: str) -> None: ...

    def subscribe(self) -> LineSource: ...

    def reset_dut(self) -> None: ...

    def capture(self, out: Path) -> AbstractContextManager[Any]: ...

    def wait_cloud_connected(self, timeout: float, since: float) -> bool | None:
        """Whether the cloud saw the DUT connect since `since` (wall time); None: no cloud events."""
        ...

    def emit(self, kind: str, **fields: Any) -> None:
        """Record an event of the attempt (in its `events.jsonl`)."""
        ...

    def uart_gaps(self, since: float) -> list[UartGap]:
        """Every time the UART's port was gone that lasted into or past `since` (host monotonic time)."""
        ...


# ----------------------------------------------------------------------------------------- one attempt


class Attempt:
    """One attempt: `prepare()` (image, path, recording, capture, reset), then `watch()` to the verdict.

    `close()` always runs (the plugin's fixture finalizer, or the gate's `with`): it stops the capture,
    closes the UART subscription, writes `diagnosis.json` and stops recording into this folder.
    """

    def __init__(
        self,
        bench: CellBench,
        variant: Loaded[VariantConfig],
        path: str,
        attempt: int,
        folder: Path,
        *,
        repeat: int = 1,
        forensic: bool = False,
    ) -> None:
        self.bench = bench
        self.variant = variant.model
        self.path_name = path
        self.path = bench.config.paths[path]
        self.record = AttemptRecord(
            variant=self.variant.name,
            path=path,
            attempt=attempt,
            repeat=repeat,
            evidence=str(folder),
            started=time.time(),
            rig_version=__version__,
            bench=bench.config.name,
            simulated=bench.config.simulated,
            stall_after_s=stall_after_s(bench.config.timeouts, self.path),
            forensic=forensic,
        )
        self.parser: LogParser | None = None  # the live parser of the boot being judged
        self.verdict_time: float | None = None  # host monotonic time the verdict was reached
        self.last_line_at: float | None = None  # host monotonic time of the judged boot's last line
        self._stack = ExitStack()
        self._lines: LineSource | None = None
        self._started: float | None = None  # host monotonic time prepare() began
        self._reset_at: float | None = None
        self._reset_wall: float | None = None
        self._closed = False
        self.boot_lines: list[str] = []  # the judged boot's UART lines (for the wire against the stack)
        self.view: WireView | None = None  # the whole capture, read once it stopped
        self.wire_check: WireVsStack | None = None
        self.cloud_log: list[dict[str, Any]] = []
        self._judged_summary = ""
        self._boot_offset: int | None = None  # where the judged boot's first line is in uart.raw

    @property
    def id(self) -> str:
        return cell_id(self.variant.name, self.path_name)

    def prepare(self) -> None:
        """Image on the DUT, path selected, recording and capture running, DUT reset."""
        folder = self.record.folder
        self._started = time.monotonic()
        self.bench.attach(folder)
        self.bench.emit("attempt_started", cell=self.id, attempt=self.record.attempt)
        # Subscribed from the start: the UART's quiet before the reset is then measured across the
        # programming and the path switch, and the first boot line after the reset cannot be missed.
        self._lines = lines = self.bench.subscribe()
        self._stack.callback(lines.close)
        subscribed = time.monotonic()
        started = time.monotonic()
        program = self.bench.ensure_image(
            self.variant, folder / files.PROGRAMMER_DIR, forensic=self.record.forensic
        )
        self.record.seconds.program = time.monotonic() - started
        self.record.programmed = program.ok and not program.skipped
        self.record.image_sha256 = program.image_sha256
        started = time.monotonic()
        self.bench.select_path(self.path_name)
        self.record.seconds.path = time.monotonic() - started
        if self.bench.config.capture is not None:
            self._stack.enter_context(self.bench.capture(folder / files.CAPTURE))
        started = time.monotonic()
        self._settle(lines, subscribed)
        self.record.seconds.settle = time.monotonic() - started
        self._reset_at = time.monotonic()
        self._reset_wall = time.time()
        self.bench.reset_dut()

    def _settle(self, lines: LineSource, since: float) -> None:
        """Wait (at most `timeouts.boot_s`) until the UART has been quiet for QUIET_S.

        What the DUT printed before the reset may still be on its way when the reset is pulsed: the
        boot that follows programming finishing its handshake, a UART buffer draining at the baud rate,
        the reset command's own duration. Those lines must not be judged as this attempt's. `since` is
        when the subscription started: silence before that is unknown.
        """
        started = time.monotonic()
        deadline = started + self.bench.config.timeouts.boot_s
        last, drained, quiet = since, 0, False
        while not quiet and time.monotonic() < deadline:
            # Lines already queued are from before the reset whatever their age: take them all first,
            # or the first of them would be judged as the new boot's (an old image's banner, say).
            if (line := lines.get(timeout=0.0)) is not None:
                last, drained = max(last, line.mono), drained + 1
                continue
            wait = last + QUIET_S - time.monotonic()
            if wait <= 0:
                quiet = True
            elif (line := lines.get(timeout=max(0.0, min(wait, deadline - time.monotonic())))) is not None:
                last, drained = max(last, line.mono), drained + 1
        self.bench.emit(
            "uart_settled", lines=drained, quiet=quiet, seconds=round(time.monotonic() - started, 3)
        )

    def watch(self) -> AttemptRecord:
        """Feed the witnesses to the judge until it reaches a verdict; fill and return the record.

        A bench problem the judge finds (a UART gap, a cloud that never confirms) is raised as the
        `InfrastructureError` it names, after the record says so.
        """
        if self._lines is None or self._reset_at is None or self._reset_wall is None:
            raise RuntimeError("Attempt.watch() before prepare()")
        config = self.bench.config
        timeouts = config.timeouts
        rules = Rules(
            stall_after_s=stall_after_s(timeouts, self.path),
            time_budget_s=time_budget_s(timeouts, self.path),
            boot_s=timeouts.boot_s,
            cell_s=timeouts.cell_s,
        )
        deadline = self._reset_at + timeouts.cell_s
        patterns = _Patterns(config)
        witnesses = Witnesses(reset_at=self._reset_at, wall_minus_mono=self._reset_wall - self._reset_at)
        witnesses.cloud = self._cloud(witnesses)
        self.parser = witnesses.uart
        capture = self.record.folder / files.CAPTURE if config.capture is not None else None
        wire_read = 0.0
        judgement: Judgement | None = None
        for now, line in _lines_until(self._lines, deadline):
            if line is not None:
                self._see(witnesses, line, patterns)
            witnesses.uart_gaps = self.bench.uart_gaps(
                self._started if self._started is not None else self._reset_at
            )
            if capture is not None and now - wire_read >= WIRE_POLL_S:
                witnesses.wire = _read_wire(capture) or witnesses.wire
                wire_read = now
            if witnesses.cloud == "waiting" and witnesses.mqtt_connected_at is not None:
                witnesses.cloud = self._cloud(witnesses)
            if (judgement := judge(witnesses, rules, now, final=False)) is not None:
                break
        if judgement is None:
            judgement = judge(witnesses, rules, time.monotonic(), final=True)
            assert judgement is not None  # a final judgement always has a verdict
        self.verdict_time = time.monotonic()
        record = self.record
        record.seconds.reset_to_verdict = self.verdict_time - self._reset_at
        record.mqtt_connected = witnesses.mqtt_connected_at is not None
        record.cloud_connected = {"connected": True, "waiting": False, "unwatched": None}[witnesses.cloud]
        judgement.fill(record)
        banner_at = witnesses.booted.mono if witnesses.booted is not None else None
        record.uart_gaps = [
            UartGapRecord(
                lost_s=round(g.lost - self._reset_at, 3),
                seconds=round(g.seconds, 3) if g.seconds is not None else None,
                reason=g.reason,
                return_to_back_s=g.return_to_back_s,
                effect=gap_effect(
                    g, reset_at=self._reset_at, banner_at=banner_at, verdict_at=self.verdict_time
                ),
            )
            for g in witnesses.uart_gaps
        ]
        self.bench.emit(
            "verdict",
            cell=self.id,
            verdict=record.verdict,
            category=record.category,
            last_state=record.last_state,
            seconds=round(record.seconds.reset_to_verdict, 3),
            summary=record.summary,
            boots=[vars(boot) for boot in witnesses.boots],
        )
        if (problem := judgement.bench_problem) is not None:
            raise InfrastructureError(f"{self.id}: {problem}", part=problem.part, path=problem.path)
        return record

    def _see(self, w: Witnesses, line: UartLine, patterns: _Patterns) -> None:
        """One UART line into the witnesses: a reset cause, a boot banner, or a line of the judged boot."""
        if (cause := patterns.reset_cause.search(line.text)) and cause.groups():
            w.reset_cause = cause.group(1)
        if found := patterns.banner.search(line.text):
            sha = found.group(1).lower() if found.groups() and found.group(1) else None
            w.boots.append(Boot(line.mono, sha, w.reset_cause))
            w.reset_cause = None
            if len(w.boots) == 1:  # the boot this reset caused: what came before it was the previous boot's
                self._check_image(sha)
                w.uart = LogParser()
                self.parser = w.uart
                self.boot_lines = []
                self._boot_offset = line.offset
        if len(w.boots) > 1:
            return  # a later boot is never judged: the judge calls it an unexpected reboot
        w.lines_seen += 1
        w.last_line_at = self.last_line_at = line.mono
        w.uart.feed(line.text, host_time=line.mono)
        if not self.boot_lines and self._boot_offset is None:
            self._boot_offset = line.offset
        self.boot_lines.append(line.text)
        if w.mqtt_connected_at is None and patterns.mqtt.search(line.text):
            w.mqtt_connected_at = line.mono
        if w.suite_on_uart is None and (suite := SUITE_NAME.search(line.text)):
            w.suite_on_uart = suite.group(0)

    def _cloud(self, w: Witnesses) -> Literal["unwatched", "waiting", "connected"]:
        assert self._reset_wall is not None
        seen = self.bench.wait_cloud_connected(0.0, self._reset_wall)
        return "unwatched" if seen is None else "connected" if seen else "waiting"

    def _check_image(self, running: str | None) -> None:
        """The booting DUT's banner must name the image this attempt put on it."""
        wanted = (self.record.image_sha256 or "").lower()
        if running and wanted and running != wanted:
            raise InfrastructureError(
                f"{self.id}: the DUT booted image sha256 {running} but {wanted} ({self.variant.name}) was "
                "programmed — check the programmer's verify and that the bench's DUT is the one programmed",
                part="programmer",
            )

    def fail_with_bench_problem(self, exc: BaseException) -> None:
        """Mark this attempt as not judged because of `exc` (a bench problem, or bad input); once."""
        if self.record.error is not None and self.record.verdict in ("error", "not run"):
            return
        part = exc.part if isinstance(exc, InfrastructureError) else None
        self.record.verdict = "error"
        self.record.category = None
        self.record.error = str(exc)
        self.record.part = part
        self.record.summary = f"bench problem: {exc}"
        self.bench.emit("bench_problem", cell=self.id, error=str(exc), part=part)

    def not_run(self, reason: InfrastructureError) -> None:
        """Mark this attempt as never started because of a part known to be broken; the bench is not touched."""
        self.record.verdict = "not run"
        self.record.category = None
        self.record.error = str(reason)
        self.record.part = reason.part
        self.record.summary = f"not run: {reason}"
        self._closed = True  # nothing was opened: nothing to stop
        self.save()

    def close(self) -> None:
        """Stop capture and subscription, write `diagnosis.json`, stop recording into this folder."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stack.close()
            self._write_wire()
            self._write_forensics()
        finally:
            self.save()
            self.bench.attach(None)

    def _write_wire(self) -> None:
        """`wire.json` beside `capture.pcap`, once the capture has stopped; an unreadable one is said, not raised."""
        try:
            write_wire_json(self.record.folder)
        except InfrastructureError as exc:
            log.error("%s attempt %d: %s", self.id, self.record.attempt, exc)
            self.bench.emit("wire_unreadable", cell=self.id, error=str(exc))

    def _write_forensics(self) -> None:
        """The cloud's own log lines, the wire against the stack, and for a failure the theories answered.

        `cloud.jsonl` when the bench names the endpoint's log (`cloud.server_log`); `wire-vs-stack.txt`/
        `.json` when the judged boot dumped its input records (debug level 4); `theories.txt` when the
        verdict is a firmware failure. Their sentences go into the summary.
        """
        folder = self.record.folder
        self._judged_summary = self.record.summary
        server_log = self.bench.config.cloud.server_log
        if server_log is not None and self._reset_wall is not None:
            self.cloud_log = files.collect_server_log(folder, server_log, self._reset_wall - 1.0)
        self.view = wire_vs_stack.read_view(folder)
        if self.view is not None and self.boot_lines:
            raw = folder / files.UART_RAW
            self.wire_check = wire_vs_stack.check(
                self.boot_lines, self.view, log=str(raw), first_line=_line_number(raw, self._boot_offset)
            )
            if self.wire_check is not None:
                wire_vs_stack.write(folder, self.wire_check)
                self.record.wire_vs_stack = self.wire_check.summary()
                self.bench.emit("wire_vs_stack", cell=self.id, summary=self.record.wire_vs_stack)
        if self.record.verdict in FIRMWARE_FAILURES:
            self.write_theories()
        else:
            self._summarize(None)

    def write_theories(self, check: WireVsStack | None = None, *, check_from: str = "") -> Theories:
        """`theories.txt` from this attempt's evidence (or `check`, another attempt's comparison)."""
        answered = theories.answer(self.view, check or self.wire_check, self.cloud_log, check_from=check_from)
        theories.write(self.record.folder, answered)
        self.record.theories = [*answered.answers, f"Supported: {answered.supported}"]
        self._summarize(answered.supported)
        return answered

    def _summarize(self, supported: str | None) -> None:
        parts = [self._judged_summary.rstrip()]
        if self.record.wire_vs_stack:
            parts.append(self.record.wire_vs_stack.rstrip(".") + ".")
        if supported:
            parts.append(f"Theories: the evidence supports {supported}.")
        self.record.summary = " ".join(p for p in parts if p)

    def save(self) -> None:
        """Write the record as it stands to `diagnosis.json` (again once its outcome is known)."""
        write_json(self.record.folder / files.DIAGNOSIS, self.record.evidence_json())


class _Patterns:
    """The bench file's regexes for the DUT's own lines."""

    def __init__(self, config: BenchConfig) -> None:
        self.banner = re.compile(config.dut.banner_sha256)
        self.mqtt = re.compile(config.dut.mqtt_connected)
        self.reset_cause = re.compile(config.dut.reset_cause)


def _line_number(raw: Path, offset: int | None) -> int:
    """The line number in `raw` of the line that begins at byte `offset` (1 when unknown)."""
    if offset is None or offset <= 0:
        return 1
    try:
        with raw.open("rb") as file:
            return file.read(offset).count(b"\n") + 1
    except OSError:
        return 1


def _read_wire(capture: Path) -> WireView | None:
    """The capture as far as it is written (None while it holds nothing readable yet)."""
    try:
        return read_capture(capture, partial=True)
    except ConfigError:
        return None


def _lines_until(lines: LineSource, deadline: float) -> Iterator[tuple[float, UartLine | None]]:
    """(now, line-or-None) until `deadline`: a line as soon as it comes, None every POLL_S when quiet."""
    while True:
        now = time.monotonic()
        if now >= deadline:
            return
        line = lines.get(timeout=min(POLL_S, deadline - now))
        yield time.monotonic(), line
