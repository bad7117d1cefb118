"""Version fingerprinting and what state numbers and error codes mean in each release."""

from __future__ import annotations

import pytest

from rig.mbedtls import LogParser, diagnose_lines
from rig.mbedtls.tables import error_name, state_name

TLS13_CLIENT_36 = """\
ssl_tls.c:4667: => handshake
ssl_tls.c:4586: client state: MBEDTLS_SSL_HELLO_REQUEST
ssl_misc.h:1353: handshake state: 0 (MBEDTLS_SSL_HELLO_REQUEST) -> 1 (MBEDTLS_SSL_CLIENT_HELLO)
ssl_tls.c:4586: client state: MBEDTLS_SSL_CLIENT_HELLO
ssl_client.c:370: client hello, add ciphersuite: 1301, TLS1-3-AES-128-GCM-SHA256
ssl_msg.c:3028: output record: msgtype = 22, version = [3:1], msglen = 230
ssl_msg.c:2375: ssl->f_send() returned 235 (-0xffffff15)
ssl_tls.c:4678: <= handshake
ssl_tls.c:4667: => handshake
ssl_tls.c:4586: client state: MBEDTLS_SSL_SERVER_HELLO
ssl_msg.c:2319: ssl->f_recv(_timeout)() returned 5 (-0xfffffffb)
ssl_msg.c:3966: input record: msgtype = 22, version = [0x303], msglen = 90
ssl_msg.c:2319: ssl->f_recv(_timeout)() returned 90 (-0xffffffa6)
ssl_misc.h:1353: handshake state: 2 (MBEDTLS_SSL_SERVER_HELLO) -> 19 (MBEDTLS_SSL_ENCRYPTED_EXTENSIONS)
ssl_tls.c:4586: client state: MBEDTLS_SSL_ENCRYPTED_EXTENSIONS
ssl_tls.c:4586: client state: MBEDTLS_SSL_SERVER_CERTIFICATE
ssl_tls.c:4586: client state: MBEDTLS_SSL_CERTIFICATE_VERIFY
ssl_tls.c:4586: client state: MBEDTLS_SSL_SERVER_FINISHED
ssl_tls.c:4586: client state: MBEDTLS_SSL_CLIENT_FINISHED
ssl_tls.c:4586: client state: MBEDTLS_SSL_FLUSH_BUFFERS
ssl_tls.c:4586: client state: MBEDTLS_SSL_HANDSHAKE_WRAPUP
ssl_misc.h:1353: handshake state: 15 (MBEDTLS_SSL_HANDSHAKE_WRAPUP) -> 27 (MBEDTLS_SSL_HANDSHAKE_OVER)
ssl_tls.c:4678: <= handshake
"""


@pytest.mark.parametrize(
    ("line", "version"),
    [
        ("ssl_cli.c:3510: client state: 2", "2.16"),
        ("ssl_cli.c:3787: client state: 2", "2.16"),
        ("ssl_cli.c:4272: 0x7ffd1234: client state: 2", "2.28"),
        ("ssl_cli.c:4215: client state: 2", "3.0"),
        ("ssl_cli.c:4192: client state: 2", "3.1"),
        ("ssl_tls.c:3005: client state: MBEDTLS_SSL_SERVER_HELLO", "3.2"),
        ("ssl_tls.c:3859: client state: MBEDTLS_SSL_SERVER_HELLO", "3.4"),
        ("ssl_tls.c:4586: client state: MBEDTLS_SSL_SERVER_HELLO", "3.6"),
        ("ssl_srv.c:4499: server state: 2", "2.28"),
        ("ssl_tls12_server.c:4304: server state: 2", "3.6"),
        ("ssl_tls.c:8084: => handshake", "2.16"),
        ("ssl_tls.c:5060: => handshake", "3.0"),
    ],
)
def test_the_release_is_recognised_from_the_line_number_of_a_moving_message(line: str, version: str) -> None:
    parser = LogParser()
    parser.feed(line)
    assert parser.version == version


def test_file_names_alone_narrow_the_release_family() -> None:
    parser = LogParser()
    parser.feed("ssl_tls.c:2536: => fetch input")  # fetch input in ssl_tls.c: before ssl_msg.c (2.21)
    assert parser.version == "2.16"
    parser = LogParser()
    parser.feed("ssl_msg.c:1835: => fetch input")
    parser.feed("ssl_cli.c:2040: => parse server hello")
    assert parser.fingerprint.allowed == {"2.22", "2.26", "2.28", "3.0", "3.1"}


def test_a_tls13_client_of_3_6_completes_on_the_transition_to_handshake_over() -> None:
    d = diagnose_lines(TLS13_CLIENT_36.splitlines())
    assert (d.mbedtls_version, d.protocol, d.role, d.outcome) == ("3.6", "tls1.3", "client", "completed")
    assert d.last_state == {"number": 27, "name": "MBEDTLS_SSL_HANDSHAKE_OVER"}
    assert d.inbound_reads == [5, 90]


