"""The numbers Mbed TLS prints and what they mean in each release: states, error codes, alerts.

Pure data read from the upstream headers at release tags (see the domain notes): the state enum
changed in 3.1, 3.2, 3.3 and 3.4; several MBEDTLS_ERR_SSL_* values mean different things in 2.x
and 3.x. Every lookup therefore takes the version family the fingerprint (`versions.py`) chose.
"""

from __future__ import annotations

from typing import Final

# --- mbedtls_ssl_states ------------------------------------------------------------------------

_COMMON_0_18: Final[tuple[str, ...]] = (
    "HELLO_REQUEST",
    "CLIENT_HELLO",
    "SERVER_HELLO",
    "SERVER_CERTIFICATE",
    "SERVER_KEY_EXCHANGE",
    "CERTIFICATE_REQUEST",
    "SERVER_HELLO_DONE",
    "CLIENT_CERTIFICATE",
    "CLIENT_KEY_EXCHANGE",
    "CERTIFICATE_VERIFY",
    "CLIENT_CHANGE_CIPHER_SPEC",
    "CLIENT_FINISHED",
    "SERVER_CHANGE_CIPHER_SPEC",
    "SERVER_FINISHED",
    "FLUSH_BUFFERS",
    "HANDSHAKE_WRAPUP",
)

_STATES_2X: Final = (
    *_COMMON_0_18,
    "HANDSHAKE_OVER",
    "SERVER_NEW_SESSION_TICKET",
    "SERVER_HELLO_VERIFY_REQUEST_SENT",
)
# 3.1 with TLS 1.3 and compatibility mode: the three extra states depend on the build configuration.
_STATES_31: Final = (
    *_STATES_2X,
    "ENCRYPTED_EXTENSIONS",
    "CLIENT_CERTIFICATE_VERIFY",
    "CLIENT_CCS_AFTER_SERVER_FINISHED",
)
_STATES_32: Final = (
    *_COMMON_0_18,
    "HANDSHAKE_OVER",
    "SERVER_NEW_SESSION_TICKET",
    "SERVER_HELLO_VERIFY_REQUEST_SENT",
    "HELLO_RETRY_REQUEST",
    "ENCRYPTED_EXTENSIONS",
    "CLIENT_CERTIFICATE_VERIFY",
    "CLIENT_CCS_AFTER_SERVER_FINISHED",
    "CLIENT_CCS_BEFORE_2ND_CLIENT_HELLO",
    "SERVER_CCS_AFTER_SERVER_HELLO",
    "SERVER_CCS_AFTER_HELLO_RETRY_REQUEST",
)
_STATES_33: Final = (
    *_COMMON_0_18,
    "NEW_SESSION_TICKET",
    "SERVER_HELLO_VERIFY_REQUEST_SENT",
    "HELLO_RETRY_REQUEST",
    "ENCRYPTED_EXTENSIONS",
    "CLIENT_CERTIFICATE_VERIFY",
    "CLIENT_CCS_AFTER_SERVER_FINISHED",
    "CLIENT_CCS_BEFORE_2ND_CLIENT_HELLO",
    "SERVER_CCS_AFTER_SERVER_HELLO",
    "SERVER_CCS_AFTER_HELLO_RETRY_REQUEST",
    "HANDSHAKE_OVER",
    "TLS1_3_NEW_SESSION_TICKET",
    "TLS1_3_NEW_SESSION_TICKET_FLUSH",
)
_STATES_34: Final = (
    *_COMMON_0_18,
    "NEW_SESSION_TICKET",
    "SERVER_HELLO_VERIFY_REQUEST_SENT",
    "HELLO_RETRY_REQUEST",
    "ENCRYPTED_EXTENSIONS",
    "END_OF_EARLY_DATA",
    "CLIENT_CERTIFICATE_VERIFY",
    "CLIENT_CCS_AFTER_SERVER_FINISHED",
    "CLIENT_CCS_BEFORE_2ND_CLIENT_HELLO",
    "SERVER_CCS_AFTER_SERVER_HELLO",
    "CLIENT_CCS_AFTER_CLIENT_HELLO",
    "SERVER_CCS_AFTER_HELLO_RETRY_REQUEST",
    "HANDSHAKE_OVER",
    "TLS1_3_NEW_SESSION_TICKET",
    "TLS1_3_NEW_SESSION_TICKET_FLUSH",
)

