"""Mbed TLS messages → typed events: one function, `classify`, from a bare message to an `Event`.

The messages are the library's own format strings (identical in 2.16 … 3.6 up to `%d`/`%zu`/`%u`
and the record-version notation), so a message alone says what happened; the parser adds the
source line number and host time. Facts that trip naive parsers are handled here: positive byte
counts print as negative hex (`returned 5 (-0xfffffffb)`: the decimal is authoritative), a size
printed with an unsupported `%zu` reads `zu`, WANT_READ is never printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

EventKind = Literal[
    "handshake_start",  # => handshake
    "handshake_end",  # <= handshake (one step returned: done, error or WANT_READ)
    "handshake_done",  # handshake: done / <= handshake wrapup
    "state",  # state entered: number and/or name
    "record_in",  # input record: type, version, length
    "record_out",  # output record: type, version, length
    "recv",  # f_recv returned: bytes (>0), 0 = EOF, <0 = error
    "send",  # f_send returned
    "fetch_wait",  # in_left / nb_want: input needed
    "alert_received",  # got an alert message / is a fatal alert message
    "close_notify",  # is a close notify message
    "alert_sent",  # => send alert message / send alert level=… message=…
    "error",  # some_function() returned a negative code
    "ciphersuite",  # negotiated suite
    "protocol",  # protocol hint: tls1.2, tls1.3, dtls
    "cert_verify",  # certificate verification result
    "size_problem",  # record or buffer size complaint
    "mac_problem",  # bad MAC or bad Finished
    "no_shared_cipher",  # server found no common suite
    "timeout",  # read timeout
    "new_session_ticket",  # the 2.x client is really in SERVER_NEW_SESSION_TICKET
    "step",  # a handshake message being parsed or written, or application data: the state it implies
    "fetch_done",  # <= fetch input: the bytes asked for are in
    "record_dump",  # dumping '… record …': no event of its own, the parser reads the row after it
    "alloc_problem",  # an allocation failed
    "record_bytes",  # the first row of a record dump: content type, length, an alert's two bytes
]

Value = int | str | bool | None


@dataclass(slots=True)
class Event:
    """One thing the log says happened, with the line it came from.

    `line_no` is the 1-based line of the log fed to the parser; `host_time` is the wall-clock
    time of that line when known (given to `LogParser.feed`, or read from a timestamp).
    """

    kind: EventKind
    line_no: int = 0
    host_time: float | None = None
    data: dict[str, Value] = field(default_factory=dict)

    def to_json(self) -> dict[str, Value | float]:
        return {"kind": self.kind, "line_no": self.line_no, "host_time": self.host_time, **self.data}


_STATE: Final = re.compile(
    r"(tls13 )?(client|server) state: (?:(\d+)|(?:MBEDTLS_SSL_)?([A-Z][A-Z0-9_]+)\s*(?:\(\s*(\d+)\s*\))?)"
)
_TRANSITION: Final = re.compile(
    r"handshake state: (\d+) \((?:MBEDTLS_SSL_)?(\w+)\) -> (\d+) \((?:MBEDTLS_SSL_)?(\w+)\)"
)
_RETURNED: Final = re.compile(
    r"([\w>.-]+\(\w*\)(?:\(\w*\))?)\s+returned\s+(-?\d+|-?0x[0-9a-fA-F]+)(?:\s*\((-?0x[0-9a-fA-F]+)\))?"
)
_WANT: Final = re.compile(r"in_left: (\d+|zu), nb_want: (\d+|zu)")
_RECORD: Final = re.compile(
    r"(input|output) record: msgtype = (\d+), version = \[(?:(\d+):(\d+)|0x([0-9a-fA-F]+))\], msglen = (\d+|zu)"
)
_ALERT_TYPE: Final = re.compile(r"got an alert message, type: \[(\d+):(\d+)\]")
_FATAL_ALERT: Final = re.compile(r"is a fatal alert message \(msg (\d+)\)")
_SEND_ALERT: Final = re.compile(r"send alert level=(\d+) message=(\d+)")
_SUITE: Final = re.compile(
    r"(?:(?:chosen|selected|negotiated) ciphersuite:?|^ciphersuite =)\s+(?:0x)?([0-9a-fA-F]{4}\b)?[ ,(]*(TLS[-_][\w-]+)?"
)
_FLAGS: Final = re.compile(r"! Certificate verification flags\s+([0-9a-fA-F]+)")
_SIZE: Final = re.compile(
    r"bad message length|(?:too|is) (?:large|long|big)\b|buffer too small|record overflow|"
    r"exceeds|not enough room|message length.*> ",
    re.IGNORECASE,
)

# `=> parse certificate`, `=> write client hello`, …: the handshake step a function belongs to, as
# (client state, server state) without the MBEDTLS_SSL_ prefix (None where that role never runs it).
# `read`/`write` (mbedtls_ssl_read/write) move application data: the handshake is over. Level-3 lines
# printed inside a step (`client hello, …`, the server's suite selection) count as that step.
STEPS: Final[dict[str, tuple[str | None, str | None]]] = {
    "write client hello": ("CLIENT_HELLO", None),
    "client hello": ("CLIENT_HELLO", None),
    "parse client hello": (None, "CLIENT_HELLO"),
    "client hello v3": (None, "CLIENT_HELLO"),
    "pick ciphersuite": (None, "CLIENT_HELLO"),
    "parse server hello": ("SERVER_HELLO", None),
    "write server hello": (None, "SERVER_HELLO"),
    "server hello": ("SERVER_HELLO", "SERVER_HELLO"),
    "parse certificate": ("SERVER_CERTIFICATE", "CLIENT_CERTIFICATE"),
    "write certificate": ("CLIENT_CERTIFICATE", "SERVER_CERTIFICATE"),
    "parse server key exchange": ("SERVER_KEY_EXCHANGE", None),
    "write server key exchange": (None, "SERVER_KEY_EXCHANGE"),
    "parse certificate request": ("CERTIFICATE_REQUEST", None),
    "write certificate request": (None, "CERTIFICATE_REQUEST"),
    "parse server hello done": ("SERVER_HELLO_DONE", None),
    "write server hello done": (None, "SERVER_HELLO_DONE"),
    "write client key exchange": ("CLIENT_KEY_EXCHANGE", None),
    "parse client key exchange": (None, "CLIENT_KEY_EXCHANGE"),
    "write certificate verify": ("CERTIFICATE_VERIFY", None),
    "parse certificate verify": (None, "CERTIFICATE_VERIFY"),
    "write change cipher spec": ("CLIENT_CHANGE_CIPHER_SPEC", "SERVER_CHANGE_CIPHER_SPEC"),
    "parse change cipher spec": ("SERVER_CHANGE_CIPHER_SPEC", "CLIENT_CHANGE_CIPHER_SPEC"),
    "write finished": ("CLIENT_FINISHED", "SERVER_FINISHED"),
    "parse finished": ("SERVER_FINISHED", "CLIENT_FINISHED"),
    "read": ("HANDSHAKE_OVER", "HANDSHAKE_OVER"),
    "write": ("HANDSHAKE_OVER", "HANDSHAKE_OVER"),
}
APPLICATION_DATA_STEPS: Final = frozenset({"read", "write"})
# The functions above that print `=> name` (the others are level-3 lines inside a step), for the
# parser's quiet-line pattern and the bulk reader.
STEP_FUNCTIONS: Final = tuple(
    name for name in STEPS if name.startswith(("parse ", "write ", "read", "write"))
)
# Of the level-3 lines of the ClientHello and ServerHello steps, those that say the step (one or two
# per step, in every release): the others only repeat it.
_CLIENT_HELLO_LINES: Final = (
    "client hello, max version",
    "client hello, got ",
    "client hello, total extension",
)
_SERVER_HELLO_LINES: Final = ("server hello, current time", "server hello, total extension")
_SERVER_PICKS: Final = (
    "trying ciphersuite",
    "ciphersuite requires certificate",
    "candidate certificate chain",
)
# "No shared ciphersuite", in the wordings of Mbed TLS's releases and of the peers' alerts.
_NO_SHARED: Final = re.compile(
    r"no (?:shared|common|usable|matching|matched) cipher|cipher ?suites? in common|"
    r"none of (?:the common ciphersuites|them) (?:is )?usable|no cipher ?(?:suite )?chosen",
    re.IGNORECASE,
)
_ALLOC: Final = re.compile(r"\b(?:[cm]?alloc|allocation)\b.{0,32}?\bfail|out of memory", re.IGNORECASE)
# A hex dump's header: what is dumped and its size (`mbedtls_debug_print_buf`). The record dumps among
# them are the parser's (it reads the record header in the row after) and the wire check's (`wirecheck`
# collects the rows of `input record from network`, the bytes Mbed TLS read).
DUMP_HEADER: Final = re.compile(r"dumping '([^']*)'(?: \((\d+|zu) bytes\))?")
RECORD_DUMPS: Final[dict[str, str]] = {
    "input record header": "in",
    "input record from network": "in",
    "output record sent to network": "out",
}

_RECORD_VERSIONS: Final[dict[int, str]] = {
    0x0303: "tls1.2",
    0x0302: "tls1.1",
    0x0301: "tls1.0",
    0xFEFD: "dtls",
    0xFEFF: "dtls",
}


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def parse_count(decimal: str, hexa: str | None) -> int | None:
    """The value of a `returned N (-0x…)` pair: the decimal when readable, else from the hex.

    `mbedtls_debug_print_ret` prints `-0x%04x` of `-ret` as unsigned: `-0x7780` is -0x7780, and
    `-0xfffffffb` is 5. A bare `0xffff8880` is the unsigned 32-bit form of the value itself.
    """
    text = decimal.lower()
    try:
        if "0x" in text:
            value = _signed32(int(text.replace("-", "").replace("0x", ""), 16))
            return -value if text.startswith("-") else value
        return int(text)
    except ValueError:
        pass
    if hexa:
        digits = hexa.lower().replace("-", "").replace("0x", "")
        try:
            value = _signed32(int(digits, 16))
        except ValueError:
            return None
        return -value if hexa.startswith("-") else value
    return None


def classify(message: str) -> tuple[EventKind, dict[str, Value]] | None:
    """What a bare Mbed TLS message means, or None when it carries nothing the diagnosis uses.

    The bulk reader (bulk.py, `_WORDLESS`) skips messages holding none of the words tested here:
    a new word here goes there too (tests/mbedtls/test_bulk.py compares both readers).
    """
    head = message[:3]
    if head == "=> " or head == "<= ":
        rest = message[3:]
        if rest == "handshake":
            return ("handshake_start" if head == "=> " else "handshake_end"), {}
        if rest == "handshake wrapup" and head == "<= ":
            return "handshake_done", {}
        if head == "=> " and rest.startswith("send alert"):
            return "alert_sent", {}
        if rest.startswith("parse new session ticket"):
            return "new_session_ticket", {}
        if rest.startswith(("parse hello verify", "write hello verify")):
            return "protocol", {"protocol": "dtls"}
        if head == "=> ":
            step = rest.rstrip()
            if step in STEPS:
                return "step", {"step": step}
        elif rest.startswith("fetch input"):
            return "fetch_done", {}
        return None
    if message.startswith(("client hello", "server hello")):
        if message.startswith("client hello v3,"):
            return "step", {"step": "client hello v3"}
        if message.startswith(_CLIENT_HELLO_LINES):
            return "step", {"step": "client hello"}
        if message.startswith(_SERVER_HELLO_LINES):
            return "step", {"step": "server hello"}
    if message.startswith(_SERVER_PICKS):
        return "step", {"step": "pick ciphersuite"}
    if message.startswith("dumping '"):
        d = DUMP_HEADER.match(message)
        if d is not None and d.group(1) in RECORD_DUMPS:
            return "record_dump", {"direction": RECORD_DUMPS[d.group(1)]}
        return None
    if "state: " in message:
        m = _STATE.search(message)
        if m is not None:
            number = m.group(3) or m.group(5)
            return "state", {
                "role": m.group(2),
                "number": int(number) if number else None,
                "name": m.group(4),
                "tls13": bool(m.group(1)),
            }
        t = _TRANSITION.search(message)
        if t is not None:
            return "state", {"number": int(t.group(3)), "name": t.group(4), "from": int(t.group(1))}
        return None
    if "returned" in message:
        r = _RETURNED.search(message)
        if r is None:
            return None
        value = parse_count(r.group(2), r.group(3))
        if value is None:
            return None
        function = r.group(1)
        if function.startswith("ssl->f_recv"):
            return "recv", {"value": value}
        if function.startswith("ssl->f_send"):
            return "send", {"value": value}
        if value < 0:
            return "error", {"code": value, "function": function}
        return None
    if message.startswith("in_left"):
        w = _WANT.match(message)
        if w is None:
            return None
        in_left = int(w.group(1)) if w.group(1) != "zu" else None
        nb_want = int(w.group(2)) if w.group(2) != "zu" else None
        return "fetch_wait", {"in_left": in_left, "nb_want": nb_want}
    if "record: " in message:
        rec = _RECORD.search(message)
        if rec is None:
            return None
        version = int(rec.group(5), 16) if rec.group(5) else int(rec.group(3)) * 256 + int(rec.group(4))
        length = int(rec.group(6)) if rec.group(6) != "zu" else None
        return ("record_in" if rec.group(1) == "input" else "record_out"), {
            "type": int(rec.group(2)),
            "version": _RECORD_VERSIONS.get(version, f"0x{version:04x}"),
            "length": length,
            "hex_version": bool(rec.group(5)),
        }
    if "alert" in message:
        a = _ALERT_TYPE.search(message)
        if a is not None:
            return "alert_received", {"level": int(a.group(1)), "description": int(a.group(2))}
        f = _FATAL_ALERT.search(message)
        if f is not None:
            return "alert_received", {"level": 2, "description": int(f.group(1))}
        s = _SEND_ALERT.search(message)
        if s is not None:
            return "alert_sent", {"level": int(s.group(1)), "description": int(s.group(2))}
        return None
    if message.startswith("handshake: done"):
        return "handshake_done", {}
    if "close notify message" in message:
        return "close_notify", {}
    if "ipher" in message and _NO_SHARED.search(message):
        return "no_shared_cipher", {}
    if ("lloc" in message or "memory" in message) and _ALLOC.search(message):
        return "alloc_problem", {"text": message}
    if "ciphersuite" in message:
        c = _SUITE.search(message)
        if c is not None and (c.group(1) or c.group(2)):
            suite: dict[str, Value] = {"id": c.group(1), "name": c.group(2)}
            if message.startswith("server hello, "):  # read (client) or written (server) in the ServerHello
                suite["step"] = "server hello"
            return "ciphersuite", suite
        return None
    if "Certificate verification flags" in message:
        if "clear" in message:
            return "cert_verify", {"ok": True, "flags": None}
        fl = _FLAGS.search(message)
        return "cert_verify", {"ok": False, "flags": fl.group(1) if fl else None}
    if "mac does not match" in message or "bad finished message" in message:
        return "mac_problem", {"text": message}
    if message == "timeout":
        return "timeout", {}
    if (
        "too " in message or "length" in message or "ceed" in message or "overflow" in message
    ) and _SIZE.search(message):
        return "size_problem", {"text": message}
    return None


# What applications print around the library: `! mbedtls_ssl_handshake returned -0x7780`,
# `esp-tls: mbedtls_ssl_setup returned -0x7F00`, `Reason:[-0x7f00]`, `mbedTLS error: -0x7f00`, and
# their own state banners (`ssl->state = 17`, `<== MBEDTLS_SSL_SERVER_HELLO`).
_APP_ERROR: Final = re.compile(
    r"(?:\b((?:mbedtls|ssl)_\w+)(?:\(\))?\s+returned\s*:?\s*|\bReason:\s*\[|\b[Ee]rror:?\s+)(-0x[0-9a-fA-F]{2,8})\b"
)
_APP_STATE: Final = re.compile(r"ssl->state\s*=\s*(\d{1,2})\b|\bMBEDTLS_SSL_([A-Z][A-Z0-9_]+)\b")


def classify_application(text: str) -> tuple[EventKind, dict[str, Value]] | None:
    """An Mbed TLS result that an application line reports, or None.

    The code or state name is only a candidate: the parser keeps it when the tables know it.
    """
    if "0x" in text:
        e = _APP_ERROR.search(text)
        if e is not None:
            return "error", {"code": -int(e.group(2)[3:], 16), "function": e.group(1) or "application"}
    if "MBEDTLS_SSL_" in text or "ssl->state" in text:
        m = _APP_STATE.search(text)
        if m is not None:
            number = m.group(1)
            return "state", {
                "role": None,
                "number": int(number) if number else None,
                "name": m.group(2),
                "tls13": False,
                "source": "application",
            }
    return None


def record_bytes(row: str, direction: str) -> tuple[EventKind, dict[str, Value]] | None:
    """The first row (`0000:  15 03 03 00 02 02 50  ...`) of a record dump: type, length, alert bytes."""
    values: list[int] = []
    for token in row[5:].split()[:16]:
        if len(token) != 2:
            break
        try:
            values.append(int(token, 16))
        except ValueError:
            break
    if len(values) < 5:
        return None
    length = values[3] * 256 + values[4]
    alert = values[0] == 21 and length == 2 and len(values) >= 7
    return "record_bytes", {
        "direction": direction,
        "type": values[0],
        "length": length,
        "level": values[5] if alert else None,
        "description": values[6] if alert else None,
    }
