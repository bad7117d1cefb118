"""`rig history`: the cells over the last runs of a results folder, from its history store.

Thin edge over `rig.report.history`: each cell's pass rate over the last N runs (attempts that went as
its variant file expects, bench problems apart), whether it is flaky, and the first run in which its
result changed, with what changed with it (image digest, bench). Exit 0, or 2 when the store is missing,
broken, or does not know the cell asked for.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from rig.report.history import CellHistory, cell_histories, history_path, run_count

console = Console(highlight=False, soft_wrap=True)


def history_lines(histories: list[CellHistory]) -> list[str]:
    """Rich markup, one block per cell: its rate, its results, flaky or not, its first change."""
    lines = []
    for h in histories:
        rate = "n/a" if h.pass_rate is None else f"{h.as_expected}/{h.judged} ({h.pass_rate:.0%})"
        errors = f", {h.errors} bench error(s)" if h.errors else ""
        flaky = "  [bold red]FLAKY[/]" if h.flaky else ""
        style = "green" if h.pass_rate == 1.0 else "bold red"
        lines.append(
            f"[bold]{h.cell}[/]: {h.attempts} attempt(s) in {len(h.runs)} run(s), "
            f"[{style}]pass rate {rate}[/]{errors}{flaky}"
        )
        results = " | ".join(f"{r.run_id} {escape(r.result)}" for r in h.runs)
        lines.append(f"  runs: {results}")
        change = h.first_change
        if change is not None:
            lines.append(f"  first change: {escape(change.text())}")
    return lines


@click.command("history")
@click.option(
    "--results",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("results"),
    show_default=True,
    help="the results folder whose history.sqlite to read",
)
@click.option("--last", type=int, default=10, show_default=True, metavar="N", help="the last N runs")
@click.option("--cell", default=None, metavar="CELL", help="only this cell (e.g. tcp-rx-1024-satellite)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (cells with their runs)")
def history(results: Path, last: int, cell: str | None, as_json: bool) -> None:
    """Each cell's pass rate over the last N runs, flaky cells, and the run where a cell changed.

    \b
    Every HIL run (pytest, make bench, make nightly) adds its attempts to RESULTS/history.sqlite.
    A cell is flaky when its judged attempts disagree; "first change" names the first run whose
    result differs from the run before, with the image digest or bench that changed with it.
    """
    histories = cell_histories(results, last=last, cell=cell)
    runs = run_count(results)
    if as_json:
        document = {
            "store": str(history_path(results)),
            "runs_in_store": runs,
            "last": last,
            "cells": [h.to_json() for h in histories],
        }
        click.echo(json.dumps(document, indent=2))
        return
    window = sorted({r.run_id: r.started for h in histories for r in h.runs}.items(), key=lambda x: x[1])
    since = f", since {datetime.fromtimestamp(window[0][1]):%Y-%m-%d %H:%M}" if window else ""
    console.print(
        f"history: {history_path(results)} — the last {min(last, runs)} of {runs} run(s){since}", markup=False
    )
    if not histories:
        console.print("no attempts recorded in these runs")
        return
    for line in history_lines(histories):
        console.print(line)
    flaky = [h.cell for h in histories if h.flaky]
    if flaky:
        console.print(f"[bold red]flaky cells:[/] {', '.join(flaky)}")


commands = [history]
