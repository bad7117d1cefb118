"""`rig diagnose` and `rig diff` as a user and a script meet them: output, JSON, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from rig.cli import main
from tests.mbedtls.conftest import LOGS
from tests.mbedtls.test_categories import FATAL_ALERT

BAD = LOGS / "incident-bad.log"
GOOD = LOGS / "incident-good.log"


def test_diagnose_json_has_every_documented_field() -> None:
    result = CliRunner().invoke(main, ["diagnose", "--json", str(BAD)])
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert set(document) >= {
        "mbedtls_version",
        "role",
        "protocol",
        "outcome",
        "category",
        "last_state",
        "error",
        "alert",
        "ciphersuite",
        "inbound_reads",
        "records_in",
        "records_out",
        "want_read_retries",
        "stall_seconds",
        "evidence",
        "summary",
    }
    assert (document["outcome"], document["category"]) == ("stalled", "stall_want_read")


def test_diagnose_text_names_the_verdict_state_and_evidence(tmp_path: Path) -> None:
    log = tmp_path / "alert.log"
    log.write_text(FATAL_ALERT)
    result = CliRunner().invoke(main, ["diagnose", str(log)])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == f"{log}: FAILED — fatal_alert_received: the peer sent a fatal alert"
    assert "  error: -0x7780 MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE" in lines
    assert "  alert received: level 2, decrypt_error" in lines
    assert "  evidence: lines 16, 22, 24" in lines


def test_diagnose_fail_on_failure_exits_1_for_a_failed_handshake(tmp_path: Path) -> None:
    log = tmp_path / "alert.log"
    log.write_text(FATAL_ALERT)
    assert CliRunner().invoke(main, ["diagnose", "--fail-on-failure", str(log)]).exit_code == 1


def test_diagnose_reads_stdin_with_a_dash() -> None:
    result = CliRunner().invoke(main, ["diagnose", "--json", "-"], input=BAD.read_bytes())
    assert result.exit_code == 0
    assert json.loads(result.output)["last_state"]["number"] == 12


def test_an_unreadable_log_exits_2_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.log"
    result = subprocess.run(
        [sys.executable, "-m", "rig", "diagnose", str(missing)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {missing}: cannot read the log (No such file or directory); check the path and its permissions"
    )


def test_a_file_without_mbedtls_lines_exits_2_with_what_to_check(tmp_path: Path) -> None:
    log = tmp_path / "app-only.log"
    log.write_text("[APP] hello\n[APP] world\n")
    result = CliRunner().invoke(main, ["diagnose", str(log)])
    assert result.exit_code == 2
    assert "no Mbed TLS debug line in 2 lines" in result.output


def test_an_unknown_version_override_exits_2() -> None:
    result = CliRunner().invoke(main, ["diagnose", "--mbedtls-version", "9.9", str(BAD)])
    assert result.exit_code == 2
    assert "--mbedtls-version 9.9: unknown release" in result.output


def test_a_patch_version_override_is_accepted_as_its_release() -> None:
    result = CliRunner().invoke(main, ["diagnose", "--json", "--mbedtls-version", "2.28.3", str(BAD)])
    assert json.loads(result.output)["mbedtls_version"] == "2.28"


def test_diff_json_carries_the_divergence_and_both_diagnoses() -> None:
    result = CliRunner().invoke(main, ["diff", "--json", str(GOOD), str(BAD)])
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert document["divergence"]["state"] == "12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC)"
    assert document["bad"]["outcome"] == "stalled"
    assert document["good"]["last_state"]["number"] == 13
