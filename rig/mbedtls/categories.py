"""The diagnosis categories: the closed vocabulary of why a handshake ended the way it did.

Variant files name them in `expect` (e.g. `satellite: fail stall_want_read`), the diagnoser assigns
exactly one per trace, and the HIL suite compares the two.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Category = Literal[
    "completed",
    "stall_want_read",
    "fatal_alert_received",
    "alert_sent",
    "x509_verify_failed",
    "bad_mac_or_finished",
    "conn_eof_or_reset",
    "timeout",
    "record_or_buffer_size",
    "alloc_failed",
    "no_shared_cipher",
    "other",
]

CATEGORIES: Final[tuple[str, ...]] = get_args(Category)

CATEGORY_MEANING: Final[dict[str, str]] = {
    "completed": "the handshake finished and application data could flow",
    "stall_want_read": "Mbed TLS kept waiting for input (WANT_READ) and no byte and no alert arrived",
    "fatal_alert_received": "the peer sent a fatal alert",
    "alert_sent": "this side sent an alert and gave up",
    "x509_verify_failed": "the peer's certificate chain did not verify",
    "bad_mac_or_finished": "a record MAC or the Finished message did not check out",
    "conn_eof_or_reset": "the connection was closed or reset under the handshake",
    "timeout": "a read timed out (MBEDTLS_ERR_SSL_TIMEOUT) or the log ends while waiting",
    "record_or_buffer_size": "a record or message did not fit the configured buffers",
    "alloc_failed": "memory allocation failed",
    "no_shared_cipher": "client and server had no ciphersuite in common",
    "other": "an error that fits none of the above; see the error code",
}
