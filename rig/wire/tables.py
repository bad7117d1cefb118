"""The numbers a TLS record carries and their names: content types, handshake types, alerts, suites.

Pure data from the IANA TLS registries as the RFCs define them: RFC 5246 (TLS 1.2) §6.2.1 content
types, §7.4 handshake types and §7.2 alert descriptions; RFC 8446 (TLS 1.3) §4 and §6 for the types
and alerts it added; RFC 5289 and RFC 8446 appendix B.4 for the cipher suites. Only the suites a hub
or AWS IoT Core may negotiate are named; any other prints as its hex value.
"""

from __future__ import annotations

from typing import Final

# RFC 5246 §6.2.1 ContentType (24 = heartbeat, RFC 6520).
CHANGE_CIPHER_SPEC: Final = 20
ALERT: Final = 21
HANDSHAKE: Final = 22
APPLICATION_DATA: Final = 23
HEARTBEAT: Final = 24

CONTENT_TYPES: Final[dict[int, str]] = {
    CHANGE_CIPHER_SPEC: "change_cipher_spec",
    ALERT: "alert",
    HANDSHAKE: "handshake",
    APPLICATION_DATA: "application_data",
    HEARTBEAT: "heartbeat",
}

# RFC 5246 §7.4 HandshakeType, with RFC 8446 §4 additions (4, 5, 8, 24, 254).
CLIENT_HELLO: Final = 1
SERVER_HELLO: Final = 2
HANDSHAKE_TYPES: Final[dict[int, str]] = {
    0: "HelloRequest",
    CLIENT_HELLO: "ClientHello",
    SERVER_HELLO: "ServerHello",
    3: "HelloVerifyRequest",
    4: "NewSessionTicket",
    5: "EndOfEarlyData",
    8: "EncryptedExtensions",
    11: "Certificate",
    12: "ServerKeyExchange",
    13: "CertificateRequest",
    14: "ServerHelloDone",
    15: "CertificateVerify",
    16: "ClientKeyExchange",
    20: "Finished",
    22: "CertificateStatus",
    24: "KeyUpdate",
    254: "MessageHash",
}

# RFC 5246 §7.2 AlertLevel and AlertDescription, with RFC 8446 §6 additions.
ALERT_LEVELS: Final[dict[int, str]] = {1: "warning", 2: "fatal"}
ALERT_DESCRIPTIONS: Final[dict[int, str]] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
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
    113: "bad_certificate_status_response",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}

# Record-layer versions (RFC 5246 appendix E: {3, 1} is TLS 1.0 … {3, 3} TLS 1.2; TLS 1.3 records
# say {3, 3} and put 0x0304 in the supported_versions extension, RFC 8446 §4.2.1).
VERSIONS: Final[dict[int, str]] = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}

# RFC 5246 §6.2.3: a TLSCiphertext fragment is at most 2^14 + 2048 bytes.
MAX_RECORD_LENGTH: Final = (1 << 14) + 2048

# Extension numbers (RFC 6066 §3 server_name, RFC 8446 §4.2 supported_versions).
EXT_SERVER_NAME: Final = 0
EXT_SUPPORTED_VERSIONS: Final = 43

CIPHER_SUITES: Final[dict[int, str]] = {
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}


def content_type_name(value: int) -> str:
    return CONTENT_TYPES.get(value, f"content type {value}")


def handshake_name(value: int) -> str:
    return HANDSHAKE_TYPES.get(value, f"handshake type {value}")


def version_name(value: int) -> str:
    return VERSIONS.get(value, f"0x{value:04x}")


def version_number(text: str) -> int:
    """The inverse of `version_name`: "TLS 1.2" → 0x0303, "0x0305" → 0x0305."""
    for number, name in VERSIONS.items():
        if name == text:
            return number
    return int(text, 16)


def cipher_suite_name(value: int) -> str:
    return CIPHER_SUITES.get(value, f"0x{value:04X}")
