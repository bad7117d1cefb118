"""The judge: one function that turns an attempt's witnesses into its verdict, for every caller alike.

The pytest test, the table, `cells.jsonl` and `rig gate` all read the verdict `judge()` gave; nothing
else decides `completed`. Its witnesses:

- the **UART**: the boots the DUT announced after the attempt's reset (banner, image, reset cause), the
  Mbed TLS trace of the first of them, the firmware's MQTT-connected line, the suite it named;
- the **wire**: the router's capture of the hub's LAN read as TLS records per direction (`rig.wire`):
  who sent what when, who went quiet, the suite in the ServerHello;
- the **bench**: the UART driver's `port_lost`/`port_back` events during the attempt;
- the **cloud**: whether its lifecycle events saw the DUT's client id connect (when the bench has them).

The rules, in order — a firmware event is never hidden by a later success, and a bench problem is never
a firmware failure:

1. A second boot after the attempt's own reset is the firmware's failure `unexpected_reboot`, with the
   reset cause its boot ROM printed, whatever the later boot does.
2. A UART gap during the judged boot is a bench problem (part `uart`): the lines in it were never seen,
   so no verdict can rest on the ones that were; so is a UART that shows no banner, or falls silent,
   while the wire shows the DUT's handshake moving. The message says what the wire and the cloud saw.
3. With Mbed TLS lines on the UART, the trace decides failed and stalled (`stall_after` is the stall
   rule); without them (a release build, debug off) the wire does: a fatal alert, a connection closed
   under the handshake, or no byte either way for `stall_after` while the handshake is unfinished.
   A stall names who went quiet: the server after the client's flight (the incident), the device
   while the server's bytes waited for it, or nobody reached (no byte from the server at all).
4. `completed` needs the handshake over (the trace's end, or the server's ChangeCipherSpec and
   Finished and application data both ways on the wire), the DUT's MQTT line and — when the bench
   watches the cloud — the cloud's `connected` event (none within CLOUD_CONFIRM_S is a bench problem,
   part `cloud`); and it must be within the path's time budget (else `over_time_budget`) with an ECDHE
   AES-GCM suite AWS IoT Core offers (from the UART, else the ServerHello; else `weak_ciphersuite`).
5. At the attempt's deadline: `timeout`, or `incomplete` when the handshake ended but no MQTT line came.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rig.config import Expectation
from rig.drivers.uart.gaps import UartGap
from rig.errors import InfrastructureError
from rig.mbedtls import Diagnosis, LogParser, diagnose_parser
from rig.report.records import AttemptRecord, GapEffect, Outcome, Verdict
from rig.wire import Connection, TlsRecord, WireView

# AWS IoT Core's TLS 1.2 security policies offer these suites that the hub's Mbed TLS build enables.
AWS_SUITES = re.compile(r"^TLS-ECDHE-(RSA|ECDSA)-WITH-AES-(128|256)-GCM-SHA(256|384)$")
# The cloud's `connected` lifecycle event follows the MQTT CONNECT within a second or two (its broker is
# AWS's own); a DUT that printed its CONNACK line and still has no event after this is a cloud-side
# (events broker, subscription) problem.
CLOUD_CONFIRM_S = 15.0
# The UART shows a line for each record the DUT writes (debug level 2) within a few hundred ms; a wire
# that shows the DUT sending records this long after the UART's last line says the UART lost them.
UART_BEHIND_WIRE_S = 3.0


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
    uart_gaps: list[UartGap] = field(
        default_factory=list
    )  # every time the UART's port was gone, from the driver
    lines_seen: int = 0  # UART lines of the judged boot (or since the reset, before a banner)
    last_line_at: float | None = None  # host monotonic time of the judged boot's last UART line
    cloud: Literal["unwatched", "waiting", "connected"] = "unwatched"
    wire: WireView | None = None  # the capture so far (None: the bench does not capture)
    # The host's wall clock minus its monotonic clock: puts the capture's times on the UART's axis.
    wall_minus_mono: float = 0.0

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
    quiet: str | None = None  # a stall's silent side: server | device | nobody

    def fill(self, record: AttemptRecord) -> None:
        """Write this judgement into the attempt's record."""
        record.verdict = self.verdict
        record.category = self.category
        record.summary = self.summary
        record.ciphersuite = self.ciphersuite
        record.last_state = self.last_state
        record.error = self.error
        record.quiet = self.quiet
        record.diagnosis = self.diagnosis.to_json() if self.diagnosis is not None else {}


