"""The files a run writes once, at its end: `summary.json`, `run.json`, its rows in the history store,
and allure's run-level files (`rig.report.allure_results`: environment, categories, executor, the
overview, expected failures as known ones).

One function, `finish_run`, so that a run split over several processes writes them once, from the
process that saw every attempt. Everything is computed from the run's `cells.jsonl`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rig.errors import ConfigError
from rig.report.allure_results import finish_allure_results
from rig.report.evidence import RunFolder, write_json
from rig.report.history import RunInfo, record_run, run_count
from rig.report.records import AttemptRecord
from rig.report.table import summarize


def summary_json(records: list[AttemptRecord]) -> dict[str, Any]:
    """`summary.json`: every cell's attempts, pass rate, flakiness, verdicts and mean time."""
    cells = [
        {
            "variant": s.variant,
            "path": s.path,
            "attempts": s.attempts,
            "as_expected": s.as_expected,
            "errors": s.errors,
            "pass_rate": s.pass_rate,
            "flaky": s.flaky,
            "verdicts": list(s.verdicts),
            "mean_seconds": s.mean_seconds,
        }
        for s in summarize(records)
    ]
    return {"cells": cells, "flaky": [c for c in cells if c["flaky"]]}


def finish_run(
    run: RunFolder, about: dict[str, Any], info: dict[str, Any], *, allure_dir: Path | None = None
) -> list[str]:
    """Write the run's end files; `about`: bench and rig (also allure's environment), `info`: the rest of
    `run.json` (exit status, options).

    Returns the problems to show the user (a history store that cannot be written): the run's own files
    are written whatever the history store's state.
    """
    records = run.cells.read()
    write_json(run.root / "summary.json", summary_json(records))
    run.write_run_info({**about, **info, "attempts": len(records)})
    problems: list[str] = []
    build_order = None
    if records:  # a run stopped before its first cell has nothing to compare with other runs
        try:
            record_run(
                run.results,
                RunInfo(
                    run_id=run.run_id,
                    bench=about.get("bench_name"),
                    bench_kind=about.get("bench_kind"),
                    rig_version=about.get("rig_version"),
                    exit_status=info.get("exit_status"),
                ),
                records,
            )
            build_order = run_count(run.results)
        except ConfigError as exc:
            problems += [f"this run is not in the history: {line}" for line in exc.lines()]
    if allure_dir is not None:
        finish_allure_results(allure_dir, records, about=about, run_id=run.run_id, build_order=build_order)
    return problems
