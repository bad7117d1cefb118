"""HandshakeTrace → Diagnosis: the outcome, the one category, the evidence and a summary.

The rules an expert applies to a debug log, in order: a completed handshake is `completed`; an
error that ends the handshake names the category by its root code (the first fatal return of the
step it died in, not the wrappers re-returning it) refined by what the same step printed (no
shared suite, bad message length, verification flags, bad MAC); a log that ends with the same
state re-entered while waiting for input, with no byte arriving, is a WANT_READ stall (Mbed TLS
never prints WANT_READ itself); anything else is an incomplete log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from rig.mbedtls import tables
from rig.mbedtls.categories import Category
from rig.mbedtls.parser import LogParser
from rig.mbedtls.trace import HandshakeTrace, StateVisit

Outcome = Literal["completed", "failed", "stalled", "incomplete"]

# A stall, from the log alone, is the same state re-entered this many times without progress.
STALL_MIN_RETRIES = 1
# ... or, in a timestamped log, a wait for input followed by this many seconds of other lines: the
# callback prints nothing while Mbed TLS waits, so only the application's lines show time passing.
# A healthy handshake waits about one round trip (2 s on a satellite path) at a time.
STALL_GAP_S = 5.0

_SIZE_ERRORS = frozenset(
    {
        "MBEDTLS_ERR_SSL_INVALID_RECORD",
        "MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL",
        "MBEDTLS_ERR_SSL_CERTIFICATE_TOO_LARGE",
        "MBEDTLS_ERR_NET_BUFFER_TOO_SMALL",
    }
)
_MAC_ERRORS = frozenset(
    {"MBEDTLS_ERR_SSL_INVALID_MAC", "MBEDTLS_ERR_SSL_BAD_HS_FINISHED", "MBEDTLS_ERR_CIPHER_AUTH_FAILED"}
)
_EOF_ERRORS = frozenset(
    {
        "MBEDTLS_ERR_SSL_CONN_EOF",
        "MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY",
        "MBEDTLS_ERR_NET_CONN_RESET",
        "MBEDTLS_ERR_NET_RECV_FAILED",
        "MBEDTLS_ERR_NET_SEND_FAILED",
    }
)
_CIPHER_ERRORS = frozenset({"MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN", "MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE"})
# What a receive or send result means, by the code the callback returned or Mbed TLS made of it.
_IO_RESULTS: dict[str, tuple[str, str]] = {
    "MBEDTLS_ERR_NET_RECV_FAILED": (
        "receive failed",
        "the socket's receive failed (a socket error, not a close)",
    ),
    "MBEDTLS_ERR_NET_SEND_FAILED": ("send failed", "the socket's send failed"),
    "MBEDTLS_ERR_NET_CONN_RESET": ("connection reset", "the peer or the path reset the TCP connection"),
    "MBEDTLS_ERR_SSL_TIMEOUT": ("timeout", "no byte arrived within the read timeout"),
    "MBEDTLS_ERR_SSL_CONN_EOF": ("end of file", "the peer closed the connection"),
    "MBEDTLS_ERR_SSL_WANT_READ": ("would block", "no data yet; the caller must call again"),
    "MBEDTLS_ERR_SSL_WANT_WRITE": (
        "would block",
        "the socket cannot take data yet; the caller must call again",
    ),
}
_IO_FUNCTIONS = ("ssl->f_recv", "ssl->f_send", "mbedtls_ssl_fetch_input", "mbedtls_ssl_flush_output")
_X509_ERRORS = frozenset({"MBEDTLS_ERR_SSL_PEER_VERIFY_FAILED", "MBEDTLS_ERR_SSL_BAD_CERTIFICATE"})

_AFTER: dict[str, str] = {
    "MBEDTLS_SSL_CLIENT_HELLO": "sending ClientHello",
    "MBEDTLS_SSL_SERVER_HELLO": "reading ServerHello",
    "MBEDTLS_SSL_SERVER_CERTIFICATE": "reading the server's Certificate",
    "MBEDTLS_SSL_SERVER_KEY_EXCHANGE": "reading ServerKeyExchange",
    "MBEDTLS_SSL_CERTIFICATE_REQUEST": "reading CertificateRequest",
    "MBEDTLS_SSL_SERVER_HELLO_DONE": "reading ServerHelloDone",
    "MBEDTLS_SSL_CLIENT_CERTIFICATE": "sending its Certificate",
    "MBEDTLS_SSL_CLIENT_KEY_EXCHANGE": "sending ClientKeyExchange",
    "MBEDTLS_SSL_CERTIFICATE_VERIFY": "CertificateVerify",
    "MBEDTLS_SSL_CLIENT_CHANGE_CIPHER_SPEC": "ChangeCipherSpec",
    "MBEDTLS_SSL_CLIENT_FINISHED": "sending Finished",
    "MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC": "the server's ChangeCipherSpec",
    "MBEDTLS_SSL_SERVER_FINISHED": "the server's Finished",
}


@dataclass
class Diagnosis:
    """Why a handshake ended the way it did; attributes are the fields of `rig diagnose --json`."""

    mbedtls_version: str | None
    role: str | None
    protocol: str | None
    outcome: Outcome
    category: Category
    last_state: dict[str, Any]
    error: dict[str, Any] | None
    alert: dict[str, Any] | None
    ciphersuite: str | None
    inbound_reads: list[int]
    records_in: int
    records_out: int
    want_read_retries: int
    stall_seconds: float | None
    evidence: list[int]
    summary: str
    io: dict[str, Any] | None = None
    attempts: int = 1
    attempt: int = 1
    lines: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object `rig diagnose --json` prints."""
        return {
            "mbedtls_version": self.mbedtls_version,
            "role": self.role,
            "protocol": self.protocol,
            "outcome": self.outcome,
            "category": self.category,
            "last_state": dict(self.last_state),
            "error": dict(self.error) if self.error else None,
            "alert": dict(self.alert) if self.alert else None,
            "ciphersuite": self.ciphersuite,
            "inbound_reads": list(self.inbound_reads),
            "records_in": self.records_in,
            "records_out": self.records_out,
            "want_read_retries": self.want_read_retries,
            "stall_seconds": self.stall_seconds,
            "evidence": list(self.evidence),
            "summary": self.summary,
            "io": dict(self.io) if self.io else None,
            "attempts": self.attempts,
            "attempt": self.attempt,
            "lines": dict(self.lines),
        }

    @property
    def ok(self) -> bool:
        return self.outcome == "completed"