def judge(w: Witnesses, rules: Rules, now: float, *, final: bool) -> Judgement | None:
    """The verdict the witnesses support at `now`, or None while it is not known yet (unless `final`)."""
    boot = w.booted
    if len(w.boots) > 1:
        return _rebooted(w, w.boots[1], now)
    waited = boot is not None or final or now - w.reset_at >= rules.boot_s  # a banner may still come
    if waited and (gap := _uart_gap(w, now)) is not None:
        return gap
    facts = wire_facts(w)
    if (missed := _uart_behind_wire(w, facts, now)) is not None:
        return _uart_gap(w, now) or missed  # the driver's gaps say more precisely what was missed
    if boot is None and now - w.reset_at < rules.boot_s and not final:
        return None  # a DUT that prints a banner has not booted yet
    diagnosis = diagnose_parser(w.uart, now=now, stall_after=rules.stall_after_s)
    suite = diagnosis.ciphersuite or w.suite_on_uart or (facts.suite if facts else None)
    logged = bool(w.uart.trace.events)  # Mbed TLS spoke (a release build may print nothing of it)
    if logged and diagnosis.outcome in ("failed", "stalled"):
        judgement = _from_log(diagnosis.outcome, diagnosis, suite)
        if diagnosis.outcome == "stalled" and facts is not None:
            judgement.quiet, said = _who_went_quiet(facts, now)
            judgement.summary += f" On the wire: {said}."
        return judgement
    if not logged and facts is not None and (from_wire := _from_wire(facts, now, rules, diagnosis, suite)):
        return from_wire
    handshake_over = diagnosis.outcome == "completed" or (
        not logged and facts is not None and facts.completed
    )
    if handshake_over and w.mqtt_connected_at is not None:
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
        return _connected(w, rules, diagnosis, suite, _state(diagnosis) or (facts.state if facts else None))
    if not final:
        return None
    if handshake_over:
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


def _uart_gap(w: Witnesses, now: float) -> Judgement | None:
    """A bench problem when the UART's gaps leave the judged boot (or its banner) unseen."""
    banner_at = w.booted.mono if w.booted is not None else None
    problem = capture_problem(w.uart_gaps, reset_at=w.reset_at, banner_at=banner_at, verdict_at=now)
    if problem is None:
        return None
    cloud = {
        "connected": "; the cloud saw the DUT connect meanwhile",
        "waiting": "; the cloud has not seen the DUT connect",
        "unwatched": "",
    }[w.cloud]
    facts = wire_facts(w)
    if facts is not None and facts.client_last is not None:
        cloud += f"; the wire shows the DUT sending until {facts.at(facts.client_last, w.reset_at)} after the reset"
    message = problem + cloud
    return Judgement(
        "error", None, f"bench problem: {message}", bench_problem=InfrastructureError(message, part="uart")
    )


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


def _from_log(verdict: Literal["failed", "stalled"], diagnosis: Diagnosis, suite: str | None) -> Judgement:
    return Judgement(
        verdict, diagnosis.category, diagnosis.summary, diagnosis, suite, _state(diagnosis), _error(diagnosis)
    )


def _connected(
    w: Witnesses, rules: Rules, diagnosis: Diagnosis, suite: str | None, state: str | None
) -> Judgement:
    assert w.mqtt_connected_at is not None
    took = w.mqtt_connected_at - w.reset_at
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


# ----------------------------------------------------------------------------------------- the wire


