"""The judge: one function that turns an attempt's witnesses into its verdict, for every caller alike.

The pytest test, the table, `cells.jsonl` and `rig gate` all read the verdict `judge()` gave; nothing
else decides `completed`. Its witnesses:

- the **UART**: the boots the DUT announced after the attempt's reset (banner, image, reset cause), the
  Mbed TLS trace of the first of them, the firmware's MQTT-connected line, the suite it named;
- the **bench**: the UART driver's `port_lost`/`port_back` events during the attempt;
- the **cloud**: whether its lifecycle events saw the DUT's client id connect (when the bench has them).

The rules, in order — a firmware event is never hidden by a later success, and a bench problem is never
a firmware failure:

1. A second boot after the attempt's own reset is the firmware's failure `unexpected_reboot`, with the
   reset cause its boot ROM printed, whatever the later boot does.
2. A UART gap during the judged boot is a bench problem (part `uart`): the lines in it were never seen,
   so no verdict can rest on the ones that were; the message says what the cloud saw meanwhile.
3. The Mbed TLS trace decides failed and stalled (with `stall_after` as the stall rule).
4. `completed` needs the handshake over, the DUT's MQTT line and — when the bench watches the cloud —
   the cloud's `connected` event (none within CLOUD_CONFIRM_S is a bench problem, part `cloud`); and it
   must be within the path's time budget (else `over_time_budget`) with an ECDHE AES-GCM suite AWS IoT
   Core offers (else `weak_ciphersuite`).
5. At the attempt's deadline: `timeout`, or `incomplete` when the handshake ended but no MQTT line came.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from rig.config import Expectation
from rig.errors import InfrastructureError
from rig.mbedtls import Diagnosis, LogParser, diagnose_parser
from rig.report.records import AttemptRecord, Outcome, Verdict

# AWS IoT Core's TLS 1.2 security policies offer these suites that the hub's Mbed TLS build enables.
AWS_SUITES = re.compile(r"^TLS-ECDHE-(RSA|ECDSA)-WITH-AES-(128|256)-GCM-SHA(256|384)$")
# The cloud's `connected` lifecycle event follows the MQTT CONNECT within a second or two (its broker is
# AWS's own); a DUT that printed its CONNACK line and still has no event after this is a cloud-side
# (events broker, subscription) problem.
CLOUD_CONFIRM_S = 15.0


@dataclass(frozen=True)
class Boot:
    """A boot the DUT announced on its UART after the attempt's reset."""

    mono: float  # host monotonic time of its banner line
    image_sha256: str | None
    reset_cause: str | None  # as the boot ROM printed it (PIC32 RCON: POR, MCLR, WDTO, SWR, BOR…)


@dataclass(frozen=True)
class Rules:
    """The numbers a verdict is held to, from the bench file and the path."""

    stall_after_s: float
    time_budget_s: float
    boot_s: float
    cell_s: float


@dataclass
class Witnesses:
    """What the attempt saw so far; the live watch adds to it and asks the judge at every poll."""

    reset_at: float  # host monotonic time of the attempt's reset
    uart: LogParser = field(default_factory=LogParser)  # the Mbed TLS trace of the first boot
    boots: list[Boot] = field(default_factory=list)
    reset_cause: str | None = None  # the last reset cause printed, waiting for its boot's banner
    mqtt_connected_at: float | None = None  # the DUT's MQTT-session line (host monotonic)
    suite_on_uart: str | None = None
    uart_gaps: list[tuple[float, float | None]] = field(default_factory=list)  # port lost → back (monotonic)
    lines_seen: int = 0  # UART lines of the judged boot (or since the reset, before a banner)
    cloud: Literal["unwatched", "waiting", "connected"] = "unwatched"

    @property
    def booted(self) -> Boot | None:
        """The boot being judged: the first one after the reset."""
        return self.boots[0] if self.boots else None


