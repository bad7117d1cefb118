"""One hand-made log per diagnosis category, each with the exact fields a user relies on.

The logs use the message texts of the named release (domain notes, section c); the client logs
start at ClientHello and go as far as each failure needs.
"""

from __future__ import annotations

from typing import Any

import pytest

from rig.mbedtls import diagnose_lines

OPENING_216 = """\
ssl_tls.c:8084: => handshake
ssl_cli.c:3510: client state: 0
ssl_cli.c:3510: client state: 1
ssl_tls.c:3620: output record: msgtype = 22, version = [3:1], msglen = 167
ssl_tls.c:2767: message length: 172, out_left: 172
ssl_tls.c:2772: ssl->f_send() returned 172 (-0xffffff54)
ssl_tls.c:8094: <= handshake
ssl_tls.c:8084: => handshake
ssl_cli.c:3510: client state: 2
ssl_tls.c:2696: in_left: 0, nb_want: 5
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 5 (-0xfffffffb)
ssl_tls.c:4333: input record: msgtype = 22, version = [3:3], msglen = 93
ssl_tls.c:2696: in_left: 5, nb_want: 98
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 93 (-0xffffffa3)
ssl_cli.c:1766: server hello, chosen ciphersuite: TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384
ssl_cli.c:3510: client state: 3
"""

COMPLETED = (
    OPENING_216
    + """\
ssl_tls.c:6136: Certificate verification flags clear
ssl_cli.c:3510: client state: 4
ssl_cli.c:3510: client state: 5
ssl_cli.c:3510: client state: 6
ssl_cli.c:3510: client state: 7
ssl_cli.c:3510: client state: 8
ssl_cli.c:3510: client state: 9
ssl_cli.c:3510: client state: 10
ssl_cli.c:3510: client state: 11
ssl_cli.c:3510: client state: 12
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 6 (-0xfffffffa)
ssl_cli.c:3510: client state: 13
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 45 (-0xffffffd3)
ssl_cli.c:3510: client state: 14
ssl_cli.c:3510: client state: 15
ssl_cli.c:3898: handshake: done
ssl_tls.c:8094: <= handshake
"""
)

FATAL_ALERT = (
    OPENING_216.replace("client state: 3\n", "client state: 12\n")
    + """\
ssl_tls.c:5902: => parse change cipher spec
ssl_tls.c:2696: in_left: 0, nb_want: 5
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 5 (-0xfffffffb)
ssl_tls.c:2696: in_left: 5, nb_want: 7
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 2 (-0xfffffffe)
ssl_tls.c:5169: got an alert message, type: [2:51]
ssl_tls.c:5177: is a fatal alert message (msg 51)
ssl_tls.c:4369: mbedtls_ssl_handle_message_type() returned -30592 (-0x7780)
ssl_tls.c:5906: mbedtls_ssl_read_record() returned -30592 (-0x7780)
ssl_tls.c:8094: <= handshake
"""
)

ALERT_SENT = (
    OPENING_216.replace("client state: 3\n", "client state: 4\n")
    + """\
ssl_cli.c:2390: => parse server key exchange
ssl_cli.c:2706: mbedtls_pk_verify() returned -17280 (-0x4380)
ssl_tls.c:5530: => send alert message
ssl_tls.c:5531: send alert level=2 message=51
ssl_tls.c:5545: <= send alert message
ssl_tls.c:8094: <= handshake
"""
)

X509 = (
    OPENING_216
    + """\
ssl_tls.c:6037: x509_verify_cert() returned -9984 (-0x2700)
ssl_tls.c:5530: => send alert message
ssl_tls.c:5531: send alert level=2 message=48
ssl_tls.c:6131: ! Certificate verification flags 00000008
ssl_tls.c:6175: <= parse certificate
ssl_tls.c:8094: <= handshake
"""
)

BAD_MAC = (
    OPENING_216.replace("client state: 3\n", "client state: 13\n")
    + """\
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 45 (-0xffffffd3)
ssl_tls.c:2310: message mac does not match
ssl_tls.c:4535: ssl_decrypt_buf() returned -29056 (-0x7180)
ssl_tls.c:5530: => send alert message
ssl_tls.c:4570: mbedtls_ssl_read_record() returned -29056 (-0x7180)
ssl_tls.c:8094: <= handshake
"""
)

