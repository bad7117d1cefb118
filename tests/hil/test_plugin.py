"""The pytest plugin, run inside pytest (pytester) on a scripted bench: what a HIL user relies on."""

from __future__ import annotations

import json
import re

import pytest
from pytester_project import Project

import rig

BASIC = """{
    "tcp-rx-1024": Script(COMPLETED),
    ("tcp-rx-1024", "satellite"): Script(STALLED_AT_12),
    "tcp-rx-1460": Script(COMPLETED),
    "mbedtls-in-4096": Script(RECORD_TOO_BIG),
}"""


def incident_variants(project: Project) -> None:
    project.variant("tcp-rx-1024", satellite="fail stall_want_read")
    project.variant("tcp-rx-1460", release=True)
    project.variant("mbedtls-in-4096", **{"*": "fail record_or_buffer_size"})


def test_options_are_listed_in_help_under_the_rig_group(project: Project) -> None:
    result = project.pytester.runpytest("--help")
    text = result.stdout.str()
    for option in (
        "--bench=FILE",
        "--variants=A,B",
        "--paths=A,B",
        "--firmware-dir=DIR",
        "--repeat=N",
        "--results=DIR",
        "--forensic={failed,always,never}",
    ):
        assert option in text


def test_one_marker_per_bench_path_plus_release_and_nightly_is_registered(project: Project) -> None:
    result = project.run("--markers")
    text = result.stdout.str()
    assert "@pytest.mark.landline: cells on the landline path (30 ms RTT)" in text
    assert "@pytest.mark.satellite: cells on the satellite path (600 ms RTT)" in text
    assert "@pytest.mark.release:" in text and "@pytest.mark.nightly:" in text


def test_the_matrix_is_every_variant_times_every_path_with_readable_ids(project: Project) -> None:
    incident_variants(project)
    project.scripts(BASIC)
    result = project.run("--collect-only", "-q")
    ids = [line.split("[", 1)[1].rstrip("]") for line in result.stdout.lines if "::" in line]
    assert sorted(ids) == sorted(
        f"{v}-{p}"
        for v in ("tcp-rx-1024", "tcp-rx-1460", "mbedtls-in-4096")
        for p in ("landline", "satellite")
    )


def test_minus_m_satellite_runs_only_the_satellite_column(project: Project) -> None:
    incident_variants(project)
    project.scripts(BASIC)
    result = project.run("-m", "satellite", "--collect-only", "-q")
    ids = [line.split("[", 1)[1].rstrip("]") for line in result.stdout.lines if "::" in line]
    assert sorted(ids) == ["mbedtls-in-4096-satellite", "tcp-rx-1024-satellite", "tcp-rx-1460-satellite"]


def test_minus_m_release_runs_only_release_variants(project: Project) -> None:
    incident_variants(project)
    project.scripts(BASIC)
    result = project.run("-m", "release", "--collect-only", "-q")
    ids = [line.split("[", 1)[1].rstrip("]") for line in result.stdout.lines if "::" in line]
    assert sorted(ids) == ["tcp-rx-1460-landline", "tcp-rx-1460-satellite"]


def test_an_unknown_variant_name_is_a_usage_error_listing_the_known_ones(project: Project) -> None:
    incident_variants(project)
    project.scripts(BASIC)
    result = project.run("--variants", "tcp-rx-999")
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        ["*--variants: unknown variant tcp-rx-999 (known: mbedtls-in-4096, tcp-rx-1024, tcp-rx-1460)*"]
    )


def test_each_variant_is_programmed_once_and_paths_switch_rarely(project: Project) -> None:
    incident_variants(project)
    project.scripts(BASIC)
    result = project.run("--repeat", "2")
    result.assert_outcomes(passed=6, xfailed=6)
    actions = [a for a in project.actions() if not a.startswith("reset")]
    # Paths snake from variant to variant; a variant's expected-pass path comes before its failing one.
    assert actions == [
        "open",
        "program mbedtls-in-4096",
        "path satellite",
        "program tcp-rx-1024",
        "path landline",
        "path satellite",
        "program tcp-rx-1460",
        "path landline",
        "restore",
    ]


