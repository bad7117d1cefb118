"""The report package: cells.jsonl durability, the matrix table, nightly pass rates, the gate, the chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from rich.console import Console

from rig.errors import ConfigError, HandshakeFailed
from rig.report import AttemptRecord, RunFolder, Seconds, judge, matrix_table, read_cells, summarize
from rig.report.table import programmed_per_bench
from rig.report.timeline import TimelineSeries, plot_timeline


def record(variant: str, path: str, outcome: str = "passed", **fields: object) -> AttemptRecord:
    values: dict[str, object] = {"verdict": "completed", "attempt": 1, "repeat": 1}
    values.update(fields)
    return AttemptRecord(variant=variant, path=path, outcome=outcome, **values)  # type: ignore[arg-type]


def render(table: object) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_cells_jsonl_holds_one_line_per_attempt_with_the_documented_fields(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, run_id="r1")
    run.cells.append(record("tcp-rx-1024", "landline", seconds=Seconds(12.5, 1.25, 3.5), programmed=True))
    lines = (tmp_path / "r1" / "cells.jsonl").read_text().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    for key in (
        "variant",
        "path",
        "attempt",
        "outcome",
        "verdict",
        "category",
        "last_state",
        "error",
        "seconds",
        "programmed",
        "evidence",
    ):
        assert key in data
    assert data["seconds"] == {"program": 12.5, "path": 1.25, "reset_to_verdict": 3.5, "settle": 0.0}
    assert (tmp_path / "latest").resolve() == (tmp_path / "r1").resolve()


def test_a_torn_last_line_of_a_killed_run_is_ignored_and_the_rest_is_read(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, run_id="r1")
    run.cells.append(record("a", "landline"))
    with run.cells.path.open("a") as file:
        file.write('{"variant": "a", "path": "sat')
    assert [r.variant for r in read_cells(run.cells.path)] == ["a"]


def test_the_table_has_variants_as_rows_and_paths_as_columns_with_verdict_and_time() -> None:
    records = [
        record("tcp-rx-1024", "landline", seconds=Seconds(reset_to_verdict=2.4)),
        record(
            "tcp-rx-1024",
            "satellite",
            "xfailed",
            verdict="stalled",
            category="stall_want_read",
            last_state="SERVER_CHANGE_CIPHER_SPEC",
            seconds=Seconds(reset_to_verdict=14.0),
        ),
        record("mbedtls-in-4096", "landline", "error", verdict=None, error="UART lost"),
    ]
    text = render(matrix_table(records))
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") >= 3}
    assert "completed 2.4s" in rows["tcp-rx-1024"]
    assert "stalled at SERVER_CHANGE_CIPHER_SPEC 14.0s (expected)" in rows["tcp-rx-1024"]
    assert "error: UART lost" in rows["mbedtls-in-4096"]
    header = next(line for line in text.splitlines() if "variant" in line)
    assert header.index("landline") < header.index("satellite")


def test_nightly_summary_gives_pass_rate_and_flags_a_cell_that_went_both_ways() -> None:
    records = [
        record("v", "satellite", repeat=1),
        record("v", "satellite", "failed", verdict="stalled", category="stall_want_read", repeat=2),
        record("v", "satellite", repeat=3),
        record("v", "landline", repeat=1),
        record("v", "landline", "error", verdict=None, repeat=2, attempt=1),
        record("v", "landline", repeat=2, attempt=2),
    ]
    summary = {s.path: s for s in summarize(records)}
    assert summary["satellite"].pass_rate == 2 / 3
    assert summary["satellite"].flaky
    assert summary["landline"].pass_rate == 1.0  # the retry replaced the infrastructure error
    assert not summary["landline"].flaky


def test_gate_is_releasable_only_when_every_repeat_on_every_path_completed() -> None:
    records = [record("fix", p, repeat=r) for p in ("landline", "satellite") for r in (1, 2)]
    report = judge("fix", ["landline", "satellite"], 2, records, bench="sim", image_sha256="ab" * 32)
    assert (report.verdict, report.exit_code) == ("releasable", 0)
    assert report.paths["satellite"].completed == 2


def test_gate_says_not_releasable_when_the_firmware_fails_once_even_with_bench_errors() -> None:
    records = [
        record("v", "landline", repeat=1),
        record("v", "landline", "error", verdict=None, repeat=2, error="router unreachable"),
        record(
            "v", "satellite", "failed", verdict="stalled", last_state="SERVER_CHANGE_CIPHER_SPEC", repeat=1
        ),
        record("v", "satellite", repeat=2),
    ]
    report = judge("v", ["landline", "satellite"], 2, records, bench="sim", image_sha256=None)
    assert (report.verdict, report.exit_code) == ("not releasable", 1)
    assert report.reasons[0] == "satellite: the firmware failed 1 of 2 (stalled at SERVER_CHANGE_CIPHER_SPEC)"


def test_gate_cannot_judge_a_path_the_bench_could_not_run(tmp_path: Path) -> None:
    records = [
        record("v", "landline", repeat=1),
        record("v", "satellite", "error", verdict=None, repeat=1, error="programmer: tool not found"),
    ]
    report = judge("v", ["landline", "satellite"], 1, records, bench="sim", image_sha256=None)
    assert (report.verdict, report.exit_code) == ("not judged", 3)
    assert report.reasons == [
        "satellite: 1 of 1 attempts could not be judged (bench problem) — programmer: tool not found"
    ]
    data = json.loads(report.write(tmp_path / "gate.json").read_text())
    assert data["verdict"] == "not judged" and data["exit_code"] == 3 and data["bench"] == "sim"


def test_timeline_chart_draws_the_failing_attempt_beside_the_passing_one(tmp_path: Path) -> None:
    failing = TimelineSeries(
        "tcp-rx-1024-satellite",
        states=[(0.0, 0, "HELLO_REQUEST"), (0.7, 2, "SERVER_HELLO"), (2.0, 12, "SERVER_CHANGE_CIPHER_SPEC")],
        reads=[(0.7, 5), (0.8, 1393), (0.9, 2)],
        verdict="stalled",
        end=12.0,
    )
    passing = TimelineSeries("tcp-rx-1024-landline", states=[(0.0, 0, "HELLO_REQUEST"), (0.3, 15, "WRAPUP")])
    out = plot_timeline([failing, passing], tmp_path / "timeline.png", title="tcp-rx-1024")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_cells_jsonl_line_of_an_older_rig_reads_as_before(tmp_path: Path) -> None:
    # As written before records carried image_sha256 and rig_version: a bench problem had verdict null.
    old = {
        "variant": "tcp-rx-1024",
        "path": "satellite",
        "attempt": 2,
        "outcome": "error",
        "verdict": None,
        "category": None,
        "last_state": None,
        "error": "router unreachable",
        "seconds": {"program": 0.0, "path": 0.0, "reset_to_verdict": 0.0},
        "programmed": False,
        "evidence": "results/r1/tcp-rx-1024-satellite/2",
        "repeat": 1,
        "ciphersuite": None,
        "summary": "bench problem: router unreachable",
        "started": 1700000000.0,
        "a_field_of_some_later_rig": 1,
    }
    path = tmp_path / "cells.jsonl"
    path.write_text(json.dumps(old) + "\n")
    (record,) = read_cells(path)
    assert (record.cell, record.outcome, record.verdict, record.error) == (
        "tcp-rx-1024-satellite",
        "error",
        None,
        "router unreachable",
    )
    assert (record.image_sha256, record.rig_version, record.seconds.settle) == (None, None, 0.0)
    assert "error: router unreachable" in render(matrix_table([record]))


def test_a_record_holds_only_the_documented_verdicts_and_outcomes() -> None:
    with pytest.raises(ValidationError, match="verdict"):
        record("v", "landline", verdict="passed")
    with pytest.raises(ValidationError, match="outcome"):
        record("v", "landline", outcome="skipped")
    live = record("v", "landline", outcome="failed", verdict="stalled")
    with pytest.raises(ValidationError, match="verdict"):
        live.verdict = "stuck"  # type: ignore[assignment]


def test_a_line_that_is_no_attempt_record_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cells.jsonl"
    path.write_text(json.dumps(record("v", "landline").to_json()) + "\n" + '{"variant": "v"}\n')
    with pytest.raises(ConfigError, match=r"cells\.jsonl:2: not an attempt record: path: Field required"):
        read_cells(path)


def test_diagnosis_json_is_the_record_with_the_cell_and_the_full_diagnosis() -> None:
    live = record("v", "satellite", verdict="stalled", category="stall_want_read", image_sha256="ab" * 32)
    live.diagnosis = {"outcome": "stalled", "last_state": {"number": 12}}
    view = live.evidence_json()
    assert view["cell"] == "v-satellite" and view["diagnosis"] == live.diagnosis
    assert view["image_sha256"] == "ab" * 32
    assert "diagnosis" not in live.to_json()  # cells.jsonl stays one short line per attempt


def test_a_failed_record_raises_the_handshake_failure_of_its_category() -> None:
    failed = record("v", "satellite", "failed", verdict="stalled", category="stall_want_read", summary="s")
    with pytest.raises(HandshakeFailed.of("stall_want_read"), match=r"^s$"):
        failed.raise_for_failure()
    assert HandshakeFailed.of("stall_want_read") is HandshakeFailed.of("stall_want_read")
    assert not issubclass(HandshakeFailed.of("stall_want_read"), HandshakeFailed.of("timeout"))
    record("v", "landline").raise_for_failure()  # completed: nothing raised


def test_a_pool_run_shows_where_each_variant_ran_and_a_variant_programmed_twice_on_a_bench() -> None:
    records = [
        record("tcp-rx-1024", "landline", bench="pool-0", programmed=True, started=1.0),
        record("tcp-rx-1024", "satellite", "xfailed", verdict="stalled", bench="pool-0", started=2.0),
        record("tcp-rx-1460", "landline", bench="pool-1", programmed=True, started=1.0),
        record("tcp-rx-1460", "satellite", bench="pool-1", programmed=True, started=2.0),
        record(
            "tcp-rx-1024", "satellite", "failed", bench="pool-0", programmed=True, forensic=True, started=3.0
        ),
        # tcp-rx-1024's own image back on pool-0 after its forensic image: not a second programming
        record(
            "tcp-rx-1024",
            "satellite",
            "xfailed",
            verdict="stalled",
            bench="pool-0",
            programmed=True,
            started=4.0,
        ),
    ]
    text = render(matrix_table(records))
    header = next(line for line in text.splitlines() if "variant" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]] == ["variant", "bench", "landline", "satellite"]
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip() for line in text.splitlines() if "│" in line
    }
    assert rows == {"tcp-rx-1024": "pool-0", "tcp-rx-1460": "pool-1"}
    assert programmed_per_bench(records) == [
        "bench pool-0: 1 variant(s), 1 programmed, each at most once (and 1 forensic image(s), 1 put back after one)",
        "bench pool-1: 1 variant(s), 2 programmed — programmed more than once: tcp-rx-1460 ×2",
    ]
    # One bench: no bench column.
    single = render(matrix_table([record("tcp-rx-1024", "landline", bench="sim")]))
    assert "bench" not in next(line for line in single.splitlines() if "variant" in line)


def test_two_processes_numbering_the_same_cell_get_distinct_attempt_folders(tmp_path: Path) -> None:
    first, second = RunFolder(tmp_path, run_id="r1"), RunFolder(tmp_path, run_id="r1")
    assert first.attempt_dir("v", "landline", 1) == (1, tmp_path / "r1" / "v-landline" / "1")
    assert second.attempt_dir("v", "landline", 1) == (2, tmp_path / "r1" / "v-landline" / "2")
