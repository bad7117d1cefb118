"""The incident's two log fragments (forum thread): the diagnosis and the diff an engineer needed."""

from __future__ import annotations

from click.testing import CliRunner

from rig.cli import main
from rig.mbedtls import LogParser, diagnose_lines, diff_traces
from tests.mbedtls.conftest import LOGS

GOOD = LOGS / "incident-good.log"
BAD = LOGS / "incident-bad.log"


def _parser(path: object) -> LogParser:
    parser = LogParser()
    parser.feed_all(GOOD.read_text().splitlines() if path == "good" else BAD.read_text().splitlines())
    return parser


def test_the_failing_fragment_is_a_stall_in_client_state_12_after_sending_finished() -> None:
    d = diagnose_lines(BAD.read_text().splitlines())
    assert d.to_json() | {"summary": ""} == {
        "mbedtls_version": "2.16",
        "role": "client",
        "protocol": "tls1.2",
        "outcome": "stalled",
        "category": "stall_want_read",
        "last_state": {"number": 12, "name": "MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC"},
        "error": None,
        "alert": None,
        "ciphersuite": None,
        "inbound_reads": [],
        "records_in": 0,
        "records_out": 1,
        "want_read_retries": 1,
        "stall_seconds": None,
        "evidence": [32, 45, 52],
        "summary": "",
        "io": None,
        "attempts": 1,
        "attempt": 1,
        "lines": {"lines": 55, "mbedtls": 42, "app": 13, "blank": 0, "unknown": 0},
    }
    assert d.summary == (
        "Stalled in client state 12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC) after sending Finished: no byte and "
        "no alert from the server (1 re-entry waiting for input). Inbound so far: no bytes. Compare with a "
        "passing log (`rig diff`) and look at the TCP receive path."
    )


def test_the_passing_fragment_reads_the_server_change_cipher_spec_and_finished() -> None:
    parser = _parser("good")
    trace = parser.trace
    assert [v.number for v in trace.states] == [11, 12, 13]
    assert trace.inbound_reads == [5, 1, 5, 40]
    assert [(r.type, r.length) for r in trace.records_in] == [(20, 1), (22, 40)]
    assert [(r.type, r.length) for r in trace.records_out] == [(22, 40)]
    assert trace.outbound_writes == [45]
    # Host times come from the application's own lines (the last one before state 12 says 07:51:42.415).
    assert trace.states[1].host_time is not None and trace.states[0].host_time is not None
    assert round(trace.states[1].host_time - trace.states[0].host_time, 3) == 0.527


def test_diff_of_the_fragments_finds_the_divergence_at_state_12_with_lines_on_both_sides() -> None:
    result = diff_traces(_parser("good").trace, _parser("bad").trace)
    assert result.divergence == {
        "state": "12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC)",
        "good": "received 1 record: change_cipher_spec (1 B); read 5, 1 bytes; "
        "advanced to 13 (MBEDTLS_SSL_SERVER_FINISHED) at line 53",
        "bad": "waited for input (in_left 0, nb_want 5) through 1 re-entry with no byte; the log ends there",
        "good_lines": [30, 44],
        "bad_lines": [32, 53],
    }
    steps = result.to_json()["steps"]
    assert [s["state"] for s in steps] == [
        "11 (MBEDTLS_SSL_CLIENT_FINISHED)",
        "12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC)",
        "13 (MBEDTLS_SSL_SERVER_FINISHED)",
    ]
    assert steps[0]["good"]["seconds"] == 0.527 and steps[0]["bad"]["seconds"] == 0.523
    assert steps[2]["bad"] is None
    assert result.differences["inbound_reads"] == {"good": [5, 1, 5, 40], "bad": [], "same": False}


def test_rig_diff_prints_the_divergence_first() -> None:
    result = CliRunner().invoke(main, ["diff", str(GOOD), str(BAD)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[3] == "First divergence at state 12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC):"
    assert lines[5].startswith("  bad  (lines 32–53): waited for input (in_left 0, nb_want 5)")


def test_rig_diagnose_exits_1_on_the_stall_only_with_fail_on_failure() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["diagnose", str(BAD)]).exit_code == 0
    assert runner.invoke(main, ["diagnose", "--fail-on-failure", str(BAD)]).exit_code == 1
    assert runner.invoke(main, ["diagnose", "--fail-on-failure", str(GOOD)]).exit_code == 0