def test_strict_xfail_passes_only_when_the_cell_fails_with_the_expected_category(project: Project) -> None:
    project.variant("tcp-rx-1024", satellite="fail stall_want_read")
    project.variant("wrong-category", satellite="fail x509_verify_failed")
    project.variant("fixed-already", satellite="fail stall_want_read")
    project.scripts(
        """{
        "tcp-rx-1024": Script(COMPLETED), ("tcp-rx-1024", "satellite"): Script(STALLED_AT_12),
        "wrong-category": Script(COMPLETED), ("wrong-category", "satellite"): Script(STALLED_AT_12),
        "fixed-already": Script(COMPLETED),
    }"""
    )
    result = project.run("--paths", "satellite", "-rxXf")
    result.assert_outcomes(xfailed=1, failed=2)
    text = result.stdout.str()
    assert "XPASS(strict)" in text and "fixed-already-satellite" in text
    assert (
        "FAILED test_handshake.py::test_handshake_completes_and_mqtt_connects[wrong-category-satellite]"
        in text
    )
    outcomes = {(c["variant"], c["outcome"]) for c in project.cells()}
    assert outcomes == {
        ("tcp-rx-1024", "xfailed"),
        ("wrong-category", "failed"),
        ("fixed-already", "xpassed"),
    }


def test_an_expectation_with_a_place_accepts_its_category_only_in_that_state(project: Project) -> None:
    project.variant("there", satellite="fail stall_want_read at SERVER_CHANGE_CIPHER_SPEC")
    project.variant("elsewhere", satellite="fail stall_want_read at SERVER_HELLO")
    project.scripts(
        """{
        ("there", "satellite"): Script(STALLED_AT_12), ("elsewhere", "satellite"): Script(STALLED_AT_12),
    }"""
    )
    result = project.run("--paths", "satellite", "-rxXf")
    result.assert_outcomes(xfailed=1, failed=1)
    assert "FAILED test_handshake.py::test_handshake_completes_and_mqtt_connects[elsewhere-satellite]" in (
        result.stdout.str()
    )
    assert {(c["variant"], c["outcome"]) for c in project.cells()} == {
        ("there", "xfailed"),
        ("elsewhere", "failed"),
    }


def test_a_firmware_failure_is_failed_with_the_diagnosis_summary_as_message(project: Project) -> None:
    project.variant("tcp-rx-1024")
    project.scripts('{"tcp-rx-1024": Script(STALLED_AT_12)}')
    result = project.run("--paths", "satellite", "--alluredir", "allure")
    result.assert_outcomes(failed=1)
    (allure_result,) = [json.loads(p.read_text()) for p in (project.root / "allure").glob("*-result.json")]
    assert allure_result["status"] == "failed"  # a firmware failure, not a broken test
    attachments = {a["name"] for a in allure_result["attachments"]}
    assert {"attempt 1: diagnosis", "attempt 1: handshake timeline", "attempt 1: UART log"} <= attachments
    summary = project.cells()[0]["summary"]
    assert isinstance(summary, str) and "SERVER_CHANGE_CIPHER_SPEC" in summary
    # The class names the category and the state: an expectation may name either.
    assert f"HandshakeFailed_stall_want_read_at_SERVER_CHANGE_CIPHER_SPEC: {summary}" in result.stdout.str()


def test_a_bench_problem_is_an_error_not_a_failure_after_one_retry(project: Project) -> None:
    project.variant("tcp-rx-1460")
    project.scripts('{"tcp-rx-1460": Script(COMPLETED, reset_faults=2)}')
    result = project.run("--paths", "landline", "--alluredir", "allure")
    result.assert_outcomes(errors=1)
    (allure_result,) = [json.loads(p.read_text()) for p in (project.root / "allure").glob("*-result.json")]
    assert allure_result["status"] == "broken"
    cells = project.cells()
    assert [(c["attempt"], c["outcome"]) for c in cells] == [(1, "error"), (2, "error")]
    assert cells[1]["error"] == "programmer ICD4 BURSIM000001: Connection Failed. — replug the tool"
    assert project.actions().count("reset-fault") == 2


