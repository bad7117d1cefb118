"""The handshake trace: what one handshake attempt did, in order (states, bytes, records, alerts, errors).

Filled by `LogParser` (parser.py) line by line and read at any moment: by the live harness while
the UART is still talking, by `diagnose` for the verdict and by `diff` to compare two attempts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rig.mbedtls import tables
from rig.mbedtls.events import STEPS, Event

# Return codes that do not end a handshake (the caller just calls again, or the library goes on).
NOT_FATAL = frozenset(
    {
        "MBEDTLS_ERR_SSL_WANT_READ",
        "MBEDTLS_ERR_SSL_WANT_WRITE",
        "MBEDTLS_ERR_SSL_ASYNC_IN_PROGRESS",
        "MBEDTLS_ERR_SSL_CRYPTO_IN_PROGRESS",
        "MBEDTLS_ERR_SSL_CONTINUE_PROCESSING",
        "MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED",
        "MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET",
        "MBEDTLS_ERR_SSL_NON_FATAL",
    }
)


@dataclass(slots=True)
class StateVisit:
    """One print of the state line: the handshake step function was (re-)entered in this state."""

    number: int | None
    name: str | None
    line_no: int
    host_time: float | None
    printed: str = "number"  # what the line showed ("number", "name", "both"): the rest is resolved
    source: str = "library"  # "application": the application's own banner (`ssl->state = 17`)

    def label(self) -> str:
        """`12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC)`, or whichever half is known."""
        if self.number is not None and self.name:
            return f"{self.number} ({self.name})"
        return str(self.number) if self.number is not None else (self.name or "?")


@dataclass(slots=True)
class Record:
    """A TLS record header the library logged (`input record` / `output record`)."""

    type: int
    version: str
    length: int | None
    line_no: int


@dataclass(slots=True)
class ErrorReturn:
    """A negative return code the library logged (`func() returned -30592 (-0x7780)`)."""

    code: int
    name: str | None
    function: str
    line_no: int
    host_time: float | None


@dataclass(slots=True)
class Alert:
    """An alert received or sent; level/description are None when the log level hid them."""

    direction: str  # "received" | "sent"
    level: int | None
    description: int | None
    line_no: int

    @property
    def name(self) -> str | None:
        return tables.ALERT_NAMES.get(self.description) if self.description is not None else None


@dataclass
class HandshakeTrace:
    """Everything one handshake attempt did, in order. Read it at any moment while feeding."""

    attempt: int = 1
    role: str | None = None
    ciphersuite: str | None = None
    states: list[StateVisit] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    inbound_reads: list[int] = field(default_factory=list)
    outbound_writes: list[int] = field(default_factory=list)
    records_in: list[Record] = field(default_factory=list)
    records_out: list[Record] = field(default_factory=list)
    errors: list[ErrorReturn] = field(default_factory=list)
    step_errors: list[ErrorReturn] = field(default_factory=list)  # since the last state advance
    alerts: list[Alert] = field(default_factory=list)
    completed: bool = False
    waiting_for_input: bool = False
    last_progress_time: float | None = None
    last_progress_line: int | None = None
    want_read_retries: int = 0
    last_wait_line: int | None = None
    last_time: float | None = None
    first_line: int | None = None
    last_line: int | None = None
    eof: bool = False  # f_recv returned 0
    dtls: bool = False
    tls13: bool = False
    record_version: str | None = None
    cert_verify_failed_line: int | None = None
    cert_verify_flags: str | None = None
    size_problem_lines: list[int] = field(default_factory=list)
    mac_problem_lines: list[int] = field(default_factory=list)
    no_shared_cipher_line: int | None = None
    timeout_line: int | None = None
    handshake_entries: int = 0  # `=> handshake` lines: calls of the handshake step loop
    # Handshake messages parsed or written (`=> parse certificate`, …): the states a log without
    # state lines went through, as (step, line, host time); see `inferred_state`.
    steps: list[tuple[str, int, float | None]] = field(default_factory=list)
    inferred_role: str | None = None  # from the steps only one role runs
    app_data_line: int | None = None  # mbedtls_ssl_read/write after the last handshake line
    alert_record: Alert | None = None  # an alert record whose content the log has not shown (yet)
    terminal_line: int | None = None  # a message that ends the handshake by itself (no shared suite)
    alloc_problem_lines: list[int] = field(default_factory=list)
    _bytes_since_visit: bool = False

    @property
    def last_state(self) -> StateVisit | None:
        return self.states[-1] if self.states else None

    @property
    def root_error(self) -> ErrorReturn | None:
        """The first fatal error of the step the handshake ended in (not the wrappers re-returning it)."""
        return self.step_errors[0] if self.step_errors else None

    @property
    def fatal_alert_received(self) -> Alert | None:
        for alert in reversed(self.alerts):
            if alert.direction == "received" and alert.level == 2:
                return alert
        return None

    @property
    def established(self) -> bool:
        """Application data moved after the last handshake line: a session that was set up earlier."""
        return self.app_data_line is not None

    @property
    def unread_alert(self) -> Alert | None:
        """An alert record received whose level and description the log does not show.

        Before the peer's ChangeCipherSpec an alert is plaintext, but a log at debug level 3 shows
        only its record header; after it the alert is encrypted and only its length shows.
        """
        return self.alert_record

    @property
    def failed(self) -> bool:
        """The handshake ended with an error (a fatal return code or a fatal alert), not completed."""
        return not self.completed and (
            bool(self.step_errors) or self.fatal_alert_received is not None or self.terminal_line is not None
        )

    def inferred_state(self, version: str | None) -> StateVisit | None:
        """The state of the last handshake message the log shows being parsed or written.

        For logs without state lines (debug level 1 or 2 with a message-only callback, or an
        excerpt): `=> parse certificate` is SERVER_CERTIFICATE on a client and CLIENT_CERTIFICATE
        on a server; mbedtls_ssl_read/write mean the handshake is over.
        """
        role = self.role or self.inferred_role
        for step, line_no, stamp in reversed(self.steps):
            client, server = STEPS[step]
            if role == "client":
                name = client
            elif role == "server":
                name = server
            else:
                name = client if server is None or client == server else (server if client is None else None)
            if name is not None:
                return StateVisit(
                    tables.state_number(name, version), "MBEDTLS_SSL_" + name, line_no, stamp, "inferred"
                )
        return None

    @property
    def finished(self) -> bool:
        return self.completed or self.failed or self.alert_record is not None

    @property
    def protocol(self) -> str | None:
        if self.dtls:
            return "dtls"
        if self.tls13:
            return "tls1.3"
        if self.record_version is not None:
            return self.record_version
        return "tls1.2" if self.states else None