def diagnose_lines(lines: Iterable[str | bytes], mbedtls_version: str | None = None) -> Diagnosis:
    """Parse a whole log and diagnose its last handshake attempt."""
    parser = LogParser(mbedtls_version)
    parser.feed_all(lines)
    return diagnose_parser(parser)


def diagnose_parser(
    parser: LogParser, now: float | None = None, stall_after: float | None = None
) -> Diagnosis:
    """Diagnose the parser's current attempt (provisional while the log is still growing)."""
    trace = parser.trace
    version = parser.version
    outcome, category, stall_seconds = _judge(trace, now, stall_after, parser.last_time)
    last = trace.last_state or trace.inferred_state(version)
    root = trace.root_error if outcome == "failed" else None
    alert = _headline_alert(trace) if outcome == "failed" else None
    diagnosis = Diagnosis(
        mbedtls_version=version,
        role=trace.role or trace.inferred_role or _role_from_files(parser.fingerprint.files),
        protocol=trace.protocol,
        outcome=outcome,
        category=category,
        last_state={"number": last.number if last else None, "name": last.name if last else None},
        error={"code": tables.error_hex(root.code), "name": root.name} if root else None,
        alert=alert,
        ciphersuite=trace.ciphersuite,
        inbound_reads=list(trace.inbound_reads),
        records_in=len(trace.records_in),
        records_out=len(trace.records_out),
        want_read_retries=trace.want_read_retries,
        stall_seconds=stall_seconds,
        evidence=_evidence(trace, outcome),
        summary="",
        io=_io_result(trace) if outcome == "failed" else None,
        attempts=len(parser.attempts),
        attempt=trace.attempt,
        lines=dict(parser.counts),
    )
    diagnosis.summary = _summary(trace, diagnosis)
    return diagnosis


def _judge(
    trace: HandshakeTrace, now: float | None, stall_after: float | None, log_end: float | None
) -> tuple[Outcome, Category, float | None]:
    """Outcome and category; `log_end` is the host time of the last timestamped line of the log."""
    if trace.completed:
        return "completed", "completed", None
    whole_log = now is None
    if trace.failed or (whole_log and trace.unread_alert is not None and not trace.completed):
        return "failed", _failure_category(trace), None
    if whole_log and trace.established:
        # A log that starts after the handshake: application data moved, nothing failed. (A live
        # attempt is judged on its own handshake, and the lines of an alert follow its record.)
        return "completed", "completed", None
    if trace.waiting_for_input:
        since = trace.last_progress_time
        if now is not None and stall_after is not None:
            if since is not None and now - since >= stall_after:
                return "stalled", "stall_want_read", round(now - since, 3)
            return "incomplete", "timeout", None
        seconds = None
        if since is not None and log_end is not None and log_end > since:
            seconds = round(log_end - since, 3)
        if trace.want_read_retries >= STALL_MIN_RETRIES or (seconds is not None and seconds >= STALL_GAP_S):
            return "stalled", "stall_want_read", seconds
        return "incomplete", "timeout", None
    return "incomplete", "other", None