def test_a_bench_problem_cleared_by_the_retry_leaves_the_cell_passed(project: Project) -> None:
    project.variant("tcp-rx-1460")
    project.scripts('{"tcp-rx-1460": Script(COMPLETED, reset_faults=1)}')
    result = project.run("--paths", "landline")
    result.assert_outcomes(passed=1)
    assert [(c["attempt"], c["outcome"]) for c in project.cells()] == [(1, "error"), (2, "passed")]


def test_a_bench_failing_preflight_stops_the_run_at_once_with_one_message(project: Project) -> None:
    incident_variants(project)
    project.scripts(BASIC, preflight="router: connection refused (127.0.0.1:2222)")
    result = project.run()
    assert result.ret == 3
    text = result.stdout.str()
    assert text.count("preflight failed") == 1
    assert "bench benches/bench.yaml is not usable: preflight failed — router: connection refused" in text
    assert project.actions() == []


def test_cells_jsonl_has_each_attempt_as_soon_as_it_ends(project: Project) -> None:
    project.variant("tcp-rx-1460")
    project.scripts('{"tcp-rx-1460": Script(COMPLETED)}')
    project.pytester.makepyfile(
        test_zz_after="""
        import json, pathlib
        def test_zz_reads_the_record_of_the_cell_before():
            run = sorted(p for p in pathlib.Path("results").iterdir() if not p.is_symlink())[-1]
            lines = (run / "cells.jsonl").read_text().splitlines()
            assert [json.loads(l)["path"] for l in lines] == ["landline", "satellite"]
        """
    )
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=3)
    cells = project.cells()
    assert cells[0]["verdict"] == "completed" and cells[0]["programmed"] is True
    assert cells[1]["programmed"] is False  # already on the DUT
    assert set(cells[0]["seconds"]) == {"program", "path", "reset_to_verdict", "settle"}
    # Which rig judged it, and which image the DUT ran: a line of cells.jsonl stands on its own.
    assert cells[0]["rig_version"] == rig.__version__
    assert cells[0]["image_sha256"] == cells[1]["image_sha256"] and len(cells[0]["image_sha256"]) == 64


def test_with_repeats_the_summary_gives_each_cells_pass_rate_and_flags_a_flaky_one(project: Project) -> None:
    project.variant("tcp-rx-1460")
    project.scripts('{"tcp-rx-1460": Script(COMPLETED), ("tcp-rx-1460", "satellite"): Script(FLAKY)}')
    project.pytester.makeconftest(
        project.root.joinpath("conftest.py")
        .read_text()
        .replace("from scripted_bench import", "from scripted_bench import FLAKY,")
    )
    result = project.run("--repeat", "3")
    result.assert_outcomes(passed=5, failed=1)
    assert "flaky cells: tcp-rx-1460-satellite" in result.stdout.str()
    runs = [p for p in (project.root / "results").iterdir() if not p.is_symlink()]
    summary = json.loads((runs[0] / "summary.json").read_text())
    rates = {(c["path"], c["pass_rate"], c["flaky"]) for c in summary["cells"]}
    assert rates == {("landline", 1.0, False), ("satellite", 2 / 3, True)}


def test_lines_of_the_previous_boot_arriving_after_the_reset_are_not_judged(project: Project) -> None:
    project.variant("tcp-rx-1024")
    # A previous session's completion and CONNACK still on their way, then this reset's boot, which stalls.
    project.scripts('{"tcp-rx-1024": Script(COMPLETED[1:] + STALLED_AT_12)}')
    result = project.run("--paths", "satellite")
    result.assert_outcomes(failed=1)
    (cell,) = project.cells()
    assert (cell["verdict"], cell["last_state"]) == ("stalled", "SERVER_CHANGE_CIPHER_SPEC")


