"""The history store: runs written at their end into a real SQLite file, read back as cells over runs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from rig.cli import main
from rig.errors import ConfigError
from rig.report import AttemptRecord, RunFolder
from rig.report.history import RunInfo, cell_histories, history_path, record_run
from rig.report.run_end import finish_run

IMAGE_A = "a" * 64
IMAGE_B = "b" * 64
STALLED = {"verdict": "stalled", "category": "stall_want_read", "last_state": "SERVER_CHANGE_CIPHER_SPEC"}


def attempt(variant: str, path: str, outcome: str, image: str = IMAGE_A, **fields: object) -> AttemptRecord:
    values: dict[str, object] = {"verdict": "completed", "attempt": 1, "repeat": 1, "image_sha256": image}
    values.update(fields)
    return AttemptRecord(variant=variant, path=path, outcome=outcome, **values)  # type: ignore[arg-type]


def night(results: Path, run_id: str, *records: AttemptRecord, bench: str = "lab-a", started: float) -> None:
    """One run as the plugin ends it: cells.jsonl written as attempts end, then the run's end files."""
    run = RunFolder(results, run_id=run_id)
    for record in records:
        record.started = started
        record.evidence = str(run.root / record.cell / str(record.attempt))
        run.cells.append(record)
    about = {"bench_name": bench, "bench_kind": "lab", "rig_version": "0.1.0"}
    assert finish_run(run, about, {"exit_status": 0}) == []


def test_two_runs_give_each_cell_two_attempts_and_its_pass_rate(tmp_path: Path) -> None:
    for number in (1, 2):
        night(
            tmp_path,
            f"r{number}",
            attempt("tcp-rx-1024", "landline", "passed"),
            attempt("tcp-rx-1024", "satellite", "xfailed", **STALLED),
            started=1000.0 * number,
        )
    histories = {h.cell: h for h in cell_histories(tmp_path)}
    assert set(histories) == {"tcp-rx-1024-landline", "tcp-rx-1024-satellite"}
    satellite = histories["tcp-rx-1024-satellite"]
    assert (satellite.attempts, satellite.as_expected, satellite.pass_rate) == (2, 2, 1.0)
    assert [r.run_id for r in satellite.runs] == ["r1", "r2"]
    assert satellite.runs[0].result == "stalled at SERVER_CHANGE_CIPHER_SPEC"
    assert not satellite.flaky and satellite.first_change is None


def test_a_cell_that_changed_names_the_first_run_and_the_image_that_changed_with_it(tmp_path: Path) -> None:
    night(tmp_path, "r1", attempt("tcp-rx-1460", "satellite", "passed"), started=1000.0)
    night(tmp_path, "r2", attempt("tcp-rx-1460", "satellite", "passed"), started=2000.0)
    stalled = attempt("tcp-rx-1460", "satellite", "failed", IMAGE_B, **STALLED)
    night(tmp_path, "r3", stalled, started=3000.0, bench="lab-b")
    (history,) = cell_histories(tmp_path)
    assert history.flaky
    assert history.pass_rate == pytest.approx(2 / 3)
    change = history.first_change
    assert change is not None
    assert (change.run_id, change.previous_run) == ("r3", "r2")
    assert (change.before, change.after) == ("completed", "stalled at SERVER_CHANGE_CIPHER_SPEC")
    assert change.what == {"image": (IMAGE_A, IMAGE_B), "bench": ("lab-a", "lab-b")}
    assert change.text() == (
        "run r3: completed → stalled at SERVER_CHANGE_CIPHER_SPEC "
        "(image aaaaaaaaaaaa → bbbbbbbbbbbb; bench lab-a → lab-b)"
    )


def test_last_n_keeps_the_newest_runs_and_a_retried_bench_error_counts_once(tmp_path: Path) -> None:
    night(tmp_path, "r1", attempt("tcp-rx-512", "landline", "failed", verdict="failed"), started=1000.0)
    error = attempt("tcp-rx-512", "landline", "error", verdict=None, error="UART lost")
    retry = attempt("tcp-rx-512", "landline", "passed", attempt=2)
    night(tmp_path, "r2", error, retry, started=2000.0)
    night(tmp_path, "r3", attempt("tcp-rx-512", "landline", "passed"), started=3000.0)
    (history,) = cell_histories(tmp_path, last=2)
    assert [r.run_id for r in history.runs] == ["r2", "r3"]
    assert (history.attempts, history.errors, history.pass_rate, history.flaky) == (2, 0, 1.0, False)
    with sqlite3.connect(history_path(tmp_path)) as db:
        rows = db.execute(
            "SELECT attempt, final FROM attempts WHERE run_id = 'r2' ORDER BY attempt"
        ).fetchall()
    assert rows == [(1, 0), (2, 1)]  # the error is kept, the retry stands for the repeat