def _in_last_step(trace: HandshakeTrace, line: int | None) -> bool:
    start = trace.last_state.line_no if trace.last_state else 0
    return line is not None and line >= start


def _failure_category(trace: HandshakeTrace) -> Category:
    root = trace.root_error
    name = root.name or "" if root else ""
    if trace.no_shared_cipher_line is not None or name in _CIPHER_ERRORS:
        return "no_shared_cipher"
    if any(_in_last_step(trace, line) for line in trace.size_problem_lines) or name in _SIZE_ERRORS:
        return "record_or_buffer_size"
    if name.endswith("ALLOC_FAILED") or any(_in_last_step(trace, line) for line in trace.alloc_problem_lines):
        return "alloc_failed"
    if trace.fatal_alert_received is not None or name == "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE":
        return "fatal_alert_received"
    if trace.unread_alert is not None and root is None:
        # An alert whose content the log does not show: on an established session the peer closed it
        # with an alert (close_notify or fatal, unreadable); during the handshake it ends the handshake.
        return "conn_eof_or_reset" if trace.established else "fatal_alert_received"
    if (
        name in _X509_ERRORS
        or name.startswith("MBEDTLS_ERR_X509")
        or _in_last_step(trace, trace.cert_verify_failed_line)
        or (root is not None and root.function.startswith("x509"))
    ):
        return "x509_verify_failed"
    if any(_in_last_step(trace, line) for line in trace.mac_problem_lines) or name in _MAC_ERRORS:
        return "bad_mac_or_finished"
    if name == "MBEDTLS_ERR_SSL_TIMEOUT" or _in_last_step(trace, trace.timeout_line):
        return "timeout"
    if name in _EOF_ERRORS or trace.eof:
        return "conn_eof_or_reset"
    if any(a.direction == "sent" for a in trace.alerts):
        return "alert_sent"
    return "other"


def _io_result(trace: HandshakeTrace) -> dict[str, Any] | None:
    """How the receive or send of the failing step ended: the result, its code and what it means.

    A code that is not Mbed TLS's is reported as the application's own: receive and send callbacks
    may return their own values (OpenVPN 3 returns -0x8000 for would-block), which Mbed TLS passes on
    as an error.
    """
    root = trace.root_error
    if root is not None and (root.function.startswith(_IO_FUNCTIONS) or root.name in _IO_RESULTS):
        call = "send" if "send" in root.function or "flush" in root.function else "receive"
        if root.name in _IO_RESULTS:
            result, meaning = _IO_RESULTS[root.name]
        elif root.name and root.name.startswith("MBEDTLS_ERR_") and root.function.startswith("ssl->f_"):
            # A glue that refuses a record itself (Harmony's, bench.md §6) returns the library's own code.
            result = "Mbed TLS error from the callback"
            meaning = (
                f"the application's {call} callback returned {root.name} itself, which Mbed TLS passed on"
            )
        else:
            known = tables.APPLICATION_CODES.get(root.code)
            result = "application-defined code"
            meaning = (
                known or f"not an Mbed TLS error code: a value the application's {call} callback returned"
            )
        return {"call": call, "result": result, "code": tables.error_hex(root.code), "meaning": meaning}
    if trace.eof:
        return {
            "call": "receive",
            "result": "end of file",
            "code": None,
            "meaning": "the peer closed the connection",
        }
    return None


def _headline_alert(trace: HandshakeTrace) -> dict[str, Any] | None:
    """The alert that says most: a fatal one received, else one sent, else any received (close_notify).

    A root error MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE with no alert line (a debug level that hides
    them, or only the application's report) still says that a fatal alert arrived.
    """
    chosen = trace.fatal_alert_received or trace.unread_alert
    if chosen is None:
        for alert in reversed(trace.alerts):
            if alert.direction == "sent" and alert.description != 0:
                chosen = alert
                break
    if chosen is None:
        for alert in reversed(trace.alerts):
            if alert.direction == "received" and _in_last_step(trace, alert.line_no):
                chosen = alert
                break
    root = trace.root_error
    if chosen is None and root is not None and root.name == "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE":
        return {"direction": "received", "level": 2, "description": None, "name": None}
    if chosen is None:
        return None
    return {
        "direction": chosen.direction,
        "level": chosen.level,
        "description": chosen.description,
        "name": chosen.name,
    }


