"""UART logs of the simulated bench's virtual hub (real Mbed TLS 2.28 behind the Microchip-like stack).

Captured from runs of the shipped variants: boot banner, the firmware's own `[DIAG]` lines around
the library's, and reconnects (two handshakes in one log).
"""

from __future__ import annotations

from rig.mbedtls import LogParser, diagnose_lines, diagnose_parser, diff_traces
from tests.mbedtls.conftest import LOGS


def _lines(name: str) -> list[bytes]:
    return (LOGS / f"sim-{name}.log").read_bytes().splitlines()


def test_the_fix_completes_over_satellite_with_the_pep_segment_pattern() -> None:
    d = diagnose_lines(_lines("tcp-rx-1460-satellite"))
    assert (d.outcome, d.category, d.mbedtls_version, d.attempts) == ("completed", "completed", "2.28", 2)
    assert d.inbound_reads[:5] == [5, 1388, 1393, 1393, 1246]


def test_the_shipped_1024_build_over_satellite_waits_in_state_12() -> None:
    d = diagnose_lines(_lines("tcp-rx-1024-satellite"))
    # The capture ends at the first wait: no re-entry yet, so the log alone cannot call it a stall.
    assert (d.outcome, d.category) == ("incomplete", "timeout")
    assert d.last_state == {"number": 12, "name": "MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC"}
    assert d.inbound_reads == [5, 1019, 369, 1024, 369, 1024, 369, 1024, 222]


def test_diff_of_the_fix_and_the_shipped_build_points_at_state_12_and_the_read_pattern() -> None:
    good, bad = LogParser(), LogParser()
    good.feed_all(_lines("tcp-rx-1460-satellite"))
    bad.feed_all(_lines("tcp-rx-1024-satellite"))
    result = diff_traces(good.trace, bad.trace)
    assert result.divergence is not None
    assert result.divergence["state"] == "12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC)"
    assert (
        result.divergence["bad"] == "waited for input (in_left 0, nb_want 5) with no byte; the log ends there"
    )
    assert result.differences["inbound_reads"]["same"] is False


def test_a_4096_byte_input_buffer_is_record_or_buffer_size_in_both_attempts() -> None:
    parser = LogParser()
    parser.feed_all(_lines("mbedtls-in-4096-landline"))
    d = diagnose_parser(parser)
    assert (d.outcome, d.category, d.attempts) == ("failed", "record_or_buffer_size", 2)
    assert d.error == {"code": "-0x7200", "name": "MBEDTLS_ERR_SSL_INVALID_RECORD"}
    assert all(trace.failed for trace in parser.attempts)


def test_a_corrupted_certificate_over_the_512_build_is_x509_verify_failed() -> None:
    d = diagnose_lines(_lines("tcp-rx-512-satellite"))
    assert (d.outcome, d.category) == ("failed", "x509_verify_failed")
    assert d.error == {"code": "-0x2700", "name": "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED"}


def test_the_boot_banner_names_the_release() -> None:
    parser = LogParser()
    parser.feed("mbed TLS 2.28.3 (system library), debug threshold 2")
    assert parser.version == "2.28"
    parser = LogParser()
    parser.feed("[APP] Mbed TLS v3.6.0 ready")
    parser.feed("ssl_tls.c:4586: client state: MBEDTLS_SSL_SERVER_HELLO")
    assert (parser.version, parser.trace.states[0].number) == ("3.6", 2)


def test_a_receive_glue_returning_mbedtls_own_error_is_not_called_application_defined() -> None:
    # Harmony's glue (and the sim's) refuses an oversized record itself: f_recv returns -0x7200.
    d = diagnose_lines((LOGS / "sim-mbedtls-in-4096-landline.log").read_text().splitlines())
    assert d.category == "record_or_buffer_size"
    assert d.io is not None and d.io["result"] == "Mbed TLS error from the callback"
    assert "returned MBEDTLS_ERR_SSL_INVALID_RECORD itself" in d.summary
    assert "not an Mbed TLS error code" not in d.summary