# Version family → state names by number (full MBEDTLS_SSL_ identifiers).
STATE_TABLES: Final[dict[str, tuple[str, ...]]] = {
    family: tuple("MBEDTLS_SSL_" + name for name in names)
    for family, names in {
        "2.x": _STATES_2X,
        "3.1": _STATES_31,
        "3.2": _STATES_32,
        "3.3": _STATES_33,
        "3.4": _STATES_34,
    }.items()
}


def state_family(version: str | None) -> str:
    """The state-enum family of a version string ("2.28" → "2.x", "3.6" → "3.4"); None → "2.x"."""
    if version is None or version.startswith("2.") or version == "3.0":
        return "2.x"
    if version in ("3.1", "3.2", "3.3"):
        return version
    return "3.4"


def state_name(number: int, version: str | None) -> str | None:
    """The enum name of state `number` in `version` (None when the number is out of range)."""
    table = STATE_TABLES[state_family(version)]
    return table[number] if 0 <= number < len(table) else None


def state_number(name: str, version: str | None) -> int | None:
    """The number of state `name` (with or without the MBEDTLS_SSL_ prefix) in `version`."""
    full = name if name.startswith("MBEDTLS_SSL_") else "MBEDTLS_SSL_" + name
    table = STATE_TABLES[state_family(version)]
    try:
        return table.index(full)
    except ValueError:
        return None


HANDSHAKE_OVER: Final = "MBEDTLS_SSL_HANDSHAKE_OVER"
HELLO_REQUEST: Final = "MBEDTLS_SSL_HELLO_REQUEST"
CLIENT_HELLO: Final = "MBEDTLS_SSL_CLIENT_HELLO"

# --- MBEDTLS_ERR_SSL_* --------------------------------------------------------------------------