def _role_from_files(files: set[str]) -> str | None:
    if files & {"ssl_cli.c", "ssl_tls12_client.c", "ssl_tls13_client.c", "ssl_client.c"}:
        return "client"
    if files & {"ssl_srv.c", "ssl_tls12_server.c", "ssl_tls13_server.c"}:
        return "server"
    return None


def _stall_visits(trace: HandshakeTrace) -> list[StateVisit]:
    """The last state visit and its re-entries without progress."""
    count = trace.want_read_retries + 1
    return trace.states[-count:] if trace.states else []


def _evidence(trace: HandshakeTrace, outcome: Outcome) -> list[int]:
    lines: set[int] = set()
    if outcome == "completed":
        lines.update(e.line_no for e in trace.events if e.kind == "handshake_done")
        if trace.last_state:
            lines.add(trace.last_state.line_no)
    elif outcome == "failed":
        if trace.last_state:
            lines.add(trace.last_state.line_no)
        lines.update(e.line_no for e in trace.step_errors[:1])
        lines.update(a.line_no for a in trace.alerts if _in_last_step(trace, a.line_no))
        for line in (trace.no_shared_cipher_line, trace.cert_verify_failed_line, trace.timeout_line):
            if _in_last_step(trace, line) and line is not None:
                lines.add(line)
        lines.update(x for x in trace.size_problem_lines + trace.mac_problem_lines if _in_last_step(trace, x))
    else:
        lines.update(v.line_no for v in _stall_visits(trace))
        if trace.last_wait_line is not None:
            lines.add(trace.last_wait_line)
    return sorted(lines)


def _state_text(trace: HandshakeTrace, visit: StateVisit | None) -> str:
    """`in client state 3 (…)`, `in server state … (from the messages it parsed)`, or `before any …`."""
    if visit is None:
        return "before any handshake state"
    role = trace.role or trace.inferred_role or "handshake"
    inferred = " (from the messages the log shows, no state line)" if visit.printed == "inferred" else ""
    return f"in {role} state {visit.label()}{inferred}"


def _bytes_text(reads: list[int]) -> str:
    if not reads:
        return "no bytes"
    shown = [str(n) for n in reads[:8]]
    more = f" and {len(reads) - 8} more" if len(reads) > 8 else ""
    listed = ", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 and not more else ", ".join(shown)
    return f"reads of {listed}{more} bytes ({sum(reads)} in total)"


def _summary(trace: HandshakeTrace, d: Diagnosis) -> str:
    peer = "server" if d.role == "client" else ("client" if d.role == "server" else "peer")
    where = _state_text(trace, trace.last_state or trace.inferred_state(d.mbedtls_version))
    if d.protocol == "dtls":
        where += " (DTLS)"
    attempts = f" The log holds {d.attempts} handshake attempts; this is the last." if d.attempts > 1 else ""
    if d.outcome == "completed":
        suite = f" with {d.ciphersuite}" if d.ciphersuite else ""
        return f"Handshake completed{suite} ({d.protocol or 'TLS'}); inbound {_bytes_text(d.inbound_reads)}.{attempts}"
    if d.outcome == "stalled":
        previous = _previous_state(trace)
        after = f" after {_AFTER.get(previous.name or '', previous.label())}" if previous else ""
        waited = f" for {d.stall_seconds:g} s" if d.stall_seconds is not None else ""
        return (
            f"Stalled {where}{after}: no byte and no alert from the {peer}{waited} "
            f"({_plural(d.want_read_retries, 're-entry', 're-entries')} waiting for input). "
            f"Inbound so far: {_bytes_text(d.inbound_reads)}. "
            f"Compare with a passing log (`rig diff`) and look at the TCP receive path.{attempts}"
        )
    if d.outcome == "failed":
        error = f" with {d.error['name'] or 'error'} ({d.error['code']})" if d.error else ""
        alert = ""
        if d.alert and d.alert["description"] is not None:
            alert = f" Alert {d.alert['direction']}: level {d.alert['level']}, {d.alert['name'] or d.alert['description']}."
        elif d.alert and trace.unread_alert is not None and d.alert["direction"] == "received":
            if trace.established:
                alert = (
                    " The peer closed the session with an alert; it is encrypted, so its level and "
                    "description are not readable."
                )
            else:
                alert = (
                    " The peer ended the handshake with an alert record; its level and description are "
                    "not in the log."
                )
        elif d.alert:
            alert = (
                f" An alert was {d.alert['direction']} (its description is not shown at this debug level)."
            )
        if d.io is not None:
            code = f" ({d.io['code']})" if d.io["code"] else ""
            alert += f" I/O: {d.io['call']} {d.io['result']}{code}: {d.io['meaning']}."
        advice = _ADVICE.get(d.category, "Look up the error code for this Mbed TLS version.")
        if d.category == "fatal_alert_received" and d.alert and d.alert["description"] in _ALERT_ADVICE:
            advice = _ALERT_ADVICE[d.alert["description"]]
        if d.io is not None and d.io["result"] == "application-defined code":
            advice = (
                f"Make the {d.io['call']} callback return Mbed TLS's own codes "
                "(MBEDTLS_ERR_SSL_WANT_READ/WANT_WRITE to retry, MBEDTLS_ERR_NET_* for errors)."
            )
        return f"Failed {where}{error}: {_MEANING[d.category]}.{alert} {advice}{attempts}"
    if trace.last_state is None:
        return (
            "The log holds no handshake state line: no handshake started, or the debug threshold is below 2 "
            f"(mbedtls_debug_set_threshold).{attempts}"
        )
    waiting = " while waiting for input" if trace.waiting_for_input else ""
    return (
        f"The log ends {where}{waiting} with no error and no stall signature; "
        f"inbound: {_bytes_text(d.inbound_reads)}. Capture more of the log to judge.{attempts}"
    )


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _previous_state(trace: HandshakeTrace) -> StateVisit | None:
    last = trace.last_state
    for visit in reversed(trace.states):
        if last is not None and (visit.number, visit.name) != (last.number, last.name):
            return visit
    return None


