"""What logs posted in public bug reports contain, each handled: the lines as the posts show them.

Each test takes the shape of a real post (the corpus, tests/mbedtls/corpus, holds the originals) and
asserts the fields a user reads. Bulk and line-by-line reading agree on all of them
(tests/mbedtls/test_bulk.py runs the corpus through both).
"""

from __future__ import annotations

from rig.mbedtls import LogParser, diagnose_lines, diagnose_parser
from rig.mbedtls.bulk import feed_blocks
from rig.mbedtls.lexer import parse_timestamp


def _bulk(text: str) -> dict[str, object]:
    parser = LogParser()
    feed_blocks(parser, [text.encode()])
    return diagnose_parser(parser).to_json()


# --- alerts that appear only as records ---------------------------------------------------------


def test_an_alert_record_header_in_a_hex_dump_is_an_alert_that_ends_the_handshake() -> None:
    log = """\
0x2203d6bc: client state: MBEDTLS_SSL_SERVER_HELLO
0x2203d6bc: => parse server hello
0x2203d6bc: => read record
0x2203d6bc: in_left: 0, nb_want: 5
0x2203d6bc: ssl->f_recv(_timeout)() returned 5 (-0xfffffffb)
0x2203d6bc: dumping 'input record header' (5 bytes)
0x2203d6bc: 0000:  15 03 03 00 02                                   .....
"""
    d = diagnose_lines(log.splitlines())
    assert (d.outcome, d.category) == ("failed", "fatal_alert_received")
    assert d.alert == {"direction": "received", "level": None, "description": None, "name": None}
    assert "ended the handshake with an alert record" in d.summary


def test_a_plaintext_alert_in_a_record_dump_is_read_from_its_bytes() -> None:
    log = """\
ssl_cli.c:3510: client state: 2
ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 7 (-0xfffffff9)
ssl_tls.c:4512: dumping 'input record from network' (7 bytes)
ssl_tls.c:4512: 0000:  15 03 03 00 02 02 28                             ......(
"""
    d = diagnose_lines(log.splitlines())
    assert (d.outcome, d.category) == ("failed", "fatal_alert_received")
    assert d.alert == {"direction": "received", "level": 2, "description": 40, "name": "handshake_failure"}


def test_a_sent_alert_seen_in_the_output_record_dump_keeps_one_alert() -> None:
    log = """\
ssl_cli.c:3510: client state: 3
ssl_tls.c:4180: => send alert message
ssl_tls.c:2910: output record: msgtype = 21, version = [3:3], msglen = 2
ssl_tls.c:2913: dumping 'output record sent to network' (7 bytes)
ssl_tls.c:2913: 0000:  15 03 03 00 02 02 50                             ......P
ssl_tls.c:6002: mbedtls_x509_crt_parse_der() returned -10368 (-0x2880)
"""
    d = diagnose_lines(log.splitlines())
    assert d.category == "alloc_failed"
    assert d.alert == {"direction": "sent", "level": 2, "description": 80, "name": "internal_error"}


def test_an_encrypted_alert_after_the_handshake_says_the_peer_closed_with_an_unreadable_alert() -> None:
    log = """\
< Read from server:ssl_tls.c:6743: |2| => read
ssl_tls.c:2391: |2| ssl->f_recv(_timeout)() returned 5 (-0xfffffffb)
ssl_tls.c:3487: |3| input record: msgtype = 21, version = [3:3], msglen = 26
ssl_tls.c:2391: |2| ssl->f_recv(_timeout)() returned 26 (-0xffffffe6)
ssl_tls.c:1576: |2| => decrypt buf
"""
    d = diagnose_lines(log.splitlines())
    assert (d.outcome, d.category) == ("failed", "conn_eof_or_reset")
    assert d.last_state == {"number": 16, "name": "MBEDTLS_SSL_HANDSHAKE_OVER"}
    assert "closed the session with an alert; it is encrypted" in d.summary


def test_an_alert_record_followed_by_its_readable_lines_is_one_alert() -> None:
    log = """\
ssl_cli.c:3510: client state: 12
ssl_tls.c:4333: input record: msgtype = 21, version = [3:3], msglen = 2
ssl_tls.c:5169: got an alert message, type: [2:51]
ssl_tls.c:5177: is a fatal alert message (msg 51)
ssl_tls.c:4369: mbedtls_ssl_handle_message_type() returned -30592 (-0x7780)
"""
    d = diagnose_lines(log.splitlines())
    assert d.alert == {"direction": "received", "level": 2, "description": 51, "name": "decrypt_error"}
    assert d.category == "fatal_alert_received"