def test_recording_a_run_again_replaces_its_rows(tmp_path: Path) -> None:
    info = RunInfo("r1", "lab-a", "lab")
    record_run(tmp_path, info, [attempt("a", "landline", "failed", verdict="failed")])
    record_run(tmp_path, info, [attempt("a", "landline", "passed")])
    (history,) = cell_histories(tmp_path)
    assert (history.attempts, history.pass_rate) == (1, 1.0)


def test_a_missing_store_is_an_input_problem_naming_the_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["history", "--results", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path / 'history.sqlite'}: no history here" in " ".join(result.output.split())


def test_a_broken_store_is_an_input_problem_saying_so(tmp_path: Path) -> None:
    history_path(tmp_path).write_bytes(b"these are not the pages of a database\n" * 200)
    with pytest.raises(ConfigError, match=r"the history store is broken .* move it aside"):
        cell_histories(tmp_path)
    result = CliRunner().invoke(main, ["history", "--results", str(tmp_path)])
    assert result.exit_code == 2


def test_a_run_end_with_a_broken_store_still_writes_the_runs_files_and_says_why(tmp_path: Path) -> None:
    history_path(tmp_path).write_bytes(b"\x00garbage" * 1000)
    run = RunFolder(tmp_path, run_id="r1")
    run.cells.append(attempt("a", "landline", "passed"))
    problems = finish_run(run, {"bench_name": "lab-a"}, {"exit_status": 0})
    assert len(problems) == 1 and problems[0].startswith("this run is not in the history: ")
    assert json.loads((run.root / "summary.json").read_text())["cells"][0]["pass_rate"] == 1.0


def test_rig_history_prints_each_cell_its_rate_and_first_change(tmp_path: Path) -> None:
    night(tmp_path, "r1", attempt("tcp-rx-1460", "satellite", "passed"), started=1000.0)
    night(
        tmp_path,
        "r2",
        attempt("tcp-rx-1460", "satellite", "failed", IMAGE_B, **STALLED),
        attempt("tcp-rx-1460", "landline", "passed", IMAGE_B),
        started=2000.0,
    )
    result = CliRunner().invoke(
        main, ["history", "--results", str(tmp_path), "--last", "5"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"history: {tmp_path / 'history.sqlite'} — the last 2 of 2 run(s), since ")
    assert "tcp-rx-1460-landline: 1 attempt(s) in 1 run(s), pass rate 1/1 (100%)" in lines
    assert "tcp-rx-1460-satellite: 2 attempt(s) in 2 run(s), pass rate 1/2 (50%)  FLAKY" in lines
    assert "  runs: r1 completed | r2 stalled at SERVER_CHANGE_CIPHER_SPEC" in lines
    assert (
        "  first change: run r2: completed → stalled at SERVER_CHANGE_CIPHER_SPEC "
        "(image aaaaaaaaaaaa → bbbbbbbbbbbb)" in lines
    )
    assert lines[-1] == "flaky cells: tcp-rx-1460-satellite"


def test_rig_history_json_for_one_cell(tmp_path: Path) -> None:
    night(tmp_path, "r1", attempt("tcp-rx-1024", "satellite", "xfailed", **STALLED), started=1000.0)
    result = CliRunner().invoke(
        main, ["history", "--results", str(tmp_path), "--cell", "tcp-rx-1024-satellite", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    (cell,) = document["cells"]
    assert (document["runs_in_store"], cell["cell"], cell["attempts"], cell["pass_rate"]) == (
        1,
        "tcp-rx-1024-satellite",
        1,
        1.0,
    )
    assert cell["history"][0] == {
        "run_id": "r1",
        "started": 1000.0,
        "bench": "lab-a",
        "bench_kind": "lab",
        "outcomes": ["xfailed"],
        "result": "stalled at SERVER_CHANGE_CIPHER_SPEC",
        "images": [IMAGE_A],
    }


def test_rig_history_of_an_unknown_cell_lists_the_known_ones(tmp_path: Path) -> None:
    night(tmp_path, "r1", attempt("tcp-rx-1024", "satellite", "passed"), started=1000.0)
    result = CliRunner().invoke(
        main, ["history", "--results", str(tmp_path), "--cell", "tcp-rx-999-satellite"]
    )
    assert result.exit_code == 2
    assert "cells: tcp-rx-1024-satellite" in result.output
