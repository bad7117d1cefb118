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

A verdict rests on the lines of that boot, so it needs all of them: when the UART's port was gone (a
USB console re-enumerating, ser2net hanging up, see `rig.drivers.uart.gaps`) between the judged boot's
banner and the verdict, or when no banner was seen after the reset and the port was gone meanwhile (the
boot may have printed while nobody could read it), the attempt is a bench problem naming the gaps
(`capture_problem`), never a verdict on the lines it happened to see. A gap that ended before the
banner — a console re-enumerating on the reset, back before the firmware prints — costs nothing. Every
gap is in the record's `uart_gaps`, with what it cost.

Bench problems (programmer, UART, router, cloud) raise `InfrastructureError`; they are never turned into
a verdict. The attempt's record (`rig.report.records.AttemptRecord`) is filled as it goes; a firmware
verdict other than completed is raised by `record.raise_for_failure()` as `rig.errors.HandshakeFailed`
(a `FirmwareFailure` whose class names the diagnosis category, so pytest's strict xfail can expect exactly that category).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any, Protocol

from rig import __version__
from rig.config import BenchConfig, Loaded, PathConfig, TimeoutsConfig, VariantConfig
from rig.drivers.programmers import ProgramResult
from rig.drivers.uart.gaps import UartGap
from rig.drivers.uart.port import UartLine
from rig.errors import InfrastructureError
from rig.mbedtls import Diagnosis, LogParser, diagnose_parser
from rig.report import evidence as files
from rig.report.evidence import write_json
from rig.report.records import AttemptRecord, GapEffect, UartGapRecord, Verdict, cell_id

log = logging.getLogger(__name__)

# Mbed TLS prints the negotiated suite only at debug level 3; firmware at level 2 usually prints
# `mbedtls_ssl_get_ciphersuite()` itself once connected: the suite's name is recognised on any line.
SUITE_NAME = re.compile(r"\bTLS-[A-Z0-9]+(?:-[A-Z0-9]+)*-WITH-[A-Z0-9]+(?:-[A-Z0-9]+)*")
# The cloud's `connected` lifecycle event follows the MQTT CONNECT within a second or two (its broker is
# AWS's own); a DUT that printed its CONNACK line and still has no event after this is a cloud-side
# (events broker, subscription) problem, not worth waiting the rest of the cell's timeout for.
CLOUD_CONFIRM_S = 15.0
POLL_S = 0.1  # how often the live verdict is re-evaluated while the UART is quiet
QUIET_S = 0.5  # UART silence that says the DUT printed everything from before the reset
BUDGET_RTTS = 10  # round trips a healthy connect may take (TCP, TLS 1.2 with client auth, MQTT CONNECT)


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

    def ensure_image(self, variant: VariantConfig, out_dir: Path) -> ProgramResult:
        """Put the variant's image on the DUT unless it runs it already (then `skipped`)."""
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
            stall_after_s=stall_after_s(bench.config.timeouts, self.path),
        )
        self.parser: LogParser | None = None  # the live parser of the boot being judged
        self.verdict_time: float | None = None  # host monotonic time the verdict was reached
        self._stack = ExitStack()
        self._lines: LineSource | None = None
        self._started: float | None = None  # host monotonic time prepare() began
        self._reset_at: float | None = None
        self._reset_wall: float | None = None
        self._closed = False
        self._suite_seen: str | None = None

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
        program = self.bench.ensure_image(self.variant, folder / files.PROGRAMMER_DIR)
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
        """Feed the UART into the parser until the outcome is known; fill and return the record."""
        if self._lines is None or self._reset_at is None:
            raise RuntimeError("Attempt.watch() before prepare()")
        timeouts = self.bench.config.timeouts
        stall_after = stall_after_s(timeouts, self.path)
        deadline = self._reset_at + timeouts.cell_s
        mqtt = re.compile(self.bench.config.dut.mqtt_connected)
        banner = re.compile(self.bench.config.dut.banner_sha256)
        booted = False  # the boot banner after the reset was seen: judge from there on
        banner_at: float | None = None  # when the banner of the judged boot arrived
        gaps_checked = self._reset_at
        parser = LogParser()
        self.parser = parser
        diagnosis: Diagnosis | None = None
        verdict: Verdict = "timeout"
        for now, line in _lines_until(self._lines, deadline):
            if banner_at is not None and now - gaps_checked >= POLL_S:
                gaps_checked = now
                if any(g.overlaps(banner_at, now) for g in self.bench.uart_gaps(banner_at)):
                    break  # lines of the judged boot are being missed: no verdict can rest on the rest
            if line is not None:
                if found := banner.search(line.text):
                    # The boot this reset caused: what came before it belongs to the previous boot.
                    booted = True
                    banner_at = line.mono
                    self._check_image(found)
                    parser = LogParser()
                    self.parser = parser
                    self.record.mqtt_connected = False
                    self._suite_seen = None
                parser.feed(line.text, host_time=line.mono)
                if mqtt.search(line.text):
                    self.record.mqtt_connected = True
                if self._suite_seen is None and (suite := SUITE_NAME.search(line.text)):
                    self._suite_seen = suite.group(0)
            if not booted and now - self._reset_at < timeouts.boot_s:
                continue  # no banner yet: a DUT that prints one has not booted yet
            if not booted and self.bench.uart_gaps(self._reset_at):
                break  # no banner by boot_s, and the port was gone meanwhile: it may have been missed
            diagnosis = diagnose_parser(parser, now=now, stall_after=stall_after)
            if diagnosis.outcome in ("failed", "stalled"):
                verdict = diagnosis.outcome
                break
            if diagnosis.outcome == "completed" and self.record.mqtt_connected:
                verdict = "completed"
                break
        else:
            diagnosis = diagnose_parser(parser, now=time.monotonic(), stall_after=stall_after)
            if diagnosis.outcome == "completed":
                verdict = "incomplete"  # handshake over but the MQTT session line never came
            elif diagnosis.outcome in ("failed", "stalled"):
                verdict = diagnosis.outcome  # reached on the very last poll before the deadline
        self.verdict_time = time.monotonic()
        self.record.seconds.reset_to_verdict = self.verdict_time - self._reset_at
        self._check_capture(banner_at)
        if verdict == "completed":
            self._confirm_with_cloud(deadline)
        self._fill(verdict, diagnosis)
        self.bench.emit(
            "verdict",
            cell=self.id,
            verdict=self.record.verdict,
            category=self.record.category,
            last_state=self.record.last_state,
            seconds=round(self.record.seconds.reset_to_verdict, 3),
            summary=self.record.summary,
        )
        return self.record

    def _check_capture(self, banner_at: float | None) -> None:
        """Record the attempt's UART gaps; raise InfrastructureError when they leave the boot unjudgeable."""
        assert self._reset_at is not None and self.verdict_time is not None
        gaps = self.bench.uart_gaps(self._started if self._started is not None else self._reset_at)
        reset_at, verdict_at = self._reset_at, self.verdict_time
        self.record.uart_gaps = [
            UartGapRecord(
                lost_s=round(g.lost - reset_at, 3),
                seconds=round(g.seconds, 3) if g.seconds is not None else None,
                reason=g.reason,
                return_to_back_s=g.return_to_back_s,
                effect=gap_effect(g, reset_at=reset_at, banner_at=banner_at, verdict_at=verdict_at),
            )
            for g in gaps
        ]
        problem = capture_problem(gaps, reset_at=reset_at, banner_at=banner_at, verdict_at=verdict_at)
        if problem is None:
            return
        if self.parser is not None:  # what the lines that were seen say, as evidence only
            seen = diagnose_parser(self.parser, now=verdict_at, stall_after=self.record.stall_after_s)
            self.record.diagnosis = seen.to_json()
            problem += f"; the lines that were seen alone read: {seen.summary}"
        raise InfrastructureError(f"{self.id}: {problem}")

    def _check_image(self, banner: re.Match[str]) -> None:
        """The booting DUT's banner must name the image this attempt put on it."""
        running = banner.group(1).lower() if banner.groups() and banner.group(1) else None
        wanted = (self.record.image_sha256 or "").lower()
        if running and wanted and running != wanted:
            raise InfrastructureError(
                f"{self.id}: the DUT booted image sha256 {running} but {wanted} ({self.variant.name}) was "
                "programmed — check the programmer's verify and that the bench's DUT is the one programmed"
            )

    def _confirm_with_cloud(self, deadline: float) -> None:
        assert self._reset_wall is not None
        remaining = max(1.0, min(CLOUD_CONFIRM_S, deadline - time.monotonic()))
        seen = self.bench.wait_cloud_connected(remaining, self._reset_wall)
        self.record.cloud_connected = seen
        if seen is False:
            raise InfrastructureError(
                f"{self.id}: the DUT printed its MQTT session line but the cloud's lifecycle events did not "
                f"report client `{self.bench.config.dut.client_id}` connected within {remaining:.0f} s — "
                "check cloud.events (broker, certificates, topic permissions)"
            )
        self.record.seconds.reset_to_verdict = time.monotonic() - (self._reset_at or 0.0)

    def _fill(self, verdict: Verdict, diagnosis: Diagnosis | None) -> None:
        record = self.record
        record.verdict = verdict
        if diagnosis is None:
            record.summary = (
                f"{self.id}: no UART line within {self.bench.config.timeouts.cell_s:g} s of the reset"
            )
            record.category = "timeout"
            return
        record.diagnosis = diagnosis.to_json()
        record.category = diagnosis.category
        record.last_state = state_name(diagnosis.last_state)
        record.error = error_text(diagnosis.error)
        record.ciphersuite = diagnosis.ciphersuite or self._suite_seen
        record.summary = diagnosis.summary
        if verdict == "timeout":
            record.category = diagnosis.category if diagnosis.category != "completed" else "timeout"
            record.summary = f"no verdict within timeouts.cell_s = {self.bench.config.timeouts.cell_s:g} s: {diagnosis.summary}"
        elif verdict == "incomplete":
            record.category = "other"
            record.summary = (
                f"the handshake completed but the DUT never printed its MQTT session line "
                f"(dut.mqtt_connected: {self.bench.config.dut.mqtt_connected!r})"
            )

    def fail_with_bench_problem(self, exc: BaseException) -> None:
        """Mark this attempt as not judged because of `exc` (a bench problem, or bad input)."""
        self.record.verdict = "error"
        self.record.category = None
        self.record.error = str(exc)
        self.record.summary = f"bench problem: {exc}"
        self.bench.emit("bench_problem", cell=self.id, error=str(exc))

    def close(self) -> None:
        """Stop capture and subscription, write `diagnosis.json`, stop recording into this folder."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stack.close()
        finally:
            self.save()
            self.bench.attach(None)

    def save(self) -> None:
        """Write the record as it stands to `diagnosis.json` (again once its outcome is known)."""
        write_json(self.record.folder / files.DIAGNOSIS, self.record.evidence_json())


# ----------------------------------------------------------------------------------------- the UART's gaps


def gap_effect(gap: UartGap, *, reset_at: float, banner_at: float | None, verdict_at: float) -> GapEffect:
    """What a gap of the UART cost the attempt reset at `reset_at` (host monotonic times throughout)."""
    if gap.back is not None and gap.back < reset_at:
        return "before the reset"
    if gap.lost > verdict_at:
        return "after the verdict"
    if banner_at is None:
        return "the boot banner"
    if gap.back is not None and gap.back <= banner_at:
        return "before the boot banner"
    return "the judged boot"


def capture_problem(
    gaps: Sequence[UartGap], *, reset_at: float, banner_at: float | None, verdict_at: float
) -> str | None:
    """Why the UART's capture cannot carry a verdict on the boot the reset caused, or None when it can.

    The rule the verdict applies to the UART witness: the judged boot runs from its banner to the
    verdict, and every line of it must have been seen. A gap in that span means lines were missed; no
    banner after the reset, with a gap after the reset, means the boot may have printed it (and more)
    while the port was gone. Either is a bench problem (the UART), not the firmware's doing.
    """
    costly = [
        g
        for g in gaps
        if gap_effect(g, reset_at=reset_at, banner_at=banner_at, verdict_at=verdict_at)
        in ("the boot banner", "the judged boot")
    ]
    if not costly:
        return None
    where = "; ".join(_describe_gap(g, reset_at) for g in costly)
    if banner_at is None:
        return (
            f"the UART was gone after the reset ({where}) and no boot banner was seen: the boot the reset "
            "caused may have printed while the port was gone, so it cannot be judged — check how fast the "
            "UART comes back after a reset (port_back in events.jsonl)"
        )
    return (
        f"the UART was gone during the judged boot ({where}; banner at {banner_at - reset_at:+.1f} s, "
        f"verdict at {verdict_at - reset_at:+.1f} s): lines the DUT printed then were not seen, so the "
        "boot cannot be judged — check the UART's cable, hub or ser2net host (port_lost in events.jsonl)"
    )


def _describe_gap(gap: UartGap, reset_at: float) -> str:
    what = "lent to the programmer" if gap.reason == "lent" else "lost"
    if gap.seconds is None:
        return f"{what} at {gap.lost - reset_at:+.1f} s and not back"
    return f"{what} at {gap.lost - reset_at:+.1f} s for {gap.seconds:.1f} s"


def state_name(state: dict[str, Any] | None) -> str | None:
    """`SERVER_CHANGE_CIPHER_SPEC` from the diagnosis's `{number, name}` (the number when unnamed)."""
    if not state:
        return None
    name = state.get("name")
    if name:
        return str(name).removeprefix("MBEDTLS_SSL_")
    number = state.get("number")
    return None if number is None else f"state {number}"


def error_text(error: dict[str, Any] | None) -> str | None:
    """`MBEDTLS_ERR_SSL_INVALID_RECORD (-0x7200)` from the diagnosis's `{code, name}`."""
    if not error:
        return None
    name, code = error.get("name"), error.get("code")
    return f"{name} ({code})" if name and code else str(name or code)


def _lines_until(lines: LineSource, deadline: float) -> Iterator[tuple[float, UartLine | None]]:
    """(now, line-or-None) until `deadline`: a line as soon as it comes, None every POLL_S when quiet."""
    while True:
        now = time.monotonic()
        if now >= deadline:
            return
        line = lines.get(timeout=min(POLL_S, deadline - now))
        yield time.monotonic(), line