# --- wrapped, glued and interleaved lines -------------------------------------------------------


def test_a_message_hard_wrapped_by_the_poster_is_joined_and_no_shared_cipher_ends_the_handshake() -> None:
    log = """\
Performing the SSL/
TLS handshake
..\\mbedtls-2.3.0\\library\\ssl_srv.c:1831: got ciphersuites in common, but none of
 them usable
"""
    d = diagnose_lines(log.splitlines())
    assert (d.outcome, d.category, d.role) == ("failed", "no_shared_cipher", "server")
    assert d.last_state["name"] == "MBEDTLS_SSL_CLIENT_HELLO"


def test_no_shared_cipher_in_other_wordings() -> None:
    for message in ("got no ciphersuites in common", "No shared cipher", "no matching cipher suite"):
        d = diagnose_lines(["ssl_srv.c:4259: server state: 1", f"ssl_srv.c:2017: {message}"])
        assert d.category == "no_shared_cipher", message


def test_a_library_line_glued_to_application_output_is_still_read() -> None:
    log = [
        "task 3 calling Actor<0000014833A09890>mbedTLS(C): mbedtls_ssl_fetch_input() returned -76 (-0x004c)",
        'ClientSocket got POSIX error 5 "Input/output error"',
    ]
    d = diagnose_lines(log)
    assert (d.category, d.error) == (
        "conn_eof_or_reset",
        {"code": "-0x004c", "name": "MBEDTLS_ERR_NET_RECV_FAILED"},
    )
    assert d.io == {
        "call": "receive",
        "result": "receive failed",
        "code": "-0x004c",
        "meaning": "the socket's receive failed (a socket error, not a close)",
    }


def test_lines_of_other_tasks_between_library_lines_do_not_change_the_state() -> None:
    log = """\
961 80491 [iot_thread] mbedTLS: |2| 0x2400da7c: client state: 12
967 80528 [iot_thread] mbedTLS: |2| 0x2400da7c: in_left: 0, nb_want: 5
968 80533 [EMAC-task] RX descriptors 7/8
969 80533 [EMAC-task] Network buffers: 54 lowest 54
970 80563 [iot_thread] mbedTLS: |2| 0x2400da7c: in_left: 0, nb_want: 5
971 80570 [iot_thread] mbedTLS: |2| 0x2400da7c: ssl->f_recv(_timeout)() returned 5 (-0xfffffffb)
"""
    d = diagnose_lines(log.splitlines())
    assert d.last_state == {"number": 12, "name": "MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC"}
    assert (d.inbound_reads, d.lines["app"]) == ([5], 2)


# --- timestamps ------------------------------------------------------------------------------


def test_timestamps_of_the_common_styles_are_read() -> None:
    assert parse_timestamp("Wed May 31 15:18:16.475 2017 mbed TLS[") == parse_timestamp(
        "[May 31 15:18:16.475]"
    )
    assert parse_timestamp("I (12:30:14.197) mbedtls: x") == 12 * 3600 + 30 * 60 + 14.197
    assert parse_timestamp("955 80413 [iot_thread] mbedTLS: x") == 80.413  # FreeRTOS ticks (1 ms)
    assert parse_timestamp("[00:00:00.930,003] <wrn> mbedtls: x") == 0.930
    assert parse_timestamp("【2020-06-22 16:28:24:375】E (7795)") == parse_timestamp(
        "2020-06-22 16:28:24.375"
    )
    assert parse_timestamp("[  3340][V][NetworkEvents.cpp:119]") == 3.34
    assert parse_timestamp("[T: 3871 M: httpclient C: info]") == 3.871