@dataclass(frozen=True)
class WireFacts:
    """What the capture says about the judged boot's TLS connection, on the UART's (monotonic) clock."""

    connection: Connection
    client_hello_at: float | None
    client_last: float | None  # the DUT's last new data
    server_last: float | None  # the server's last new data
    server_bytes: int
    completed: bool  # the server's ChangeCipherSpec and Finished, and application data both ways
    state: str  # the Mbed TLS client state the wire shows the DUT in
    suite: str | None  # from the ServerHello, in Mbed TLS's spelling
    client_tail: list[TlsRecord]  # the DUT's records since the server's last data (its last flight)
    alert: tuple[str, str] | None  # (sender, "alert fatal decrypt_error" / "encrypted alert")
    closed: str | None  # "FIN by server", "RST by server", …

    def at(self, mono: float, reset_at: float) -> str:
        return f"{mono - reset_at:.1f} s"


def wire_facts(w: Witnesses) -> WireFacts | None:
    """The capture's view of the connection the judged boot opened, or None without one."""
    if w.wire is None:
        return None
    offset = w.wall_minus_mono
    start_wall = (w.booted.mono if w.booted is not None else w.reset_at) + offset - 0.5
    second = w.boots[1].mono + offset if len(w.boots) > 1 else None
    mine = [
        c
        for c in w.wire.tls_connections
        if not c.joined and c.start >= start_wall and (second is None or c.start < second)
    ]
    if not mine:
        return None
    conn = mine[0]
    client, server = conn.client_side, conn.server_side

    def mono(wall: float | None) -> float | None:
        return None if wall is None else wall - offset

    hello = next((r for r in client.records if "ClientHello" in r.content), None)
    server_types = [m.name for m in server.messages]
    server_ccs = any(r.content == "ChangeCipherSpec" for r in server.records)
    server_finished = server_ccs and any(r.encrypted and r.content_type == 22 for r in server.records)
    app_both = all(any(r.content == "application data" for r in side.records) for side in (client, server))
    client_ccs = any(r.content == "ChangeCipherSpec" for r in client.records)
    if server_finished:
        state = "HANDSHAKE_OVER"
    elif server_ccs:
        state = "SERVER_FINISHED"
    elif client_ccs:
        state = "SERVER_CHANGE_CIPHER_SPEC"
    else:
        state = next(
            (s for message, s in _WAITING_AFTER if message in server_types),
            "SERVER_HELLO" if hello is not None else "CLIENT_HELLO",
        )
    server_last = server.last_data_time
    tail = [r for r in client.records if r.when is not None and (server_last is None or r.when > server_last)]
    alert = next(
        (
            (sender, str(r.alert))
            for sender, side in (("server", server), ("client", client))
            for r in side.records
            if r.alert
        ),
        None,
    )
    suite = conn.cipher_suite_name.replace("_", "-") if conn.cipher_suite_name else None
    return WireFacts(
        connection=conn,
        client_hello_at=mono(hello.when if hello else None),
        client_last=mono(client.last_data_time),
        server_last=mono(server_last),
        server_bytes=server.length,
        completed=server_finished and app_both,
        state=state,
        suite=suite,
        client_tail=tail,
        alert=alert,
        closed=conn.closed,
    )


# The server's last complete flight message → the client state that waits for the next one (Mbed TLS 2.x).
_WAITING_AFTER: tuple[tuple[str, str], ...] = (
    ("ServerHelloDone", "CLIENT_CERTIFICATE"),
    ("CertificateRequest", "SERVER_HELLO_DONE"),
    ("ServerKeyExchange", "CERTIFICATE_REQUEST"),
    ("Certificate", "SERVER_KEY_EXCHANGE"),
    ("ServerHello", "SERVER_CERTIFICATE"),
)