@dataclass
class Judgement:
    """A verdict and what it rests on."""

    verdict: Verdict
    category: str | None
    summary: str
    diagnosis: Diagnosis | None = None
    ciphersuite: str | None = None
    last_state: str | None = None
    error: str | None = None
    bench_problem: InfrastructureError | None = None  # the verdict is `error`: nothing was judged

    def fill(self, record: AttemptRecord) -> None:
        """Write this judgement into the attempt's record."""
        record.verdict = self.verdict
        record.category = self.category
        record.summary = self.summary
        record.ciphersuite = self.ciphersuite
        record.last_state = self.last_state
        record.error = self.error
        record.diagnosis = self.diagnosis.to_json() if self.diagnosis is not None else {}


def judge(w: Witnesses, rules: Rules, now: float, *, final: bool) -> Judgement | None:
    """The verdict the witnesses support at `now`, or None while it is not known yet (unless `final`)."""
    boot = w.booted
    if len(w.boots) > 1:
        return _rebooted(w, w.boots[1], now)
    if (gap := _gap_during(w, boot)) is not None:
        return _uart_gap(w, gap, now)
    if boot is None and now - w.reset_at < rules.boot_s and not final:
        return None  # a DUT that prints a banner has not booted yet
    diagnosis = diagnose_parser(w.uart, now=now, stall_after=rules.stall_after_s)
    suite = diagnosis.ciphersuite or w.suite_on_uart
    if diagnosis.outcome in ("failed", "stalled"):
        return _from_log(diagnosis.outcome, diagnosis, suite)
    if diagnosis.outcome == "completed" and w.mqtt_connected_at is not None:
        if w.cloud == "waiting":
            if now - w.mqtt_connected_at < CLOUD_CONFIRM_S and not final:
                return None
            return Judgement(
                "error",
                None,
                "bench problem: the DUT printed its MQTT session line but the cloud's lifecycle events did not "
                f"report it connected within {CLOUD_CONFIRM_S:.0f} s",
                diagnosis,
                suite,
                bench_problem=InfrastructureError(
                    "the DUT printed its MQTT session line but the cloud's lifecycle events did not report its "
                    f"client id connected within {CLOUD_CONFIRM_S:.0f} s — check cloud.events (broker, "
                    "certificates, topic permissions)",
                    part="cloud",
                ),
            )
        return _connected(w, rules, diagnosis, suite)
    if not final:
        return None
    if diagnosis.outcome == "completed":
        return Judgement(
            "incomplete",
            "other",
            "the handshake completed but the DUT never printed its MQTT session line (dut.mqtt_connected)",
            diagnosis,
            suite,
            _state(diagnosis),
        )
    if w.lines_seen == 0:
        return Judgement("timeout", "timeout", f"no UART line within {rules.cell_s:g} s of the reset")
    category = diagnosis.category if diagnosis.category != "completed" else "timeout"
    return Judgement(
        "timeout",
        category,
        f"no verdict within timeouts.cell_s = {rules.cell_s:g} s: {diagnosis.summary}",
        diagnosis,
        suite,
        _state(diagnosis),
        _error(diagnosis),
    )


def expected_outcome(expectation: Expectation, record: AttemptRecord | None, infrastructure: bool) -> Outcome:
    """passed | failed | xfailed | xpassed | error: an attempt's verdict held against the variant's `expect`."""
    if infrastructure or record is None or record.verdict in ("error", "not run", None):
        return "error"
    if expectation.outcome == "pass":
        return "passed" if record.completed else "failed"
    if record.completed:
        return "xpassed"
    return "xfailed" if expectation.matches(record.category, record.last_state) else "failed"


# ----------------------------------------------------------------------------------------- the rules


def _rebooted(w: Witnesses, second: Boot, now: float) -> Judgement:
    diagnosis = diagnose_parser(w.uart, now=second.mono)
    state = _state(diagnosis)
    where = f"in {state}" if state else "before any handshake state"
    first = w.boots[0]
    cause = second.reset_cause or "not printed"
    return Judgement(
        "failed",
        "unexpected_reboot",
        f"the DUT rebooted {second.mono - w.reset_at:.1f} s after the attempt's reset, "
        f"{second.mono - first.mono:.1f} s into its boot, {where} (reset cause: {cause}); a boot after the "
        "attempt's own reset is a firmware failure, whatever the next boot does",
        diagnosis,
        diagnosis.ciphersuite or w.suite_on_uart,
        state,
        f"reset cause {cause}",
    )