def test_a_log_that_ends_waiting_then_shows_only_other_lines_for_seconds_is_a_stall_with_its_duration() -> (
    None
):
    log = """\
I (4962) mbedtls: ssl_cli.c:3510 client state: 3
I (4986) mbedtls: ssl_tls.c:5655 => parse certificate
I (5012) mbedtls: ssl_tls.c:2697 in_left: 0, nb_want: 5
I (6000) wifi: rssi -61
I (9000) wifi: rssi -62
I (12962) MQTT: still connecting
"""
    d = diagnose_lines(log.splitlines())
    assert (d.outcome, d.category, d.stall_seconds) == ("stalled", "stall_want_read", 8.0)
    assert d.summary.startswith("Stalled in client state 3 (MBEDTLS_SSL_SERVER_CERTIFICATE)")


def test_a_short_wait_between_timestamped_lines_is_not_a_stall() -> None:
    log = """\
I (4962) mbedtls: ssl_cli.c:3510 client state: 3
I (5012) mbedtls: ssl_tls.c:2697 in_left: 0, nb_want: 5
I (6000) wifi: rssi -61
"""
    assert diagnose_lines(log.splitlines()).outcome == "incomplete"


# --- logs without state lines ----------------------------------------------------------------


def test_a_level_2_log_without_state_lines_takes_its_state_from_the_messages_parsed() -> None:
    log = """\
* => write client hello
* client hello, adding server name extension: example.com
* => parse server hello
* server hello, total extension length: 19
* => parse certificate
* x509_verify_cert() returned -9984 (-0x2700)
"""
    d = diagnose_lines(log.splitlines())
    assert (d.role, d.category) == ("client", "x509_verify_failed")
    assert d.last_state["name"] == "MBEDTLS_SSL_SERVER_CERTIFICATE"
    assert "(from the messages the log shows, no state line)" in d.summary


def test_a_server_parsing_a_certificate_is_in_client_certificate() -> None:
    log = ["=> parse client hello", "=> write server hello", "=> parse certificate"]
    d = diagnose_lines(log)
    assert (d.role, d.last_state["name"]) == ("server", "MBEDTLS_SSL_CLIENT_CERTIFICATE")


def test_a_log_that_starts_after_the_handshake_and_reads_data_is_a_completed_session() -> None:
    log = """\
I (23193) mbedtls: ssl_tls.c:8647 <= write
I (23883) mbedtls: ssl_tls.c:8207 => read
I (23933) mbedtls: ssl_tls.c:2718 ssl->f_recv(_timeout)() returned 1394 (-0xfffffa8e)
I (23963) mbedtls: ssl_tls.c:1790 => decrypt buf
"""
    d = diagnose_lines(log.splitlines())
    assert (d.outcome, d.category) == ("completed", "completed")
    assert d.last_state["name"] == "MBEDTLS_SSL_HANDSHAKE_OVER"


def test_mbedtls_ssl_read_before_the_handshake_is_not_a_session() -> None:
    log = ["ssl_tls.c:8207: => read", "ssl_tls.c:8084: => handshake", "ssl_cli.c:3510: client state: 2"]
    assert diagnose_lines(log).outcome == "incomplete"


# --- what the application prints ---------------------------------------------------------------


def test_an_application_error_line_names_the_error_when_the_library_printed_nothing() -> None:
    log = [
        "E (6315) esp-tls-mbedtls: mbedtls_ssl_setup returned -0x7F00",
        "E (6315) esp-tls: Failed to open new connection",
    ]
    d = _bulk("\n".join(log) + "\n")
    assert (d["outcome"], d["category"], d["last_state"]) == (
        "failed",
        "alloc_failed",
        {"number": None, "name": None},
    )
    assert d["error"] == {"code": "-0x7f00", "name": "MBEDTLS_ERR_SSL_ALLOC_FAILED"}


def test_an_application_number_that_is_no_mbedtls_code_is_not_an_error() -> None:
    d = diagnose_lines(["ssl_cli.c:3510: client state: 2", "app: error 0x1234 in sensor driver"])
    assert d.error is None and d.outcome == "incomplete"


def test_application_state_banners_give_the_state_when_the_library_prints_none() -> None:
    log = """\
--------------ssl->state = 11 -------------------
--------------ssl->state = 17 -------------------
..\\PolarSSL\\src\\ssl_tls.c:4095: is a fatal alert message (msg 40)
..\\PolarSSL\\src\\ssl_cli.c:3279: mbedtls_ssl_read_record() returned -30592 (-0x7780)
"""
    d = diagnose_lines(log.splitlines())
    assert d.last_state == {"number": 17, "name": "MBEDTLS_SSL_SERVER_NEW_SESSION_TICKET"}
    assert d.alert == {"direction": "received", "level": 2, "description": 40, "name": "handshake_failure"}


