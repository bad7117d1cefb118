"""The incremental API the live UART harness uses: feed lines as they arrive, ask for a verdict."""

from __future__ import annotations

from rig.mbedtls import LogParser, diagnose_parser
from tests.mbedtls.conftest import LOGS
from tests.mbedtls.test_categories import COMPLETED, FATAL_ALERT, OPENING_216

BAD = (LOGS / "incident-bad.log").read_text().splitlines()

STALL_AT_12 = """\
ssl_tls.c:8084: => handshake
ssl_cli.c:3510: client state: 12
ssl_tls.c:5902: => parse change cipher spec
ssl_tls.c:2696: in_left: 0, nb_want: 5
ssl_tls.c:8094: <= handshake
"""


def test_feed_returns_the_events_of_the_line_with_line_number_and_host_time() -> None:
    parser = LogParser()
    assert parser.feed(b"[APP] booting\n", host_time=100.0) == []
    (event,) = parser.feed("ssl_cli.c:3510: client state: 12\n", host_time=101.5)
    assert (event.kind, event.line_no, event.host_time) == ("state", 2, 101.5)
    assert event.data["number"] == 12
    assert parser.counts == {"lines": 2, "mbedtls": 1, "app": 1, "blank": 0, "unknown": 0}


def test_a_live_wait_is_stalled_only_once_stall_after_seconds_have_passed() -> None:
    parser = LogParser()
    for i, line in enumerate(OPENING_216.splitlines()):
        parser.feed(line, host_time=1000.0 + i * 0.01)
    parser.feed("ssl_cli.c:3510: client state: 4", host_time=1001.0)
    parser.feed("ssl_tls.c:2696: in_left: 0, nb_want: 5", host_time=1001.0)
    trace = parser.trace
    assert trace.waiting_for_input and not trace.completed
    assert trace.last_progress_time == 1001.0
    early = diagnose_parser(parser, now=1030.0, stall_after=60.0)
    assert (early.outcome, early.category, early.stall_seconds) == ("incomplete", "timeout", None)
    late = diagnose_parser(parser, now=1061.5, stall_after=60.0)
    assert (late.outcome, late.category, late.stall_seconds) == ("stalled", "stall_want_read", 60.5)
    assert late.last_state == {"number": 4, "name": "MBEDTLS_SSL_SERVER_KEY_EXCHANGE"}


def test_inbound_bytes_are_progress_that_restarts_the_stall_clock() -> None:
    parser = LogParser()
    parser.feed("ssl_cli.c:3510: client state: 2", host_time=10.0)
    parser.feed("ssl_tls.c:2696: in_left: 0, nb_want: 5", host_time=10.0)
    parser.feed("ssl_tls.c:2722: ssl->f_recv(_timeout)() returned 5 (-0xfffffffb)", host_time=50.0)
    parser.feed("ssl_tls.c:2696: in_left: 5, nb_want: 98", host_time=50.0)
    assert parser.trace.last_progress_time == 50.0
    assert diagnose_parser(parser, now=100.0, stall_after=60.0).outcome == "incomplete"
    assert diagnose_parser(parser, now=111.0, stall_after=60.0).outcome == "stalled"


def test_without_a_clock_the_log_alone_calls_a_re_entered_wait_a_stall() -> None:
    parser = LogParser()
    parser.feed_all(STALL_AT_12.splitlines())
    assert diagnose_parser(parser).outcome == "incomplete"  # one wait, not yet re-entered
    parser.feed_all(STALL_AT_12.splitlines())
    verdict = diagnose_parser(parser)
    assert (verdict.outcome, verdict.want_read_retries) == ("stalled", 1)


def test_a_retrying_firmware_gives_one_attempt_per_handshake_and_the_last_is_diagnosed() -> None:
    parser = LogParser()
    parser.feed_all(OPENING_216.replace("client state: 3", "client state: 12").splitlines())
    parser.feed_all(STALL_AT_12.splitlines() * 3)
    parser.feed("[APP] TLS timeout after 60 s, retrying")
    parser.feed_all(COMPLETED.splitlines())
    assert len(parser.attempts) == 2
    assert parser.attempts[0].want_read_retries == 3 and not parser.attempts[0].finished
    verdict = diagnose_parser(parser)
    assert (verdict.outcome, verdict.attempts, verdict.attempt) == ("completed", 2, 2)
    assert verdict.summary.endswith("The log holds 2 handshake attempts; this is the last.")
    assert parser.attempts[1].states[0].number == 0


def test_a_new_handshake_after_a_failed_one_starts_a_new_attempt() -> None:
    parser = LogParser()
    parser.feed_all(FATAL_ALERT.splitlines())
    assert diagnose_parser(parser).outcome == "failed"
    parser.feed("ssl_tls.c:8084: => handshake")
    assert len(parser.attempts) == 2
    assert diagnose_parser(parser).outcome == "incomplete"


def test_application_timestamps_give_host_time_to_the_lines_after_them() -> None:
    parser = LogParser()
    parser.feed_all(BAD)
    state_12 = parser.trace.states[-1]
    assert state_12.number == 12
    assert state_12.host_time == parser.trace.states[-2].host_time  # retry lines carry no time of their own
    assert parser.counts["app"] == 13
    assert parser.last_time is not None


def test_garbage_bytes_and_truncated_lines_are_counted_not_fatal() -> None:
    parser = LogParser()
    for raw in (
        b"\xff\xfe\xfd",
        b"ssl_tls.c:27",
        b"\x00\x00",
        b"   ",
        b"ssl_cli.c:3510: client sta",
        b"#$%^&",
    ):
        parser.feed(raw)
    assert parser.counts["lines"] == 6
    assert parser.trace.states == []


def test_a_log_with_no_state_line_yet_says_what_to_check() -> None:
    parser = LogParser()
    parser.feed("[APP] connecting to sim-ats.iot.us-east-1.amazonaws.com:8883")
    verdict = diagnose_parser(parser)
    assert (verdict.outcome, verdict.category, verdict.last_state) == (
        "incomplete",
        "other",
        {"number": None, "name": None},
    )
    assert verdict.summary == (
        "The log holds no handshake state line: no handshake started, or the debug threshold is below 2 "
        "(mbedtls_debug_set_threshold)."
    )