_MEANING: dict[str, str] = {
    "fatal_alert_received": "the peer sent a fatal alert",
    "alert_sent": "this side sent an alert and gave up",
    "x509_verify_failed": "the peer's certificate did not verify",
    "bad_mac_or_finished": "a record MAC or the Finished message did not check out",
    "conn_eof_or_reset": "the connection was closed or reset under the handshake",
    "timeout": "a read timed out",
    "record_or_buffer_size": "a record or message did not fit the configured buffers",
    "alloc_failed": "memory allocation failed",
    "no_shared_cipher": "client and server had no ciphersuite in common",
    "other": "the handshake returned an error",
}
_ADVICE: dict[str, str] = {
    "fatal_alert_received": "The alert says what the peer disliked; check the peer's log for the reason.",
    "alert_sent": "The error above is why this side gave up.",
    "x509_verify_failed": "Check the CA bundle, the certificate chain the peer sends, the host name and the clock.",
    "bad_mac_or_finished": "Bytes were changed on the way or the key material differs: compare with a passing log.",
    "conn_eof_or_reset": "Check the peer's log and the network path (firewall, proxy, TCP reset).",
    "timeout": "The peer did not answer in time; check the path latency and the read timeout.",
    "record_or_buffer_size": "Raise MBEDTLS_SSL_IN_CONTENT_LEN/OUT_CONTENT_LEN or negotiate a smaller record size.",
    "alloc_failed": "Increase the heap or reduce buffer sizes.",
    "no_shared_cipher": "Align the ciphersuite lists (and key types) of client and server.",
    "other": "Look up the error code for this Mbed TLS version.",
}

# What a fatal alert from the peer usually means for a device, by alert description.
_TRANSCRIPT = (
    "The peer could not check this side's CertificateVerify or Finished: the two transcripts differ, "
    "usually because bytes of the peer's flight were changed on the way in; compare the inbound reads "
    "with a passing log (`rig diff`)."
)
_OWN_CERT = "The peer rejected this side's certificate: check the device certificate, its chain and that the peer trusts its CA."
_ALERT_ADVICE: dict[int, str] = {
    20: _TRANSCRIPT,
    51: _TRANSCRIPT,
    10: "The peer could not parse a message from this side: bytes damaged on the way out, or a message it did not expect.",
    50: "The peer could not parse a message from this side: bytes damaged on the way out, or a message it did not expect.",
    22: "A record exceeded the peer's limits: check MBEDTLS_SSL_OUT_CONTENT_LEN and the max_fragment_length setting.",
    40: "The peer found no acceptable parameters: ciphersuite, curve, signature algorithm, or a required client certificate.",
    42: _OWN_CERT,
    43: _OWN_CERT,
    44: _OWN_CERT,
    45: "The peer finds this side's certificate expired: check its validity dates and the device clock.",
    46: _OWN_CERT,
    48: _OWN_CERT,
    70: "The peer refused the TLS version offered: check the minimum and maximum versions configured.",
    112: "The peer does not serve the host name sent (SNI): check mbedtls_ssl_set_hostname and the endpoint.",
    116: "The peer requires a client certificate and got none: check mbedtls_ssl_conf_own_cert.",
}