def test_a_dut_booting_another_image_than_the_one_programmed_is_a_bench_problem(project: Project) -> None:
    project.variant("tcp-rx-1024")
    other = '["[hub] boot image sha256=" + "ab" * 32] + COMPLETED[1:]'
    project.scripts('{"tcp-rx-1024": Script(' + other + ")}")
    result = project.run("--paths", "landline")
    result.assert_outcomes(errors=1)
    error = project.cells()[-1]["error"]
    assert isinstance(error, str)
    assert error.startswith(f"tcp-rx-1024-landline: the DUT booted image sha256 {'ab' * 32} but {'0' * 64}")


def test_without_bench_the_bench_comes_from_rig_bench_then_the_ini_option(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester = project.pytester
    monkeypatch.setenv("RIG_BENCH", "benches/bench.yaml")
    text = pytester.runpytest("-p", "no:cacheprovider", "--markers").stdout.str()
    assert "@pytest.mark.satellite: cells on the satellite path (600 ms RTT)" in text

    monkeypatch.setenv("RIG_BENCH", "benches/missing-from-env.yaml")
    result = pytester.runpytest("-p", "no:cacheprovider", "--markers")
    assert "benches/missing-from-env.yaml: file not found" in result.stderr.str()
    # --bench wins over the environment
    result = project.run("--markers")
    assert "@pytest.mark.landline: cells on the landline path (30 ms RTT)" in result.stdout.str()

    monkeypatch.delenv("RIG_BENCH")
    pytester.makeini("[pytest]\nrig_bench = benches/missing-from-ini.yaml\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--markers")
    assert "benches/missing-from-ini.yaml: file not found" in result.stderr.str()


def test_several_benches_need_xdist_the_same_paths_and_names_of_their_own(project: Project) -> None:
    incident_variants(project)
    project.scripts(BASIC)
    benches = project.root / "benches"
    text = (benches / "bench.yaml").read_text()
    (benches / "b.yaml").write_text(text.replace("name: scripted", "name: scripted-b"))
    (benches / "pool.yaml").write_text("pool: [bench.yaml, b.yaml]\n")
    pytester = project.pytester

    result = pytester.runpytest("-p", "no:cacheprovider", "--bench", "benches/pool.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "2 benches given: run them as a pool with pytest-xdist, `-n 2`" in result.stderr.str()
    # Looking at the cells touches no bench of the pool.
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--bench", "benches/pool.yaml", "-n", "2", "--co", "-q"
    )
    assert result.ret == pytest.ExitCode.OK
    assert "tcp-rx-1024-satellite" in result.stdout.str() and "drops out" not in result.stdout.str()

    (benches / "c.yaml").write_text(
        text.replace("  satellite:", "  geo:").replace("name: scripted", "name: c")
    )
    result = project.run("--bench", "benches/c.yaml", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "benches/c.yaml: paths landline, geo differ from benches/bench.yaml's (landline, satellite)" in (
        result.stderr.str()
    )
    (benches / "d.yaml").write_text(text)
    result = project.run("--bench", "benches/d.yaml", "-n", "2")
    assert "benches/d.yaml: name 'scripted' is also benches/bench.yaml's" in result.stderr.str()


def test_a_pool_whose_benches_all_fail_their_preflight_exits_3_with_one_line_per_bench(
    project: Project,
) -> None:
    """The controller checks each bench before any worker starts (here the real preflight of two benches
    whose parts do not exist): each drops out with one line, and with none left the run is a bench problem."""
    incident_variants(project)
    project.scripts(BASIC)
    benches = project.root / "benches"
    text = (benches / "bench.yaml").read_text()
    (benches / "b.yaml").write_text(text.replace("name: scripted", "name: scripted-b"))
    result = project.pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--bench", "benches/bench.yaml", "--bench", "benches/b.yaml", "-n", "auto"
    )
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 3, out
    dropped = [line for line in out.splitlines() if "drops out of the pool" in line]
    assert [line.split(" drops out")[0] for line in dropped] == [
        "rig: bench benches/bench.yaml",
        "rig: bench benches/b.yaml",
    ]
    assert all("preflight failed — " in line and "programmer:" in line for line in dropped), dropped
    assert "no bench of the pool is usable (2 tried, see above)" in out


def test_two_runs_leave_each_cell_with_two_attempts_in_the_history(project: Project) -> None:
    from rig.report.history import cell_histories

    project.variant("tcp-rx-1024", satellite="fail stall_want_read")
    project.scripts('{"tcp-rx-1024": Script(COMPLETED), ("tcp-rx-1024", "satellite"): Script(STALLED_AT_12)}')
    for _ in range(2):
        project.run().assert_outcomes(passed=1, xfailed=1)
    histories = {h.cell: h for h in cell_histories(project.root / "results")}
    assert {cell: (h.attempts, h.pass_rate) for cell, h in histories.items()} == {
        "tcp-rx-1024-landline": (2, 1.0),
        "tcp-rx-1024-satellite": (2, 1.0),
    }
    assert histories["tcp-rx-1024-satellite"].runs[0].bench == "scripted"


def test_a_failing_cell_is_rerun_once_with_its_forensic_image_without_changing_its_verdict(
    project: Project,
) -> None:
    project.variant("tcp-rx-1024", satellite="fail stall_want_read")
    with_forensic_image(project, "tcp-rx-1024")
    project.scripts(
        """{"tcp-rx-1024": Script(COMPLETED), ("tcp-rx-1024", "satellite"): Script(STALLED_AT_12)}"""
    )
    result = project.run()
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        ["*rig: tcp-rx-1024-satellite failed: rerunning it once with its forensic image (debug level 4)*"]
    )
    assert [a for a in project.actions() if a.startswith("program")] == [
        "program tcp-rx-1024",
        "program tcp-rx-1024 (forensic)",
    ]
    cells = project.cells()
    assert [(c["path"], c["attempt"], c["forensic"], c["verdict"]) for c in cells] == [
        ("landline", 1, False, "completed"),
        ("satellite", 2, True, "stalled"),
        ("satellite", 1, False, "stalled"),
    ]
    assert (cells[1]["outcome"], cells[2]["outcome"]) == ("xfailed", "xfailed")
    # The failing attempt's theories: no level-4 dump here, so the forensic rerun found none either.
    assert cells[2]["theories"][-1].startswith("Supported: ")
    summary = json.loads(next(project.root.glob("results/*/summary.json")).read_text())
    satellite = next(c for c in summary["cells"] if c["path"] == "satellite")
    assert (satellite["attempts"], satellite["as_expected"]) == (1, 1)