def test_name_only_states_get_the_number_of_the_detected_release() -> None:
    parser = LogParser()
    parser.feed_all(TLS13_CLIENT_36.splitlines())
    visits = {v.name: v.number for v in parser.trace.states}
    assert visits["MBEDTLS_SSL_ENCRYPTED_EXTENSIONS"] == 19
    assert visits["MBEDTLS_SSL_SERVER_FINISHED"] == 13


def test_the_same_state_number_means_different_states_across_releases() -> None:
    assert state_name(16, "2.28") == "MBEDTLS_SSL_HANDSHAKE_OVER"
    assert state_name(16, "3.6") == "MBEDTLS_SSL_NEW_SESSION_TICKET"
    assert state_name(25, "3.3") == "MBEDTLS_SSL_HANDSHAKE_OVER"
    assert state_name(20, "3.2") == "MBEDTLS_SSL_ENCRYPTED_EXTENSIONS"
    assert state_name(20, "3.4") == "MBEDTLS_SSL_END_OF_EARLY_DATA"
    parser = LogParser()
    parser.feed("ssl_tls12_server.c:4304: server state: 16")
    assert (parser.trace.states[0].number, parser.trace.states[0].name) == (
        16,
        "MBEDTLS_SSL_NEW_SESSION_TICKET",
    )


def test_a_tls13_server_state_with_name_and_number_keeps_both() -> None:
    parser = LogParser()
    parser.feed("ssl_tls13_server.c:3463: tls13 server state: MBEDTLS_SSL_CERTIFICATE_VERIFY(9)")
    visit = parser.trace.states[0]
    assert (visit.number, visit.name, parser.trace.role, parser.trace.protocol) == (
        9,
        "MBEDTLS_SSL_CERTIFICATE_VERIFY",
        "server",
        "tls1.3",
    )


def test_the_same_error_code_means_different_errors_in_2x_and_3x() -> None:
    assert error_name(-0x7300, "2.28") == "MBEDTLS_ERR_SSL_UNKNOWN_CIPHER"
    assert error_name(-0x7300, "3.6") == "MBEDTLS_ERR_SSL_DECODE_ERROR"
    assert error_name(-0x7C00, "3.4") == "MBEDTLS_ERR_SSL_CANNOT_WRITE_EARLY_DATA"
    assert error_name(-0x7C00, "3.6") == "MBEDTLS_ERR_SSL_RECEIVED_EARLY_DATA"
    assert error_name(-0x4290, "3.6") == "MBEDTLS_ERR_RSA_PUBLIC_FAILED + MBEDTLS_ERR_MPI_ALLOC_FAILED"
    line = "ssl_tls.c:{n}: mbedtls_ssl_handshake() returned -29440 (-0x7300)"
    old = diagnose_lines(["ssl_cli.c:4261: client state: 2", line.format(n=6000)])
    new = diagnose_lines(["ssl_tls.c:4586: client state: MBEDTLS_SSL_SERVER_HELLO", line.format(n=4700)])
    assert old.error == {"code": "-0x7300", "name": "MBEDTLS_ERR_SSL_UNKNOWN_CIPHER"}
    assert new.error == {"code": "-0x7300", "name": "MBEDTLS_ERR_SSL_DECODE_ERROR"}


def test_the_version_override_wins_over_the_fingerprint() -> None:
    lines = ["ssl_cli.c:3510: client state: 16"]
    assert diagnose_lines(lines).last_state == {"number": 16, "name": "MBEDTLS_SSL_HANDSHAKE_OVER"}
    overridden = diagnose_lines(lines, mbedtls_version="3.6")
    assert overridden.mbedtls_version == "3.6"
    assert overridden.last_state == {"number": 16, "name": "MBEDTLS_SSL_NEW_SESSION_TICKET"}


def test_dtls_is_recognised_from_the_record_version() -> None:
    log = [
        "ssl_cli.c:4261: client state: 2",
        "ssl_msg.c:3538: input record: msgtype = 22, version = [254:253], msglen = 60",
    ]
    assert diagnose_lines(log).protocol == "dtls"


def test_a_dtls_stall_says_dtls_in_the_summary() -> None:
    log = [
        "ssl_cli.c:4261: client state: 2",
        "ssl_msg.c:3538: input record: msgtype = 22, version = [254:253], msglen = 60",
        "ssl_msg.c:1975: in_left: 0, nb_want: 13",
        "ssl_cli.c:4261: client state: 2",
        "ssl_msg.c:1975: in_left: 0, nb_want: 13",
    ]
    assert diagnose_lines(log).summary.startswith(
        "Stalled in client state 2 (MBEDTLS_SSL_SERVER_HELLO) (DTLS)"
    )