def _gap_during(w: Witnesses, boot: Boot | None) -> tuple[float, float | None] | None:
    """The first UART gap that falls in the boot being judged (or, with no banner yet, after the reset)."""
    start = boot.mono if boot is not None else w.reset_at
    for lost, back in w.uart_gaps:
        if back is None or back > start:
            return lost, back
    return None


def _uart_gap(w: Witnesses, gap: tuple[float, float | None], now: float) -> Judgement:
    lost, back = gap
    length = (back if back is not None else now) - lost
    still = "and is still gone" if back is None else f"for {length:.1f} s"
    cloud = {
        "connected": "the cloud saw the DUT connect meanwhile",
        "waiting": "the cloud has not seen the DUT connect",
        "unwatched": "the cloud's events are not watched on this bench",
    }[w.cloud]
    when = f"{lost - w.reset_at:.1f} s after the reset" if lost > w.reset_at else "before the reset"
    if back is not None and lost == -math.inf:
        still = f"until {back - w.reset_at:.1f} s after it"
    message = (
        f"the UART port was lost {when} {still}: the DUT's lines in that "
        f"gap were never seen, so its handshake cannot be judged from the rest; {cloud} — check the UART "
        "(cable, USB hub, ser2net)"
    )
    return Judgement(
        "error", None, f"bench problem: {message}", bench_problem=InfrastructureError(message, part="uart")
    )


def _from_log(verdict: Literal["failed", "stalled"], diagnosis: Diagnosis, suite: str | None) -> Judgement:
    return Judgement(
        verdict, diagnosis.category, diagnosis.summary, diagnosis, suite, _state(diagnosis), _error(diagnosis)
    )


def _connected(w: Witnesses, rules: Rules, diagnosis: Diagnosis, suite: str | None) -> Judgement:
    assert w.mqtt_connected_at is not None
    took = w.mqtt_connected_at - w.reset_at
    state = _state(diagnosis)
    if took > rules.time_budget_s:
        return Judgement(
            "failed",
            "over_time_budget",
            f"connected, but {took:.1f} s after the reset: over the path's budget of {rules.time_budget_s:.1f} s "
            "(timeouts.boot_s + 10 round trips)",
            diagnosis,
            suite,
            state,
        )
    if suite is None or not AWS_SUITES.match(suite):
        found = f"negotiated {suite}" if suite else "the negotiated suite is known from no witness"
        return Judgement(
            "failed",
            "weak_ciphersuite",
            f"connected, but {found}: not an ECDHE AES-GCM suite AWS IoT Core's policies offer",
            diagnosis,
            suite,
            state,
        )
    confirmed = " and the cloud saw it connect" if w.cloud == "connected" else ""
    return Judgement(
        "completed",
        "completed",
        f"handshake completed with {suite}, MQTT session up {took:.1f} s after the reset{confirmed}",
        diagnosis,
        suite,
        state,
    )


def _state(diagnosis: Diagnosis) -> str | None:
    """`SERVER_CHANGE_CIPHER_SPEC` from the diagnosis's last state (the number when unnamed)."""
    state = diagnosis.last_state
    if not state:
        return None
    name = state.get("name")
    if name:
        return str(name).removeprefix("MBEDTLS_SSL_")
    number = state.get("number")
    return None if number is None else f"state {number}"


def _error(diagnosis: Diagnosis) -> str | None:
    """`MBEDTLS_ERR_SSL_INVALID_RECORD (-0x7200)` from the diagnosis's root error."""
    error = diagnosis.error
    if not error:
        return None
    name, code = error.get("name"), error.get("code")
    return f"{name} ({code})" if name and code else str(name or code)