def test_a_passing_cell_and_a_variant_without_a_forensic_image_are_not_rerun(project: Project) -> None:
    project.variant("tcp-rx-1024", satellite="fail stall_want_read")
    project.scripts(BASIC)
    result = project.run("--variants", "tcp-rx-1024")
    result.assert_outcomes(passed=1, xfailed=1)
    assert not any("forensic" in a for a in project.actions())
    assert [c["forensic"] for c in project.cells()] == [False, False]


def with_forensic_image(project: Project, name: str) -> None:
    variant = project.root / "firmware_configs" / f"{name}.yaml"
    variant.write_text(
        variant.read_text().replace("build:", "forensic: {hex: ../build/" + name + "-d4.hex}\nbuild:")
    )


def test_forensic_always_reruns_a_passing_cell_too_and_counts_only_its_own_attempt(project: Project) -> None:
    project.variant("tcp-rx-1024", satellite="fail stall_want_read")
    with_forensic_image(project, "tcp-rx-1024")
    project.scripts(
        """{"tcp-rx-1024": Script(COMPLETED), ("tcp-rx-1024", "satellite"): Script(STALLED_AT_12)}"""
    )
    result = project.run("--forensic=always")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        ["*rig: tcp-rx-1024-landline passed: rerunning it once with its forensic image (debug level 4)*"]
    )
    # The passing cell's rerun leaves the forensic image on the DUT: the next cell programs its own again.
    assert [a for a in project.actions() if a.startswith("program")] == [
        "program tcp-rx-1024",
        "program tcp-rx-1024 (forensic)",
        "program tcp-rx-1024",
        "program tcp-rx-1024 (forensic)",
    ]
    cells = project.cells()
    assert [(c["path"], c["attempt"], c["forensic"], c["verdict"], c["outcome"]) for c in cells] == [
        ("landline", 2, True, "completed", "passed"),
        ("landline", 1, False, "completed", "passed"),
        ("satellite", 2, True, "stalled", "xfailed"),
        ("satellite", 1, False, "stalled", "xfailed"),
    ]
    assert cells[1]["theories"] == []  # a passing attempt's rerun answers no theories for it
    summary = json.loads(next(project.root.glob("results/*/summary.json")).read_text())
    assert [(c["path"], c["attempts"]) for c in summary["cells"]] == [("landline", 1), ("satellite", 1)]


