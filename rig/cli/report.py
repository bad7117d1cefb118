"""`rig report RUN_FOLDER`: a run's table and summaries again, from its folder — also a killed run's.

Thin edge over `rig.report.postmortem`: the matrix table the run printed at its end (from `cells.jsonl`),
the flaky cells, each attempt that did not pass with its diagnosis' summary, and the run's own events
(bring-up, lease, preflight, restore), with the notable ones (a bench left dirty, a broken lease, a failed
check) spelled out. A run that did not reach its end (no `summary.json`) is said to be one, and a last
line of `cells.jsonl` cut short by the kill is named. Exit 0, or 2 when the folder is not a run's.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from rig.report.postmortem import RunView, event_line, read_run
from rig.report.records import final_attempts
from rig.report.table import flaky_cells, matrix_table, verdict_text

console = Console(highlight=False, soft_wrap=True)


def print_run(view: RunView, out: Console) -> None:
    """The post-mortem of one run on `out`."""
    info = view.info or {}
    bench = info.get("bench_name") or next((r.bench for r in view.records if r.bench), None) or "?"
    simulated = info.get("simulated")
    if simulated is None:
        simulated = any(r.simulated for r in view.records)
    kind = ", SIMULATED bench" if simulated else ""
    out.print(f"run {view.run_id}: {view.folder}", markup=False)
    if not view.finished:
        out.print(
            "[bold yellow]this run did not reach its end[/] (no summary.json: it was killed, or is still "
            f"running); what follows is the {len(view.records)} attempt(s) its cells.jsonl holds"
        )
    if view.torn is not None:
        out.print(
            f"[bold yellow]cells.jsonl line {view.torn.number} is cut short[/] ({view.torn.length} bytes: the "
            "run was killed while writing it); that attempt is not in the table"
        )
    if not view.records:
        out.print("no attempt ended in this run")
    else:
        title = f"HIL matrix on bench `{bench}` (run {view.run_id}{kind})"
        out.print(matrix_table(view.records, title=title))
        if simulated:
            out.print("[yellow]simulated bench: these verdicts are not a release verdict[/]")
        flaky = flaky_cells(view.records)
        if flaky:
            out.print(f"[bold red]flaky cells:[/] {', '.join(f'{s.variant}-{s.path}' for s in flaky)}")
        for record in sorted(final_attempts(view.records), key=lambda r: (r.cell, r.repeat)):
            if record.outcome == "passed":
                continue
            text = record.summary or record.error or verdict_text(record)
            repeat = f" repeat {record.repeat}" if record.repeat > 1 else ""
            out.print(
                f"[bold]{record.cell}[/]{repeat} ({record.outcome}): {escape(text)}\n  evidence: {escape(record.evidence)}"
            )
    if info:
        status = info.get("exit_status")
        out.print(
            f"exit status {status}, {info.get('attempts', len(view.records))} attempt(s), "
            f"{info.get('bench_problems', 0)} bench problem(s); rig {info.get('rig_version', '?')}",
            markup=False,
        )
    if view.events:
        counts = ", ".join(f"{kind} ×{n}" if n > 1 else kind for kind, n in view.event_counts.items())
        out.print(f"run events ({len(view.events)}, {view.folder / 'events.jsonl'}): {counts}", markup=False)
        for event in view.notable_events():
            out.print(f"  [bold yellow]{escape(event_line(event))}[/]")


@click.command("report")
@click.argument("run", type=click.Path(path_type=Path), metavar="RUN_FOLDER")
def report(run: Path) -> None:
    """A run's table and summaries again, from its folder: RESULTS/<run-id> (or RESULTS/latest).

    \b
    Works on a killed run too: the table is built from the attempts its cells.jsonl holds, and it says
    that the run did not reach its end and whether the last line was cut short.
    """
    print_run(read_run(run), console)


commands = [report]
