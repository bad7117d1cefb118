"""Diagnoses of logs the real Mbed TLS 2.28 library writes, against an OpenSSL server that misbehaves."""

from __future__ import annotations

from rig.mbedtls import LogParser, diagnose_lines, diff_traces
from tests.mbedtls.conftest import RealHandshake


def _lines(log: bytes) -> list[bytes]:
    return log.splitlines(keepends=True)


def test_a_real_completed_handshake_is_completed_with_the_negotiated_suite(
    real_handshake: RealHandshake,
) -> None:
    log = real_handshake("complete", level=3, expect_exit=0)
    d = diagnose_lines(_lines(log))
    assert (d.outcome, d.category) == ("completed", "completed")
    assert (d.mbedtls_version, d.role, d.protocol) == ("2.28", "client", "tls1.2")
    assert d.ciphersuite == "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384"
    assert d.last_state == {"number": 15, "name": "MBEDTLS_SSL_HANDSHAKE_WRAPUP"}
    assert d.error is None and d.alert is None
    assert d.inbound_reads[:2] == [5, 65]  # record header, then the ServerHello record
    assert d.records_out == 6  # ClientHello, Certificate, ClientKeyExchange, CertificateVerify, CCS, Finished


def test_a_real_ticket_handshake_prints_state_12_twice_and_the_first_is_read_as_the_ticket_state(
    real_handshake: RealHandshake,
) -> None:
    log = real_handshake("complete", level=2, tickets=True, expect_exit=0)
    assert log.count(b"client state: 12\n") == 2
    parser = LogParser()
    parser.feed_all(_lines(log))
    steps = [v.number for v in parser.trace.states]
    assert steps[steps.index(11) + 1 :] == [17] * (len(steps) - steps.index(11) - 5) + [12, 13, 14, 15]
    assert parser.trace.completed and not parser.trace.failed


def test_a_withheld_session_ticket_is_a_stall_in_the_ticket_state(real_handshake: RealHandshake) -> None:
    d = diagnose_lines(_lines(real_handshake("hold", tickets=True, expect_exit=2)))
    assert (d.outcome, d.category) == ("stalled", "stall_want_read")
    assert d.last_state == {"number": 17, "name": "MBEDTLS_SSL_SERVER_NEW_SESSION_TICKET"}


def test_a_withheld_server_finished_is_a_stall_in_client_state_12(real_handshake: RealHandshake) -> None:
    log = real_handshake("hold", expect_exit=2)
    d = diagnose_lines(_lines(log))
    assert (d.outcome, d.category) == ("stalled", "stall_want_read")
    assert d.last_state == {"number": 12, "name": "MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC"}
    assert d.want_read_retries >= 3
    assert d.error is None and d.alert is None
    assert d.summary.startswith(
        "Stalled in client state 12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC) after sending Finished: "
        "no byte and no alert from the server"
    )


def test_a_silent_server_is_a_stall_in_client_state_2_with_no_bytes(real_handshake: RealHandshake) -> None:
    d = diagnose_lines(_lines(real_handshake("silent", expect_exit=2)))
    assert (d.outcome, d.category) == ("stalled", "stall_want_read")
    assert d.last_state == {"number": 2, "name": "MBEDTLS_SSL_SERVER_HELLO"}
    assert d.inbound_reads == []


def test_a_server_that_closes_is_conn_eof_with_the_root_error(real_handshake: RealHandshake) -> None:
    d = diagnose_lines(_lines(real_handshake("close", expect_exit=1)))
    assert (d.outcome, d.category) == ("failed", "conn_eof_or_reset")
    assert d.error == {"code": "-0x7280", "name": "MBEDTLS_ERR_SSL_CONN_EOF"}
    assert d.last_state == {"number": 2, "name": "MBEDTLS_SSL_SERVER_HELLO"}


def test_a_handshake_failure_alert_from_the_server_is_fatal_alert_received(
    real_handshake: RealHandshake,
) -> None:
    log = real_handshake("no_shared_cipher", suite="TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256", expect_exit=1)
    d = diagnose_lines(_lines(log))
    assert (d.outcome, d.category) == ("failed", "fatal_alert_received")
    assert d.error == {"code": "-0x7780", "name": "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE"}
    assert d.alert == {"direction": "received", "level": 2, "description": 40, "name": "handshake_failure"}
    assert d.inbound_reads == [5, 2]


def test_an_untrusted_server_certificate_is_x509_verify_failed_with_the_alert_sent(
    real_handshake: RealHandshake,
) -> None:
    d = diagnose_lines(_lines(real_handshake("untrusted", level=3, expect_exit=1)))
    assert (d.outcome, d.category) == ("failed", "x509_verify_failed")
    assert d.error == {"code": "-0x2700", "name": "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED"}
    assert d.alert == {"direction": "sent", "level": 2, "description": 48, "name": "unknown_ca"}
    assert d.last_state == {"number": 3, "name": "MBEDTLS_SSL_SERVER_CERTIFICATE"}


def test_every_callback_format_of_the_real_client_gives_the_same_diagnosis(
    real_handshake: RealHandshake,
) -> None:
    verdicts = set()
    for fmt in (0, 1, 2):  # "%s:%04d: %s", "%s:%d: |%d| %s", message only
        d = diagnose_lines(_lines(real_handshake("close", fmt=fmt, expect_exit=1)))
        verdicts.add((d.outcome, d.category, d.error["code"] if d.error else None, d.last_state["number"]))
    assert verdicts == {("failed", "conn_eof_or_reset", "-0x7280", 2)}


def test_diff_of_real_passing_and_stalled_logs_diverges_at_the_server_change_cipher_spec(
    real_handshake: RealHandshake,
) -> None:
    good, bad = LogParser(), LogParser()
    good.feed_all(_lines(real_handshake("complete", tickets=False, expect_exit=0)))
    bad.feed_all(_lines(real_handshake("hold", expect_exit=2)))
    result = diff_traces(good.trace, bad.trace)
    assert result.divergence is not None
    assert result.divergence["state"] == "12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC)"
    assert "waited for input (in_left 0, nb_want 5)" in result.divergence["bad"]
    assert "advanced to 13 (MBEDTLS_SSL_SERVER_FINISHED)" in result.divergence["good"]
