"""Mbed TLS debug-log intelligence: lines → events → HandshakeTrace → Diagnosis (pure, no I/O).

Reads Mbed TLS debug output (2.x and 3.x, TLS 1.2 and 1.3, client or server; DTLS recognised) the
way an expert does, whatever the application's debug callback put around each message, and says
where and why a handshake stopped.

The incremental API (what the live UART harness uses)::

    p = LogParser(mbedtls_version=None)      # or "2.16", "2.28", "3.6"… to override the fingerprint
    events = p.feed(line, host_time=None)    # one line (str or bytes); host_time = time.time() on arrival
    p.trace                                  # HandshakeTrace of the current (last) handshake attempt
    diagnose_parser(p, now=None, stall_after=None)  # provisional Diagnosis, at any moment
    p.feed_all(lines)                        # a whole log at once
    feed_blocks(p, blocks)                   # a whole file as binary blocks (rig.mbedtls.bulk: the
                                             # fastest way; the same result as `feed` on each line)

`HandshakeTrace` has `.completed`, `.waiting_for_input`, `.last_progress_time` (host time of the
last state advance or inbound bytes), `.states` (`StateVisit`: number, name, line_no, host_time),
`.inbound_reads` (f_recv byte counts), `.records_in/.records_out`, `.alerts`, `.errors`, `.events`.
`p.attempts` holds every attempt: a new one starts at `=> handshake` after a finished or failed
handshake, or when the state falls back to HELLO_REQUEST/CLIENT_HELLO; the diagnosis is about the
last and says how many the log holds. Non-Mbed TLS lines are counted (`p.counts`) and their
leading timestamps give host time when `feed` is given none. `p.version` is the release the
fingerprint chose (boot banner, `__LINE__` numbers, file names, print styles) or the override;
state numbers and error codes are named with that release's tables.

`diagnose_parser(p, now, stall_after)`: with both given, a trace that waits for input with no inbound progress
for >= `stall_after` seconds is "stalled" (category stall_want_read, `stall_seconds` set); without
them the log alone decides: the same state re-entered while waiting, with no byte between, is a
stall (Mbed TLS never prints WANT_READ).

Whole logs: `diagnose_lines(lines, mbedtls_version=None) -> Diagnosis`;
`diff_traces(good, bad) -> TraceDiff` (`.to_json()`, `.render()`) aligns two traces by state and
reports the first divergence.

`Diagnosis` carries the fields of `rig diagnose --json`: mbedtls_version, role, protocol, outcome
(completed | failed | stalled | incomplete), category, last_state, error (the root error, not the
wrappers), alert, ciphersuite, inbound_reads, records_in, records_out, want_read_retries,
stall_seconds, evidence (line numbers), summary, io (how the failing receive or send ended:
receive failed, connection reset, timeout, end of file, would block, or an application-defined
code); plus attempts, attempt and line counts.

Logs as people post them are read too: a log without state lines takes its state from the
handshake messages parsed or written (`HandshakeTrace.inferred_state`), an alert record whose
content the log never shows counts as an alert (`unread_alert`), application data after the
handshake makes an established session, and results the application prints (an error code, its own
state banner) count when the tables know them. In a timestamped log, a wait for input followed by
`STALL_GAP_S` seconds of other lines is a stall.

The categories (exactly one per diagnosis):

- completed: the handshake finished and application data could flow.
- stall_want_read: the library kept waiting for input (WANT_READ); no byte and no alert arrived.
- fatal_alert_received: the peer sent a fatal alert.
- alert_sent: this side sent an alert and gave up (for a reason none of the others names).
- x509_verify_failed: the peer's certificate (chain) did not parse or verify.
- bad_mac_or_finished: a record MAC or the Finished message did not check out.
- conn_eof_or_reset: the connection was closed (EOF, close_notify) or reset under the handshake.
- timeout: a read timed out (MBEDTLS_ERR_SSL_TIMEOUT), or the log ends while waiting for input
  without the stall signature (outcome incomplete).
- record_or_buffer_size: a record or message did not fit the configured buffers.
- alloc_failed: memory allocation failed.
- no_shared_cipher: client and server had no ciphersuite in common.
- other: an error that fits none of the above (see the error code), or a log that ends mid-step.
"""

from rig.mbedtls.categories import CATEGORIES, CATEGORY_MEANING, Category
from rig.mbedtls.diagnose import Diagnosis, diagnose_lines, diagnose_parser
from rig.mbedtls.diff import Step, TraceDiff, diff_traces, steps_of
from rig.mbedtls.events import Event
from rig.mbedtls.parser import LogParser
from rig.mbedtls.trace import Alert, ErrorReturn, HandshakeTrace, Record, StateVisit

__all__ = [
    "CATEGORIES",
    "CATEGORY_MEANING",
    "Alert",
    "Category",
    "Diagnosis",
    "ErrorReturn",
    "Event",
    "HandshakeTrace",
    "LogParser",
    "Record",
    "StateVisit",
    "Step",
    "TraceDiff",
    "diagnose_lines",
    "diagnose_parser",
    "diff_traces",
    "steps_of",
]