def test_forensic_never_leaves_a_failing_cell_with_a_forensic_image_alone(project: Project) -> None:
    project.variant("tcp-rx-1024", satellite="fail stall_want_read")
    with_forensic_image(project, "tcp-rx-1024")
    project.scripts(
        """{"tcp-rx-1024": Script(COMPLETED), ("tcp-rx-1024", "satellite"): Script(STALLED_AT_12)}"""
    )
    result = project.run("--forensic=never", "--paths", "satellite")
    result.assert_outcomes(xfailed=1)
    assert "rerunning it once" not in result.stdout.str()
    assert [a for a in project.actions() if a.startswith("program")] == ["program tcp-rx-1024"]
    assert [(c["attempt"], c["forensic"], c["verdict"]) for c in project.cells()] == [(1, False, "stalled")]


def test_by_default_a_passing_cell_with_a_forensic_image_is_not_rerun(project: Project) -> None:
    project.variant("tcp-rx-1460", release=True)
    with_forensic_image(project, "tcp-rx-1460")
    project.scripts("""{"tcp-rx-1460": Script(COMPLETED)}""")
    project.run("--paths", "landline").assert_outcomes(passed=1)
    assert [a for a in project.actions() if a.startswith("program")] == ["program tcp-rx-1460"]
    assert [c["forensic"] for c in project.cells()] == [False]


def test_a_bench_problem_in_the_forensic_rerun_is_its_own_record_and_leaves_the_verdict_alone(
    project: Project,
) -> None:
    project.variant("tcp-rx-1024", satellite="fail stall_want_read")
    with_forensic_image(project, "tcp-rx-1024")
    project.scripts(
        """{"tcp-rx-1024": Script(COMPLETED), ("tcp-rx-1024", "satellite"): Script(STALLED_AT_12),
            ("tcp-rx-1024 (forensic)", "satellite"): Script(STALLED_AT_12, reset_faults=1)}"""
    )
    result = project.run("--paths", "satellite")
    result.assert_outcomes(xfailed=1)
    assert result.ret == 0
    forensic, failing = project.cells()
    assert (forensic["forensic"], forensic["outcome"], forensic["verdict"]) == (True, "error", "error")
    assert "Connection Failed" in str(forensic["error"])
    assert (failing["forensic"], failing["outcome"], failing["verdict"]) == (False, "xfailed", "stalled")


