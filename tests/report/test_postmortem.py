"""Post-mortem: a run's table and summaries from its folder (`rig report`), and the run's own events."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from rig.cli import main
from rig.events import EventLog
from rig.report import AttemptRecord, RunFolder
from rig.report.evidence import EVENTS
from rig.report.postmortem import read_run
from rig.report.run_end import finish_run
from rig.report.run_events import RunEvents

STALL_SUMMARY = "Stalled in client state 12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC) after sending Finished"


def attempt(variant: str, path: str, outcome: str, **fields: object) -> AttemptRecord:
    values: dict[str, object] = {"verdict": "completed", "attempt": 1, "repeat": 1, "bench": "sim"}
    values.update(fields)
    values.setdefault("simulated", True)
    return AttemptRecord(variant=variant, path=path, outcome=outcome, **values)  # type: ignore[arg-type]


def report(folder: Path) -> list[str]:
    result = CliRunner().invoke(main, ["report", str(folder)], terminal_width=240)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_a_killed_run_is_reported_from_what_it_finished_and_its_cut_line_is_named(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, run_id="20261202-010203-77")
    run.cells.append(attempt("tcp-rx-1024", "landline", "passed"))
    stalled = attempt(
        "tcp-rx-1024",
        "satellite",
        "xfailed",
        verdict="stalled",
        last_state="SERVER_CHANGE_CIPHER_SPEC",
        summary=STALL_SUMMARY,
        evidence="e/1",
    )
    run.cells.append(stalled)
    with run.cells.path.open("a") as file:
        file.write('{"variant": "tcp-rx-1460", "path": "land')  # the kill came mid-write
    lines = report(run.root)
    assert lines[0] == f"run 20261202-010203-77: {run.root}"
    assert lines[1] == (
        "this run did not reach its end (no summary.json: it was killed, or is still running); "
        "what follows is the 2 attempt(s) its cells.jsonl holds"
    )
    assert lines[2] == (
        "cells.jsonl line 3 is cut short (40 bytes: the run was killed while writing it); "
        "that attempt is not in the table"
    )
    text = "\n".join(lines)
    assert "HIL matrix on bench `sim` (run 20261202-010203-77, SIMULATED bench)" in text
    row = next(line for line in lines if line.startswith("│ tcp-rx-1024"))
    assert "completed" in row and "stalled at SERVER_CHANGE_CIPHER_SPEC (expected)" in row
    assert f"tcp-rx-1024-satellite (xfailed): {STALL_SUMMARY}" in lines
    assert "  evidence: e/1" in lines
    assert "tcp-rx-1460" not in text


def test_a_finished_run_reports_its_exit_status_and_the_run_events_that_matter(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, run_id="r1")
    recording = RunEvents(run.root / EVENTS)
    events = EventLog()
    try:
        events.emit("lease_acquired", "lock", bench="sim")
        previous = {"bench": "sim", "path": "satellite", "pid": 8857, "host": "vm"}
        events.emit("bench_left_dirty", "router", previous=previous, baseline="landline")
        events.emit("preflight", "bench", part="router", ok=False, detail="no answer")
        events.emit("preflight", "bench", part="uart", ok=True, detail="open")
        events.emit("preflight", "bench", part="cloud", ok=True, detail="watching")
    finally:
        recording.close()
    run.cells.append(attempt("tcp-rx-1460", "landline", "passed"))
    finish_run(run, {"bench_name": "sim", "simulated": True, "rig_version": "0.1.0"}, {"exit_status": 0})
    lines = report(tmp_path)  # a results folder: its latest run
    assert lines[0] == f"run r1: {run.root.resolve()}"
    assert not any("did not reach its end" in line for line in lines)
    assert "exit status 0, 1 attempt(s), 0 bench problem(s); rig 0.1.0" in lines
    assert (
        f"run events (5, {run.root.resolve() / EVENTS}): lease_acquired, bench_left_dirty, preflight ×3"
        in lines
    )
    assert (
        "  bench_left_dirty: the bench was on satellite (left by pid 8857 on vm), restored to landline"
        in lines
    )
    assert "  preflight: part=router, ok=False, detail=no answer" in lines


def test_the_run_events_file_takes_only_events_no_attempt_took(tmp_path: Path) -> None:
    events = EventLog()
    recording = RunEvents(tmp_path / "run" / EVENTS)
    try:
        events.emit("bench_ready", "bench", bench="sim")
        events.attach(tmp_path / "attempt" / EVENTS)
        events.emit("reset", "ipecmd", via="programmer")
        events.attach(None)
        events.emit("path_restored", "router", path="landline")
    finally:
        recording.close()
    events.emit("after_the_run", "bench")
    run_kinds = [json.loads(line)["kind"] for line in (tmp_path / "run" / EVENTS).read_text().splitlines()]
    attempt_kinds = [
        json.loads(line)["kind"] for line in (tmp_path / "attempt" / EVENTS).read_text().splitlines()
    ]
    assert (run_kinds, attempt_kinds) == (["bench_ready", "path_restored"], ["reset"])
    assert logging.getLogger("rig.events").level == logging.NOTSET  # put back as it was


def test_every_event_goes_to_python_logging_under_rig_events(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rig")
    EventLog().emit("path_selected", "router", path="satellite", seconds=1.0)
    (record,) = [r for r in caplog.records if r.name.startswith("rig.events")]
    assert (record.name, record.levelname, record.getMessage()) == (
        "rig.events.router",
        "INFO",
        "path_selected path=satellite seconds=1.0",
    )


def test_a_folder_that_is_no_run_is_an_input_problem(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run's folder (no cells.jsonl)" in result.output
    result = CliRunner().invoke(main, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'missing'}: no such folder" in " ".join(result.output.split())


def test_the_view_of_a_run_read_back_has_its_records_and_summary(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, run_id="r1")
    run.cells.append(attempt("tcp-rx-512", "satellite", "failed", verdict="failed"))
    finish_run(run, {"bench_name": "sim"}, {"exit_status": 1})
    view = read_run(run.root)
    assert (view.run_id, view.finished, view.torn, [r.cell for r in view.records]) == (
        "r1",
        True,
        None,
        ["tcp-rx-512-satellite"],
    )
    assert view.summary is not None and view.summary["cells"][0]["pass_rate"] == 0.0