CONN_RESET = (
    OPENING_216.replace("client state: 3\n", "client state: 6\n")
    + """\
ssl_tls.c:2696: in_left: 0, nb_want: 5
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned -80 (-0x0050)
ssl_tls.c:2727: mbedtls_ssl_fetch_input() returned -80 (-0x0050)
ssl_tls.c:4311: mbedtls_ssl_read_record() returned -80 (-0x0050)
ssl_tls.c:8094: <= handshake
"""
)

TIMEOUT = (
    OPENING_216.replace("client state: 3\n", "client state: 2\n")
    + """\
ssl_tls.c:2696: in_left: 0, nb_want: 13
ssl_tls.c:2918: timeout
ssl_tls.c:2727: mbedtls_ssl_fetch_input() returned -26624 (-0x6800)
ssl_tls.c:4311: mbedtls_ssl_read_record() returned -26624 (-0x6800)
ssl_tls.c:8094: <= handshake
"""
)

RECORD_SIZE = (
    OPENING_216
    + """\
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 5 (-0xfffffffb)
ssl_tls.c:4333: input record: msgtype = 22, version = [3:3], msglen = 5406
ssl_tls.c:4374: bad message length
ssl_tls.c:4575: ssl_get_next_record() returned -29184 (-0x7200)
ssl_tls.c:6105: mbedtls_ssl_read_record() returned -29184 (-0x7200)
ssl_tls.c:8094: <= handshake
"""
)

ALLOC = (
    OPENING_216
    + """\
ssl_tls.c:5991: alloc(1019 bytes) failed
ssl_tls.c:6002: mbedtls_x509_crt_parse_der() returned -10368 (-0x2880)
ssl_tls.c:8094: <= handshake
"""
)

NO_SHARED_CIPHER = """\
ssl_tls.c:8084: => handshake
ssl_srv.c:4259: server state: 0
ssl_srv.c:4259: server state: 1
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 5 (-0xfffffffb)
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 167 (-0xffffff59)
ssl_srv.c:2017: got no ciphersuites in common
ssl_tls.c:5530: => send alert message
ssl_tls.c:5531: send alert level=2 message=40
ssl_srv.c:4290: ssl_parse_client_hello() returned -29568 (-0x7380)
ssl_tls.c:8094: <= handshake
"""

OTHER = (
    OPENING_216
    + """\
ssl_tls.c:8099: mbedtls_ssl_handshake_client_step() returned -28928 (-0x7100)
ssl_tls.c:8094: <= handshake
"""
)

INCOMPLETE = OPENING_216 + "ssl_cli.c:2100: => parse certificate\n"


CASES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "completed",
        COMPLETED,
        {
            "outcome": "completed",
            "last_state": {"number": 15, "name": "MBEDTLS_SSL_HANDSHAKE_WRAPUP"},
            "error": None,
        },
    ),
    (
        "fatal_alert_received",
        FATAL_ALERT,
        {
            "outcome": "failed",
            "error": {"code": "-0x7780", "name": "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE"},
            "alert": {"direction": "received", "level": 2, "description": 51, "name": "decrypt_error"},
            "evidence": [16, 22, 24],  # the state, the alert, the root error
        },
    ),
    (
        "alert_sent",
        ALERT_SENT,
        {
            "outcome": "failed",
            "error": {"code": "-0x4380", "name": "MBEDTLS_ERR_RSA_VERIFY_FAILED"},
            "alert": {"direction": "sent", "level": 2, "description": 51, "name": "decrypt_error"},
        },
    ),
    (
        "x509_verify_failed",
        X509,
        {
            "outcome": "failed",
            "error": {"code": "-0x2700", "name": "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED"},
            "alert": {"direction": "sent", "level": 2, "description": 48, "name": "unknown_ca"},
            "evidence": [16, 17, 18, 20],
        },
    ),
    (
        "bad_mac_or_finished",
        BAD_MAC,
        {"outcome": "failed", "error": {"code": "-0x7180", "name": "MBEDTLS_ERR_SSL_INVALID_MAC"}},
    ),
    (
        "conn_eof_or_reset",
        CONN_RESET,
        {"outcome": "failed", "error": {"code": "-0x0050", "name": "MBEDTLS_ERR_NET_CONN_RESET"}},
    ),
    (
        "timeout",
        TIMEOUT,
        {"outcome": "failed", "error": {"code": "-0x6800", "name": "MBEDTLS_ERR_SSL_TIMEOUT"}},
    ),
    (
        "record_or_buffer_size",
        RECORD_SIZE,
        {"outcome": "failed", "error": {"code": "-0x7200", "name": "MBEDTLS_ERR_SSL_INVALID_RECORD"}},
    ),
    (
        "alloc_failed",
        ALLOC,
        {"outcome": "failed", "error": {"code": "-0x2880", "name": "MBEDTLS_ERR_X509_ALLOC_FAILED"}},
    ),
    (
        "no_shared_cipher",
        NO_SHARED_CIPHER,
        {
            "outcome": "failed",
            "role": "server",
            "error": {"code": "-0x7380", "name": "MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN"},
            "last_state": {"number": 1, "name": "MBEDTLS_SSL_CLIENT_HELLO"},
        },
    ),
    (
        "other",
        OTHER,
        {"outcome": "failed", "error": {"code": "-0x7100", "name": "MBEDTLS_ERR_SSL_BAD_INPUT_DATA"}},
    ),
]