def test_allure_gets_the_expected_failure_as_a_known_one_categories_executor_and_named_teardowns(
    project: Project,
) -> None:
    project.variant("tcp-rx-1024", satellite="fail stall_want_read")
    project.scripts('{"tcp-rx-1024": Script(COMPLETED), ("tcp-rx-1024", "satellite"): Script(STALLED_AT_12)}')
    allure_dir = project.root / "allure"
    project.run("--alluredir", str(allure_dir)).assert_outcomes(passed=1, xfailed=1)
    results = {}
    for file in allure_dir.glob("*-result.json"):
        result = json.loads(file.read_text())
        results[result["name"].split("[", 1)[1].rstrip("]")] = result
    incident = results["tcp-rx-1024-satellite"]
    assert (incident["status"], incident["statusDetails"]["known"]) == ("failed", True)
    message = incident["statusDetails"]["message"].splitlines()
    assert message[0] == (
        "Known failure: firmware_configs/tcp-rx-1024.yaml: expect.satellite = fail stall_want_read"
    )
    assert message[2].startswith(
        "Diagnosis: Stalled in client state 12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC)"
    )
    assert results["tcp-rx-1024-landline"]["status"] == "passed"
    for result in results.values():
        overview = allure_dir / result["attachments"][0]["source"]
        assert result["attachments"][0]["name"] == "overview: the matrix and the gate"
        assert "HIL matrix on bench `scripted`" in overview.read_text()
        assert "tcp-rx-1024: not releasable — satellite: the firmware failed 1 of 1" in overview.read_text()

    categories = json.loads((allure_dir / "categories.json").read_text())
    known = next(c for c in categories if c["name"].startswith("Known firmware failures"))
    assert re.fullmatch(known["messageRegex"], incident["statusDetails"]["message"])
    assert not re.fullmatch(known["messageRegex"], "rig.errors.HandshakeFailed_other: boom")
    bench = next(c for c in categories if c["name"].startswith("Bench problems"))
    assert bench["matchedStatuses"] == ["broken"]
    executor = json.loads((allure_dir / "executor.json").read_text())
    assert (executor["type"], executor["buildName"], executor["buildOrder"]) == (
        "rig",
        project.cells_folder().name,
        1,
    )
    (globals_file,) = allure_dir.glob("*-globals.json")
    assert (
        json.loads(globals_file.read_text())["attachments"][0]["name"] == "overview: the matrix and the gate"
    )

    steps = []
    for file in allure_dir.glob("*-container.json"):
        steps += [
            (step["name"], step.get("status")) for step in json.loads(file.read_text()).get("afters", [])
        ]
    names = {name for name, _ in steps}
    assert "cell: finish the attempt: stop the capture and the UART subscription" in names
    assert "bench: restore the baseline path, release the lease" in names
    assert not [name for name in names if "<lambda>" in name or name.split("::")[-1].isdigit()]
    assert {status for _, status in steps} == {"passed"}


def test_without_a_terminal_each_cell_gets_one_plain_line_per_phase_ending_in_its_verdict(
    project: Project,
) -> None:
    project.variant("tcp-rx-1024", satellite="fail stall_want_read")
    project.scripts('{"tcp-rx-1024": Script(COMPLETED), ("tcp-rx-1024", "satellite"): Script(STALLED_AT_12)}')
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=1, xfailed=1)
    lines = [line for line in result.stdout.lines if line.startswith("rig: tcp-rx-1024-")]
    landline = [line.removeprefix("rig: tcp-rx-1024-landline: ") for line in lines if "landline" in line]
    assert landline[:-1] == [
        "starting",
        "programming",
        "path kept on landline",
        "waiting for the UART to fall quiet",
        "reset",
    ]
    assert landline[-1].startswith("completed ") and landline[-1].endswith(" s after the reset")
    satellite = [line.removeprefix("rig: tcp-rx-1024-satellite: ") for line in lines if "satellite" in line]
    assert satellite[:-1] == [
        "starting",
        "image already on the DUT (banner)",
        "path switching to satellite",  # its `path_selected` is the same phase: no second line
        "waiting for the UART to fall quiet",
        "reset",
    ]
    assert satellite[-1].startswith("stalled at SERVER_CHANGE_CIPHER_SPEC ")


def test_a_pool_schedules_variants_by_their_expected_cost_a_stall_weighing_most(project: Project) -> None:
    from rig.config import load_variants
    from rig.hil.matrix import EXPECTED_FAILURE_WEIGHT, EXPECTED_WAIT_WEIGHT, plan, variant_weights

    incident_variants(project)
    variants = load_variants(project.root / "firmware_configs")
    weights = variant_weights(plan(variants, ["landline", "satellite"], repeat=2))
    assert weights == {
        "mbedtls-in-4096": 4 * EXPECTED_FAILURE_WEIGHT,  # fails fast on every path
        "tcp-rx-1024": 2 + 2 * EXPECTED_WAIT_WEIGHT,  # passes on landline, stalls on satellite
        "tcp-rx-1460": 4.0,
    }
    assert max(weights, key=lambda name: weights[name]) == "tcp-rx-1024"