_SSL_ERRORS_BOTH: Final[dict[int, str]] = {
    0x7F80: "HW_ACCEL_FAILED",
    0x7F00: "ALLOC_FAILED",
    0x7880: "PEER_CLOSE_NOTIFY",
    0x7780: "FATAL_ALERT_MESSAGE",
    0x7700: "UNEXPECTED_MESSAGE",
    0x7680: "CA_CHAIN_REQUIRED",
    0x7600: "PRIVATE_KEY_REQUIRED",
    0x7480: "NO_CLIENT_CERTIFICATE",
    0x7400: "NO_RNG",
    0x7280: "CONN_EOF",
    0x7200: "INVALID_RECORD",
    0x7180: "INVALID_MAC",
    0x7100: "BAD_INPUT_DATA",
    0x7080: "FEATURE_UNAVAILABLE",
    0x7000: "CRYPTO_IN_PROGRESS",
    0x6F80: "HW_ACCEL_FALLTHROUGH",
    0x6D80: "SESSION_TICKET_EXPIRED",
    0x6D00: "PK_TYPE_MISMATCH",
    0x6C80: "UNKNOWN_IDENTITY",
    0x6C00: "INTERNAL_ERROR",
    0x6B80: "COUNTER_WRAPPING",
    0x6B00: "WAITING_SERVER_HELLO_RENEGO",
    0x6A80: "HELLO_VERIFY_REQUIRED",
    0x6A00: "BUFFER_TOO_SMALL",
    0x6900: "WANT_READ",
    0x6880: "WANT_WRITE",
    0x6800: "TIMEOUT",
    0x6780: "CLIENT_RECONNECT",
    0x6700: "UNEXPECTED_RECORD",
    0x6680: "NON_FATAL",
    0x6580: "CONTINUE_PROCESSING",
    0x6500: "ASYNC_IN_PROGRESS",
    0x6480: "EARLY_MESSAGE",
    0x5E80: "BAD_CONFIG",
}
_SSL_ERRORS_2X: Final[dict[int, str]] = {
    0x7E80: "BAD_HS_FINISHED",
    0x7E00: "BAD_HS_CHANGE_CIPHER_SPEC",
    0x7D80: "BAD_HS_CERTIFICATE_VERIFY",
    0x7D00: "BAD_HS_CLIENT_KEY_EXCHANGE_CS",
    0x7C80: "BAD_HS_CLIENT_KEY_EXCHANGE_RP",
    0x7C00: "BAD_HS_CLIENT_KEY_EXCHANGE",
    0x7B80: "BAD_HS_SERVER_HELLO_DONE",
    0x7B00: "BAD_HS_SERVER_KEY_EXCHANGE",
    0x7A80: "BAD_HS_CERTIFICATE_REQUEST",
    0x7A00: "BAD_HS_CERTIFICATE",
    0x7980: "BAD_HS_SERVER_HELLO",
    0x7900: "BAD_HS_CLIENT_HELLO",
    0x7800: "PEER_VERIFY_FAILED",
    0x7580: "CERTIFICATE_REQUIRED",
    0x7500: "CERTIFICATE_TOO_LARGE",
    0x7380: "NO_CIPHER_CHOSEN",
    0x7300: "UNKNOWN_CIPHER",
    0x6F00: "COMPRESSION_FAILED",
    0x6E80: "BAD_HS_PROTOCOL_VERSION",
    0x6E00: "BAD_HS_NEW_SESSION_TICKET",
    0x6980: "NO_USABLE_CIPHERSUITE",
    0x6600: "INVALID_VERIFY_HASH",
    # 2.28 only (absent in 2.16); harmless to know in every 2.x.
    0x6000: "UNEXPECTED_CID",
    0x5F00: "VERSION_MISMATCH",
    0x5E00: "CACHE_ENTRY_NOT_FOUND",
    0x5D80: "CERTIFICATE_VERIFICATION_WITHOUT_HOSTNAME",
}
_SSL_ERRORS_3X: Final[dict[int, str]] = {
    0x7A00: "BAD_CERTIFICATE",
    0x7800: "UNRECOGNIZED_NAME",
    0x7580: "NO_APPLICATION_PROTOCOL",
    0x7500: "UNSUPPORTED_EXTENSION",
    0x7300: "DECODE_ERROR",
    0x6E80: "BAD_PROTOCOL_VERSION",
    0x6E00: "HANDSHAKE_FAILURE",
    0x6600: "ILLEGAL_PARAMETER",
    0x6000: "UNEXPECTED_CID",
    0x5F00: "VERSION_MISMATCH",
    0x5D80: "CERTIFICATE_VERIFICATION_WITHOUT_HOSTNAME",
}
# Minor-version differences inside 3.x.
_SSL_ERRORS_33_35: Final[dict[int, str]] = {
    0x7B00: "RECEIVED_NEW_SESSION_TICKET",
    0x7B80: "CANNOT_READ_EARLY_DATA",
    0x7C00: "CANNOT_WRITE_EARLY_DATA",
}
_SSL_ERRORS_36: Final[dict[int, str]] = {
    0x7B00: "RECEIVED_NEW_SESSION_TICKET",
    0x7B80: "CANNOT_READ_EARLY_DATA",
    0x7C00: "RECEIVED_EARLY_DATA",
    0x7C80: "CANNOT_WRITE_EARLY_DATA",
    0x7E80: "CACHE_ENTRY_NOT_FOUND",
}