@pytest.mark.parametrize(("category", "log", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_category_is_recognised_with_its_root_error_and_alert(
    category: str, log: str, expected: dict[str, Any]
) -> None:
    d = diagnose_lines(log.splitlines()).to_json()
    assert d["category"] == category
    assert {key: d[key] for key in expected} == expected
    assert d["mbedtls_version"] == "2.16"


def test_the_root_error_is_the_first_return_not_the_last_wrapper() -> None:
    d = diagnose_lines(CONN_RESET.splitlines())
    assert d.evidence == [16, 18]  # the state line and f_recv's own -0x50, not the two wrappers after it


def test_a_log_cut_mid_step_is_incomplete_not_a_failure() -> None:
    d = diagnose_lines(INCOMPLETE.splitlines())
    assert (d.outcome, d.category, d.error) == ("incomplete", "other", None)
    assert d.summary.startswith(
        "The log ends in client state 3 (MBEDTLS_SSL_SERVER_CERTIFICATE) with no error"
    )


def test_a_log_that_ends_in_its_first_wait_is_incomplete_with_category_timeout() -> None:
    log = (
        OPENING_216.replace("client state: 3\n", "client state: 4\n")
        + "ssl_tls.c:2696: in_left: 0, nb_want: 5\n"
    )
    d = diagnose_lines(log.splitlines())
    assert (d.outcome, d.category, d.want_read_retries) == ("incomplete", "timeout", 0)


def test_a_completed_handshake_names_the_suite_and_every_read() -> None:
    d = diagnose_lines(COMPLETED.splitlines())
    assert d.ciphersuite == "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384"
    assert d.inbound_reads == [5, 93, 6, 45]
    assert (d.records_in, d.records_out, d.protocol) == (1, 1, "tls1.2")
    assert d.evidence == [31, 32]


def test_a_non_fatal_x509_error_followed_by_progress_does_not_fail_the_handshake() -> None:
    log = (
        OPENING_216
        + "ssl_tls.c:6037: x509_verify_cert() returned -9984 (-0x2700)\n"
        + COMPLETED[len(OPENING_216) :]
    )
    assert diagnose_lines(log.splitlines()).outcome == "completed"


def test_level_1_lines_that_are_not_errors_do_not_fail_the_handshake() -> None:
    log = COMPLETED.replace(
        "ssl_cli.c:3510: client state: 8\n",
        "ssl_cli.c:3510: client state: 8\nssl_tls12_client.c:2010: |1| Perform PSA-based ECDH computation.\n",
    )
    assert diagnose_lines(log.splitlines()).outcome == "completed"


def test_a_decrypt_error_alert_at_state_12_points_at_damaged_inbound_bytes() -> None:
    assert diagnose_lines(FATAL_ALERT.splitlines()).summary == (
        "Failed in client state 12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC) with MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE "
        "(-0x7780): the peer sent a fatal alert. Alert received: level 2, decrypt_error. The peer could not check "
        "this side's CertificateVerify or Finished: the two transcripts differ, usually because bytes of the peer's "
        "flight were changed on the way in; compare the inbound reads with a passing log (`rig diff`)."
    )