def _uart_behind_wire(w: Witnesses, facts: WireFacts | None, now: float) -> Judgement | None:
    """A UART that shows no banner, or fell silent, while the wire shows the DUT's handshake: a bench problem."""
    if facts is None or facts.client_hello_at is None:
        return None
    if w.booted is None and w.lines_seen == 0 and now - facts.client_hello_at > UART_BEHIND_WIRE_S:
        seen = f"no line on the UART since the reset although the wire shows the DUT's ClientHello at {facts.at(facts.client_hello_at, w.reset_at)}"
    elif (
        w.uart.trace.events
        and w.last_line_at is not None
        and facts.client_last is not None
        and facts.client_last - w.last_line_at > UART_BEHIND_WIRE_S
    ):
        seen = (
            f"the UART fell silent at {facts.at(w.last_line_at, w.reset_at)} while the wire shows the DUT sending "
            f"until {facts.at(facts.client_last, w.reset_at)}"
        )
    else:
        return None
    cloud = {"connected": "; the cloud saw the DUT connect", "waiting": "", "unwatched": ""}[w.cloud]
    message = f"{seen}{cloud}: the UART misses the DUT's lines — check the UART (cable, USB hub, ser2net)"
    return Judgement(
        "error", None, f"bench problem: {message}", bench_problem=InfrastructureError(message, part="uart")
    )


def _who_went_quiet(facts: WireFacts, now: float) -> tuple[str, str]:
    """(server | device | nobody, one sentence with the records, sizes and times from the wire)."""
    conn = facts.connection
    reset = conn.start  # wall; the sentence gives times relative to the TLS connection's start
    if facts.server_bytes == 0:
        return "nobody", "no byte from the server since the connection opened — nothing on the path answered"
    if facts.client_last is not None and (
        facts.server_last is None or facts.client_last >= facts.server_last
    ):
        flight = ", ".join(r.content for r in facts.client_tail) or "last record"
        size = sum(r.size for r in facts.client_tail)
        sent = facts.client_tail[-1].when if facts.client_tail else None
        when = f" at {sent - reset:.3f} s" if sent is not None else ""
        silence = now - facts.client_last
        return "server", (
            f"the server went silent after the hub's {flight} ({len(facts.client_tail)} records, {size} bytes{when} "
            f"into the connection): {silence:.1f} s without a byte from it"
        )
    last = conn.server_side.records[-1] if conn.server_side.records else None
    what = f"its {last.content} ({last.size} bytes)" if last is not None else "its bytes"
    assert facts.server_last is not None
    return "device", (
        f"the device went quiet: the server sent {what} {now - facts.server_last:.1f} s ago and the hub has not "
        "answered"
    )


def _from_wire(
    facts: WireFacts, now: float, rules: Rules, diagnosis: Diagnosis, suite: str | None
) -> Judgement | None:
    """The verdict when the UART has no Mbed TLS lines: failed or stalled from the wire, else None."""
    if facts.alert is not None and not facts.completed:
        sender, alert = facts.alert
        category = "fatal_alert_received" if sender == "server" else "alert_sent"
        return Judgement(
            "failed",
            category,
            f"the {'server' if sender == 'server' else 'hub'} sent an {alert} in the handshake (seen on the wire, "
            f"client state {facts.state})",
            diagnosis,
            suite,
            facts.state,
        )
    if facts.closed is not None and not facts.completed and "server" in facts.closed:
        return Judgement(
            "failed",
            "conn_eof_or_reset",
            f"the server closed the connection under the handshake ({facts.closed}, seen on the wire, client "
            f"state {facts.state})",
            diagnosis,
            suite,
            facts.state,
        )
    if facts.completed:
        return None
    last = max((t for t in (facts.client_last, facts.server_last) if t is not None), default=None)
    if last is None or now - last < rules.stall_after_s:
        return None
    quiet, said = _who_went_quiet(facts, now)
    return Judgement(
        "stalled",
        "stall_want_read",
        f"Stalled in client state {facts.state} (from the wire: no Mbed TLS line on the UART): {said}.",
        diagnosis,
        suite,
        facts.state,
        quiet=quiet,
    )