# --- I/O results ------------------------------------------------------------------------------


def test_an_application_defined_receive_code_is_reported_as_the_callbacks_own() -> None:
    log = [
        "mbed TLS[ssl_cli.c:3279 2]: client state: 3",
        "mbed TLS[ssl_tls.c:2391 2]: ssl->f_recv(_timeout)() returned -32768 (-0x8000)",
        "mbed TLS[ssl_tls.c:3831 1]: mbedtls_ssl_fetch_input() returned -32768 (-0x8000)",
    ]
    d = diagnose_lines(log)
    assert (d.category, d.error) == ("other", {"code": "-0x8000", "name": None})
    assert d.io is not None and (d.io["call"], d.io["result"]) == ("receive", "application-defined code")
    assert "CT_WOULD_BLOCK" in d.io["meaning"]
    assert "Make the receive callback return Mbed TLS's own codes" in d.summary


def test_receive_results_are_told_apart() -> None:
    cases = {
        "-0x0050": ("conn_eof_or_reset", "connection reset"),
        "-0x004c": ("conn_eof_or_reset", "receive failed"),
        "-0x6800": ("timeout", "timeout"),
    }
    for code, (category, result) in cases.items():
        value = -int(code[3:], 16)
        log = [
            "ssl_cli.c:3510: client state: 2",
            f"ssl_tls.c:2722: ssl->f_recv(_timeout)() returned {value} ({code})",
        ]
        d = diagnose_lines(log)
        assert (d.category, d.io and d.io["result"]) == (category, result), code
    eof = diagnose_lines(
        [
            "ssl_cli.c:3510: client state: 2",
            "ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 0 (-0x0000)",
            "ssl_tls.c:2727: mbedtls_ssl_fetch_input() returned -29312 (-0x7280)",
        ]
    )
    assert (eof.category, eof.io and eof.io["result"]) == ("conn_eof_or_reset", "end of file")


# --- allocation failures ------------------------------------------------------------------------


def test_an_allocation_message_names_the_category_whatever_code_follows() -> None:
    log = [
        "[Nov 18 08:19:53.082] mg_ssl_if_mbedtls.c:30  0x3fff1bbc alloc 16421 failed",
        "[Nov 18 08:19:53.143] mg_ssl_if_mbedtls.c:30  0x3fff1bbc mbedtls_ssl_fetch_input() returned -32512 (-0x7f00)",
    ]
    assert diagnose_lines(log).category == "alloc_failed"
    old = [
        "ssl_cli.c:3510: client state: 3",
        "ssl_tls.c:5991: alloc(1019 bytes) failed",
        "ssl_tls.c:6037: x509_verify_cert() returned -9984 (-0x2700)",
    ]
    assert diagnose_lines(old).category == "alloc_failed"  # 2.x returned X509_CERT_VERIFY_FAILED for it


def test_a_composite_code_with_an_allocation_part_is_an_allocation_failure() -> None:
    d = diagnose_lines(["E (9444) in: failed  ! mbedtls_ssl_handshake returned -0x4290"])
    assert d.category == "alloc_failed"
    assert d.error == {
        "code": "-0x4290",
        "name": "MBEDTLS_ERR_RSA_PUBLIC_FAILED + MBEDTLS_ERR_MPI_ALLOC_FAILED",
    }


# --- the live verdict ---------------------------------------------------------------------------


def test_a_live_verdict_waits_for_an_alerts_own_lines_and_for_its_own_handshake() -> None:
    parser = LogParser()
    for line in (
        "ssl_msg.c:5182: => read",  # the previous session of the firmware, before its reset
        "ssl_msg.c:3860: <= read record",
        "ssl_tls.c:5804: => handshake",
        "ssl_cli.c:4261: client state: 2",
        "ssl_msg.c:3538: input record: msgtype = 21, version = [3:3], msglen = 2",
    ):
        parser.feed(line, host_time=100.0)
    live = diagnose_parser(parser, now=100.5, stall_after=9.6)
    assert live.outcome == "incomplete"  # `got an alert message` is still on its way
    assert diagnose_parser(parser).category == "fatal_alert_received"  # the log as saved ends there