# Codes of other modules that show up in handshake logs (same values in 2.28 and 3.6).
OTHER_ERRORS: Final[dict[int, str]] = {
    0x0042: "MBEDTLS_ERR_NET_SOCKET_FAILED",
    0x0043: "MBEDTLS_ERR_NET_BUFFER_TOO_SMALL",
    0x0044: "MBEDTLS_ERR_NET_CONNECT_FAILED",
    0x0045: "MBEDTLS_ERR_NET_INVALID_CONTEXT",
    0x0046: "MBEDTLS_ERR_NET_BIND_FAILED",
    0x0047: "MBEDTLS_ERR_NET_POLL_FAILED",
    0x0048: "MBEDTLS_ERR_NET_LISTEN_FAILED",
    0x0049: "MBEDTLS_ERR_NET_BAD_INPUT_DATA",
    0x004A: "MBEDTLS_ERR_NET_ACCEPT_FAILED",
    0x004C: "MBEDTLS_ERR_NET_RECV_FAILED",
    0x004E: "MBEDTLS_ERR_NET_SEND_FAILED",
    0x0050: "MBEDTLS_ERR_NET_CONN_RESET",
    0x0052: "MBEDTLS_ERR_NET_UNKNOWN_HOST",
    0x0010: "MBEDTLS_ERR_MPI_ALLOC_FAILED",
    0x0034: "MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED",
    0x003C: "MBEDTLS_ERR_ENTROPY_SOURCE_FAILED",
    0x2700: "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED",
    0x2880: "MBEDTLS_ERR_X509_ALLOC_FAILED",
    0x3E80: "MBEDTLS_ERR_PK_BAD_INPUT_DATA",
    0x3F80: "MBEDTLS_ERR_PK_ALLOC_FAILED",
    0x4380: "MBEDTLS_ERR_RSA_VERIFY_FAILED",
    0x4280: "MBEDTLS_ERR_RSA_PUBLIC_FAILED",
    0x4D80: "MBEDTLS_ERR_ECP_ALLOC_FAILED",
    0x4E00: "MBEDTLS_ERR_ECP_VERIFY_FAILED",
    0x5180: "MBEDTLS_ERR_MD_ALLOC_FAILED",
    0x6180: "MBEDTLS_ERR_CIPHER_ALLOC_FAILED",
    0x6300: "MBEDTLS_ERR_CIPHER_AUTH_FAILED",
}


# Values that receive/send callbacks of known applications return instead of Mbed TLS codes.
APPLICATION_CODES: Final[dict[int, str]] = {
    -0x8000: "OpenVPN 3's would-block (CT_WOULD_BLOCK), which Mbed TLS does not know and treats as an error",
}


def _ssl_errors(version: str | None) -> dict[int, str]:
    if version is None or version.startswith("2."):
        specific = _SSL_ERRORS_2X
    elif version in ("3.3", "3.4", "3.5"):
        specific = {**_SSL_ERRORS_3X, **_SSL_ERRORS_33_35}
        if version == "3.5":
            specific[0x7E80] = "CACHE_ENTRY_NOT_FOUND"
    elif version == "3.6":
        specific = {**_SSL_ERRORS_3X, **_SSL_ERRORS_36}
    else:
        specific = _SSL_ERRORS_3X
    return {**_SSL_ERRORS_BOTH, **specific}


_ERROR_CACHE: dict[str | None, dict[int, str]] = {}


def error_name(code: int, version: str | None) -> str | None:
    """The MBEDTLS_ERR_* name of a negative return `code` in `version` (None if unknown).

    Without a version the 2.x meaning is used for the codes whose meaning changed. A composite of a
    high-level and a low-level code (e.g. -0x4290 = RSA_PUBLIC_FAILED + MPI_ALLOC_FAILED) is named
    "HIGH + LOW".
    """
    value = -code
    if value <= 0:
        return None
    table = _ERROR_CACHE.get(version)
    if table is None:
        table = _ERROR_CACHE[version] = _ssl_errors(version)
    name = table.get(value)
    if name is not None:
        return "MBEDTLS_ERR_SSL_" + name
    other = OTHER_ERRORS.get(value)
    if other is not None:
        return other
    high, low = value & 0xFF80, value & 0x7F
    if high and low and high in OTHER_ERRORS and low in OTHER_ERRORS:
        return f"{OTHER_ERRORS[high]} + {OTHER_ERRORS[low]}"
    return None


def error_hex(code: int) -> str:
    """The way Mbed TLS writes an error code: "-0x7780" (at least four lower-case hex digits)."""
    return f"-0x{-code:04x}" if code < 0 else f"0x{code:04x}"


# --- alerts -------------------------------------------------------------------------------------

ALERT_NAMES: Final[dict[int, str]] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_cert",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}

# --- record content types -----------------------------------------------------------------------

RECORD_TYPES: Final[dict[int, str]] = {
    20: "change_cipher_spec",
    21: "alert",
    22: "handshake",
    23: "application_data",
    25: "ack",
}
