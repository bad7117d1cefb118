"""The incremental parser: feed UART lines, read the handshake trace at any moment.

`LogParser.feed(line)` runs one line through the lexer (prefix stripping), the event classifier
and the version fingerprint, and folds the events into the current `HandshakeTrace`. A log may
hold several handshakes (firmware that retries): a new trace starts at `=> handshake` after a
finished or failed one, or when the state goes back to HELLO_REQUEST/CLIENT_HELLO after it had
advanced. Application lines are counted and lend their timestamps as host time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rig.mbedtls import tables
from rig.mbedtls.events import (
    APPLICATION_DATA_STEPS,
    STEP_FUNCTIONS,
    STEPS,
    Event,
    EventKind,
    Value,
    classify,
    classify_application,
    record_bytes,
)
from rig.mbedtls.lexer import PREFIXED_BYTES, PREFIXED_TEXT, LogLine, clean, from_prefix, split_line
from rig.mbedtls.trace import NOT_FATAL, Alert, ErrorReturn, HandshakeTrace, Record, StateVisit
from rig.mbedtls.versions import VersionFingerprint

# What follows `file.c:N: [|L| ][ptr: ]` in a line the diagnosis does not need: a hex-dump row (group 1
# unset; right after a record dump's header `feed` reads it all the same), or (group 1) an `=>`/`<=`
# function trace other than those
# `classify` and the fingerprint use, a `dumping '…'` header other than a record's, a ClientHello
# suite or a row of a certificate's key.
_STEP_NAMES = "|".join(sorted((re.escape(name) for name in STEP_FUNCTIONS), key=len, reverse=True))
_BORING = (
    r"[0-9a-f]{4}:  \S|("
    r"=> (?!handshake|send alert|parse new session|parse hello verify|write hello verify|fetch input"
    r"|(?:" + _STEP_NAMES + r")\s*$)"
    r"|<= (?!handshake|send alert|parse new session|parse hello verify|write hello verify|fetch input)"
    r"|dumping '(?!input record|output record)|client hello, add ciphersuite: "
    r"|[0-9a-f]{2} [0-9a-f]{2} [0-9a-f]{2} [0-9a-f]{2} "
    r"|Supported Signature Algorithm found: |handshake message: msglen = "
    r"|message length: \d+, out_left: \d+\s*$"
    r")"
)
BORING_PATTERN = _BORING  # also used by the bulk reader (bulk.py)
_BORING_TEXT = re.compile(_BORING)
_BORING_BYTES = re.compile(_BORING.encode())
# The prefix and the boring rest in one match (_QUIET_GROUP is _BORING's group 1).
_QUIET_TEXT = re.compile(PREFIXED_TEXT.pattern + "(?:" + _BORING + ")")
_QUIET_BYTES = re.compile(PREFIXED_BYTES.pattern + b"(?:" + _BORING.encode() + b")")
_QUIET_GROUP = PREFIXED_TEXT.groups + 1
# A firmware's boot banner naming the library: `mbed TLS 2.28.3`, `Mbed TLS v3.6.0`, `mbedtls-2.16.5`.
_BANNER = re.compile(r"\b[Mm]bed ?TLS[ /v-]*([23])\.(\d{1,2})\b", re.IGNORECASE)
_TLS13_ONLY_STATES = ("ENCRYPTED_EXTENSIONS", "HELLO_RETRY_REQUEST", "TLS1_3_", "END_OF_EARLY_DATA", "_CCS_")
_RESTART_STATES = frozenset({tables.HELLO_REQUEST, tables.CLIENT_HELLO})
_ALL_STATE_NAMES = frozenset(name for table in tables.STATE_TABLES.values() for name in table)
# Consecutive alert reports of one alert (`got an alert message`, `is a fatal alert message`, the
# record's bytes in a dump) are at most this many lines apart.
_SAME_ALERT_LINES = 12


class LogParser:
    """Incremental Mbed TLS log parser: `feed` lines, read `trace`; `diagnose_parser` judges it at any moment."""

    def __init__(self, mbedtls_version: str | None = None) -> None:
        self.version_override = mbedtls_version
        self.fingerprint = VersionFingerprint()
        self.attempts: list[HandshakeTrace] = [HandshakeTrace()]
        self.line_no = 0
        self.counts: dict[str, int] = {"lines": 0, "mbedtls": 0, "app": 0, "blank": 0, "unknown": 0}
        self.last_time: float | None = None
        self._resolved_version: str | None = None  # the fingerprint guess the names were resolved with
        # The last unclassified Mbed TLS line (maybe cut by a hard wrap), as LogLine or still raw.
        self._pending: tuple[LogLine | str | bytes, int, float | None] | None = None
        self._dump: str | None = None  # "in"/"out" right after a record dump's header line
        # Once the log shows the library's state lines, the handshake messages parsed and written
        # (`=> parse certificate`) say nothing more; once it shows f_recv's results, `<= fetch input`
        # says nothing more. Both are then read as quiet lines (the bulk reader skips them).
        self.state_lines = False
        self.recv_lines = False
        # The last line `feed` split with the general lexer and found Mbed TLS in (the bulk reader
        # learns the log's prefix styles from it).
        self.split: tuple[str | bytes, LogLine] | None = None

    # --- reading --------------------------------------------------------------------------------

    @property
    def trace(self) -> HandshakeTrace:
        """The current (last) handshake attempt."""
        return self.attempts[-1]

    @property
    def version(self) -> str | None:
        """The Mbed TLS version: the override given, else the fingerprint's best guess."""
        return self.version_override or self.fingerprint.best

    # --- feeding --------------------------------------------------------------------------------

    def feed_all(self, lines: Iterable[str | bytes]) -> None:
        """Feed every line of an iterable of str/bytes lines (a whole log: the fast way).

        Same result as `feed` on each line. The lines the diagnosis does not use (most of a verbose
        log) are only counted here, in locals written back before any other line is fed.
        """
        feed = self.feed
        quiet_bytes = _QUIET_BYTES.match
        quiet_text = _QUIET_TEXT.match
        seen: set[str | bytes] = set(self.fingerprint.files)
        quiet_lines = 0  # boring lines since the last write-back
        last_quiet: str | bytes | None = None  # the last of them, when it may start a wrapped message
        last_quiet_no = 0
        quiet: re.Match[str] | re.Match[bytes] | None
        for line in lines:
            if isinstance(line, bytes):
                quiet = quiet_bytes(line) if b"\x1b" not in line and b"\x00" not in line else None
            else:
                quiet = quiet_text(line) if "\x1b" not in line and "\x00" not in line else None
            if quiet is not None and (quiet.group(_QUIET_GROUP) is not None or self._dump is None):
                quiet_lines += 1
                if quiet.group(_QUIET_GROUP) is None:
                    last_quiet = None  # a hex-dump row ends any pending message
                else:
                    last_quiet, last_quiet_no = line, self.line_no + quiet_lines
                    name = quiet.group(1)
                    if name not in seen:
                        seen.add(name)
                        self.fingerprint.observe_file(name.decode() if isinstance(name, bytes) else name)
                continue
            if quiet_lines:
                self._write_back(quiet_lines, last_quiet, last_quiet_no)
                quiet_lines = 0
            feed(line)
        if quiet_lines:
            self._write_back(quiet_lines, last_quiet, last_quiet_no)

    def _write_back(self, quiet_lines: int, last_quiet: str | bytes | None, last_quiet_no: int) -> None:
        self._dump = None
        self.line_no += quiet_lines
        self.counts["lines"] += quiet_lines
        self.counts["mbedtls"] += quiet_lines
        self._pending = (last_quiet, last_quiet_no, self.last_time) if last_quiet is not None else None

    def feed(self, line: str | bytes, host_time: float | None = None) -> list[Event]:
        """Parse one physical line; return the events it produced (often none)."""
        self.line_no += 1
        counts = self.counts
        counts["lines"] += 1
        # Most lines start with `file.c:N: `: split them here, without the general lexer's search.
        prefix: re.Match[str] | re.Match[bytes] | None = None
        if isinstance(line, bytes):
            if b"\x1b" not in line and b"\x00" not in line:
                prefix = PREFIXED_BYTES.match(line)
        elif "\x1b" not in line and "\x00" not in line:
            prefix = PREFIXED_TEXT.match(line)
        if prefix is None:
            parsed = split_line(line)
            if parsed.kind == "mbedtls" and (parsed.head or parsed.file is None):
                self.split = (line, parsed)
        else:
            start = prefix.end()
            boring = (_BORING_BYTES if isinstance(line, bytes) else _BORING_TEXT).match(line, start)  # type: ignore[arg-type]
            if boring is not None and (boring.group(1) is not None or self._dump is None):
                # The bulk of a verbose log; exactly what the general path below does with it.
                counts["mbedtls"] += 1
                self._dump = None
                if host_time is not None:
                    self.last_time = host_time
                if boring.group(1) is None:
                    self._pending = None  # a hex-dump row
                else:
                    name = prefix.group(1)
                    file = name.decode() if isinstance(name, bytes) else name
                    if file not in self.fingerprint.files:
                        self.fingerprint.observe_file(file)
                    self._pending = (line, self.line_no, self.last_time)  # split only if a join needs it
                return []
            parsed = from_prefix(line, prefix)
        kind = parsed.kind
        stamp = host_time if host_time is not None else parsed.host_time
        if stamp is not None:
            self.last_time = stamp
        else:
            stamp = self.last_time
        dump, self._dump = self._dump, None
        if kind != "mbedtls":
            if kind != "blank":
                reported = self._application_event(parsed.message, stamp)
                if reported is not None:
                    counts["mbedtls"] += 1
                    self._pending = None
                    return reported
            counts[kind] += 1
            if self.fingerprint.banner is None and kind != "blank":
                banner = _BANNER.search(parsed.message)
                if banner is not None:
                    self.fingerprint.observe_banner(int(banner.group(1)), int(banner.group(2)))
                    self._resolve_version()
            if self._pending is not None and (
                kind == "unknown" or (kind == "app" and parsed.host_time is None)
            ):
                # A hard-wrapped continuation has no prefix of its own (`[3:3], msglen = 1` may look like
                # an application's tag): try it as the rest of the previous message.
                return self._join_wrapped(clean(line))
            self._pending = None
            return []
        counts["mbedtls"] += 1
        self._pending = None
        message = parsed.message
        if len(message) > 6 and message[4] == ":" and message[5] == " ":
            if dump is not None and message.startswith("0000:"):
                row = record_bytes(message, dump)
                if row is not None and row[1]["type"] == 21:  # an alert record: what its bytes show
                    event = Event(row[0], self.line_no, stamp, row[1])
                    self._apply(event)
                    return [event]
            return []  # a hex-dump row: its ASCII column may contain anything
        file = parsed.file
        if file is not None:
            if file not in self.fingerprint.files:
                self.fingerprint.observe_file(file)
            if file == "ssl_tls.c" and message == "=> fetch input":
                self.fingerprint.observe_fetch_in_ssl_tls()
        result = self._classify(message)
        if result is None or result[0] == "record_dump":
            # Maybe the start of a hard-wrapped message: the next unknown line may complete it. A
            # record dump's header only says that its first row tells the record's type.
            if result is not None:
                self._dump = str(result[1]["direction"])
            self._pending = (parsed, self.line_no, stamp)
            return []
        event = Event(result[0], self.line_no, stamp, result[1])
        self._note_version(event, parsed)
        self._apply(event)
        return [event]

    def _classify(self, message: str) -> tuple[EventKind, dict[str, Value]] | None:
        """`classify`, less what the log has made redundant (see `state_lines`, `recv_lines`)."""
        result = classify(message)
        if result is not None:
            kind = result[0]
            if kind == "step" and self.state_lines and result[1]["step"] not in APPLICATION_DATA_STEPS:
                return None
            if kind == "fetch_done" and self.recv_lines:
                return None
        return result

    def _application_event(self, text: str, stamp: float | None) -> list[Event] | None:
        """An Mbed TLS result an application line reports (an error code it printed, its own state
        banner), as the event the library's line would have given; None for any other line."""
        result = classify_application(text)
        if result is None:
            return None
        kind, data = result
        if kind == "error":
            if tables.error_name(int(str(data["code"])), self.version) is None:
                return None  # not an Mbed TLS code: some other number the application printed
        else:
            name = data["name"]
            if name is not None and "MBEDTLS_SSL_" + str(name) not in _ALL_STATE_NAMES:
                return None  # MBEDTLS_SSL_VERIFY_REQUIRED and the like: not a state
            if any(visit.source == "library" for visit in self.trace.states):
                return None  # the library prints the states itself: its lines are the record
        event = Event(kind, self.line_no, stamp, data)
        self._apply(event)
        return [event]

    def _join_wrapped(self, continuation: str) -> list[Event]:
        assert self._pending is not None
        pending, line_no, stamp = self._pending
        self._pending = None
        parsed = pending if isinstance(pending, LogLine) else split_line(pending)
        message = parsed.message
        if len(message) > 6 and message[4] == ":" and message[5] == " ":
            return []  # a hex-dump row (left unsplit by the bulk reader): nothing continues it
        joined = message + continuation
        result = self._classify(joined)
        if result is None and continuation[:1] != " ":  # wrapped at a word boundary, the space dropped
            result = self._classify(parsed.message + " " + continuation)
        if result is None or result[0] == "record_dump":
            if len(joined) < 240:  # a message wrapped over several lines; stop at an implausible length
                self._pending = (parsed._replace(message=joined), line_no, stamp)
            return []
        event = Event(result[0], line_no, stamp, result[1])
        self._note_version(event, parsed)
        self._apply(event)
        return [event]

    def _note_version(self, event: Event, parsed: LogLine) -> None:
        if self.version_override is not None:
            return
        kind = event.kind
        if kind == "state":
            data = event.data
            if "from" in data:
                self.fingerprint.observe_style("transition")
            elif data["name"] is not None:
                self.fingerprint.observe_style(
                    "name_number_state" if data["number"] is not None else "name_state"
                )
            if "from" not in data and parsed.file is not None and parsed.source_line is not None:
                self.fingerprint.observe_line(parsed.file, f"{data['role']}_state", parsed.source_line)
        elif kind == "handshake_start" and parsed.file is not None and parsed.source_line is not None:
            self.fingerprint.observe_line(parsed.file, "handshake_start", parsed.source_line)
        elif kind == "record_in" and event.data.get("hex_version"):
            self.fingerprint.observe_style("hex_record_version")
        self._resolve_version()

    def _resolve_version(self) -> None:
        best = self.fingerprint.best
        if best != self._resolved_version and self.version_override is None:
            self._resolved_version = best
            self._resolve_states()

    def _resolve_states(self) -> None:
        version = self.version
        for trace in self.attempts:
            for visit in trace.states:
                _resolve(visit, version)
            for error in trace.errors:
                error.name = tables.error_name(error.code, version)

    def _new_attempt(self) -> HandshakeTrace:
        trace = HandshakeTrace(attempt=len(self.attempts) + 1)
        self.attempts.append(trace)
        return trace

    def _apply(self, event: Event) -> None:
        trace = self.attempts[-1]
        kind = event.kind
        data = event.data
        line_no = event.line_no
        stamp = event.host_time
        if kind == "handshake_start":
            if trace.finished:
                trace = self._new_attempt()
            trace.handshake_entries += 1
            trace.app_data_line = None
        elif kind == "state":
            name, number = data["name"], data["number"]
            visit = StateVisit(
                number if isinstance(number, int) else None,
                "MBEDTLS_SSL_" + str(name).removeprefix("MBEDTLS_SSL_") if name is not None else None,
                line_no,
                stamp,
                "both"
                if name is not None and number is not None
                else ("name" if name is not None else "number"),
            )
            if data.get("source") == "application":
                visit.source = "application"
            else:
                self.state_lines = True
            _resolve(visit, self.version)
            trace.app_data_line = None
            if data.get("role") is not None:
                trace.role = str(data["role"])
            if data.get("tls13") or (visit.name and any(s in visit.name for s in _TLS13_ONLY_STATES)):
                trace.tls13 = True
            previous = trace.last_state
            if (
                visit.name in _RESTART_STATES
                and any(v.number is not None and v.number > 1 for v in trace.states[-3:])
                and previous is not None
            ):
                moved = (
                    trace.events[-1:] if trace.events and trace.events[-1].kind == "handshake_start" else []
                )
                if moved:
                    trace.events.pop()
                trace = self._new_attempt()
                trace.events.extend(moved)
                trace.handshake_entries += len(moved)
                previous = None
            if previous is not None and previous.number == visit.number and previous.name == visit.name:
                if trace._bytes_since_visit:
                    trace.want_read_retries = 0
                else:
                    trace.want_read_retries += 1
            else:
                trace.want_read_retries = 0
                trace.last_progress_time = stamp
                trace.last_progress_line = line_no
                trace.step_errors = []
                trace.waiting_for_input = False
            trace._bytes_since_visit = False
            trace.states.append(visit)
            if visit.name == tables.HANDSHAKE_OVER:
                trace.completed = True
        elif kind == "fetch_wait":
            in_left, nb_want = data["in_left"], data["nb_want"]
            if not (isinstance(in_left, int) and isinstance(nb_want, int)) or in_left < nb_want:
                trace.waiting_for_input = True
                trace.last_wait_line = line_no
        elif kind == "recv":
            self.recv_lines = True
            value = int(str(data["value"]))
            if value > 0:
                trace.inbound_reads.append(value)
                trace.waiting_for_input = False
                trace._bytes_since_visit = True
                trace.last_progress_time = stamp
                trace.last_progress_line = line_no
            elif value == 0:
                trace.eof = True
                trace.waiting_for_input = False
            else:
                self._add_error(trace, value, "ssl->f_recv", line_no, stamp)
        elif kind == "send":
            value = int(str(data["value"]))
            if value >= 0:
                trace.outbound_writes.append(value)
            else:
                self._add_error(trace, value, "ssl->f_send", line_no, stamp)
        elif kind == "record_in" or kind == "record_out":
            version = str(data["version"])
            record = Record(
                int(str(data["type"])),
                version,
                data["length"] if isinstance(data["length"], int) else None,
                line_no,
            )
            (trace.records_in if kind == "record_in" else trace.records_out).append(record)
            if kind == "record_in" and record.type == 21 and not self._alert_seen_since(trace, line_no):
                trace.alert_record = Alert("received", None, None, line_no)
            if version == "dtls":
                trace.dtls = True
            elif not version.startswith("0x"):
                trace.record_version = version
        elif kind == "error":
            function = str(data["function"])
            self._add_error(trace, int(str(data["code"])), function, line_no, stamp)
            step = _step_of_function(function)
            if step is not None:
                self._apply(Event("step", line_no, stamp, {"step": step}))
                return
        elif kind == "handshake_done":
            trace.completed = True
            trace.waiting_for_input = False
        elif kind == "alert_received":
            self._alert_received(trace, _opt_int(data["level"]), _opt_int(data["description"]), line_no)
        elif kind == "alert_sent":
            self._alert_sent(trace, _opt_int(data.get("level")), _opt_int(data.get("description")), line_no)
        elif kind == "close_notify":
            trace.eof = True
            trace.alert_record = None
        elif kind == "record_bytes":
            if data["type"] == 21:
                level, description = _opt_int(data["level"]), _opt_int(data["description"])
                if data["direction"] == "out":
                    if level is not None:
                        self._alert_sent(trace, level, description, line_no)
                elif level is not None:
                    self._alert_received(trace, level, description, line_no)
                    if level == 1 and description == 0:
                        trace.eof = True
                elif not self._alert_seen_since(trace, line_no):
                    trace.alert_record = Alert("received", None, None, line_no)
        elif kind == "step":
            step = str(data["step"])
            trace.steps.append((step, line_no, stamp))
            client, server = STEPS[step]
            if trace.inferred_role is None and (client is None) != (server is None):
                trace.inferred_role = "client" if server is None else "server"
            trace.app_data_line = line_no if step in APPLICATION_DATA_STEPS else None
        elif kind == "fetch_done":
            trace.waiting_for_input = False
        elif kind == "alloc_problem":
            trace.alloc_problem_lines.append(line_no)
        elif kind == "new_session_ticket":
            # 2.x/3.0/3.1 clients print `client state: 12` before switching to SERVER_NEW_SESSION_TICKET
            # (ssl_cli.c): the step that parses the ticket is really state 17.
            current = trace.last_state
            ticket = tables.state_number("SERVER_NEW_SESSION_TICKET", self.version)
            if current is not None and current.number == 12 and current.printed == "number" and ticket == 17:
                current.number, current.name = ticket, tables.state_name(ticket, self.version)
        elif kind == "ciphersuite":
            trace.ciphersuite = str(data["name"] or data["id"])
            if "step" in data:
                trace.steps.append((str(data["step"]), line_no, stamp))
        elif kind == "protocol":
            if data["protocol"] == "dtls":
                trace.dtls = True
        elif kind == "cert_verify":
            if not data["ok"]:
                trace.cert_verify_failed_line = line_no
                trace.cert_verify_flags = str(data["flags"]) if data["flags"] else None
        elif kind == "size_problem":
            trace.size_problem_lines.append(line_no)
        elif kind == "mac_problem":
            trace.mac_problem_lines.append(line_no)
        elif kind == "no_shared_cipher":
            trace.steps.append(("parse client hello", line_no, stamp))
            trace.inferred_role = trace.inferred_role or "server"
            trace.no_shared_cipher_line = line_no
            trace.terminal_line = line_no  # the server has nothing to negotiate with: it gives up
        elif kind == "timeout":
            trace.timeout_line = line_no
        if trace.first_line is None:
            trace.first_line = line_no
        trace.last_line = line_no
        if stamp is not None:
            trace.last_time = stamp
        trace.events.append(event)

    @staticmethod
    def _alert_seen_since(trace: HandshakeTrace, line_no: int) -> bool:
        """A readable alert was received within the last few lines (the record's other reports)."""
        return any(
            a.direction == "received" and line_no - a.line_no <= _SAME_ALERT_LINES for a in trace.alerts[-2:]
        )

    @staticmethod
    def _alert_received(
        trace: HandshakeTrace, level: int | None, description: int | None, line_no: int
    ) -> None:
        trace.alert_record = None
        last = trace.alerts[-1] if trace.alerts else None
        if (
            last is not None
            and last.direction == "received"
            and last.description == description
            and line_no - last.line_no <= _SAME_ALERT_LINES
        ):
            # `got an alert message, type: [2:40]`, `is a fatal alert message (msg 40)` and the record's
            # bytes in a dump: one alert.
            if last.level is None and level is not None:
                trace.alerts[-1] = Alert("received", level, description, last.line_no)
            return
        trace.alerts.append(Alert("received", level, description, line_no))

    @staticmethod
    def _alert_sent(trace: HandshakeTrace, level: int | None, description: int | None, line_no: int) -> None:
        last = trace.alerts[-1] if trace.alerts else None
        if (
            last is not None
            and last.direction == "sent"
            and (last.description is None or last.description == description)
            and line_no - last.line_no <= _SAME_ALERT_LINES
        ):
            # `=> send alert message`, `send alert level=2 message=80`, the record in a dump: one alert.
            if description is not None:
                trace.alerts[-1] = Alert("sent", level, description, last.line_no)
            return
        trace.alerts.append(Alert("sent", level, description, line_no))

    def _add_error(
        self, trace: HandshakeTrace, code: int, function: str, line_no: int, stamp: float | None
    ) -> None:
        error = ErrorReturn(code, tables.error_name(code, self.version), function, line_no, stamp)
        trace.errors.append(error)
        if error.name not in NOT_FATAL:
            trace.step_errors.append(error)
            trace.waiting_for_input = False


def _step_of_function(function: str) -> str | None:
    """The handshake step a failing function belongs to: `ssl_parse_server_key_exchange()` is the
    step `parse server key exchange`; `x509_verify_cert()` verifies the peer's certificate."""
    name = function.split("(", 1)[0].removeprefix("mbedtls_").removeprefix("ssl_").replace("_", " ")
    if name == "x509 verify cert":
        return "parse certificate"
    return name if name in STEPS and name not in APPLICATION_DATA_STEPS else None


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _resolve(visit: StateVisit, version: str | None) -> None:
    """Fill the half of a state visit that was not printed, with the enum of `version`."""
    if visit.printed == "number" and visit.number is not None:
        visit.name = tables.state_name(visit.number, version)
    elif visit.printed == "name" and visit.name is not None:
        visit.number = tables.state_number(visit.name, version)
