"""The terminal summary of a run: the matrix table (variants × paths) and the per-cell pass rates.

Both are computed from attempt records only (`cells.jsonl`), so `rig`, the pytest plugin and a
post-mortem on a killed run's folder print the same thing. A cell's text is its verdict and its time
(reset to verdict); with repeats, how many attempts went as expected. A cell is *flaky* when its
attempts (infrastructure errors aside) did not all go the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.table import Table

from rig.report.records import AttemptRecord, Outcome, final_attempts

AS_EXPECTED = ("passed", "xfailed")


@dataclass(frozen=True)
class CellSummary:
    """How one cell went over all its repeats (the final attempt of each)."""

    variant: str
    path: str
    attempts: int
    as_expected: int
    errors: int
    outcomes: tuple[Outcome | None, ...]  # None: an attempt whose record was never judged
    verdicts: tuple[str, ...]
    mean_seconds: float | None

    @property
    def judged(self) -> int:
        return self.attempts - self.errors

    @property
    def pass_rate(self) -> float | None:
        """Share of judged attempts that went as expected; None when infrastructure judged none."""
        return None if self.judged == 0 else self.as_expected / self.judged

    @property
    def flaky(self) -> bool:
        """Judged attempts disagree: some went as expected and some did not, or the verdicts differ."""
        judged = [o for o in self.outcomes if o != "error"]
        mixed_outcome = 0 < sum(o in AS_EXPECTED for o in judged) < len(judged)
        return mixed_outcome or len(set(self.verdicts)) > 1


def summarize(records: Iterable[AttemptRecord]) -> list[CellSummary]:
    """One summary per cell, in the order cells first appear in the records."""
    by_cell: dict[tuple[str, str], list[AttemptRecord]] = {}
    for record in final_attempts(list(records)):
        by_cell.setdefault((record.variant, record.path), []).append(record)
    summaries = []
    for (variant, path), finals in by_cell.items():
        judged = [r for r in finals if r.outcome != "error"]
        times = [r.seconds.reset_to_verdict for r in judged if r.seconds.reset_to_verdict > 0]
        summaries.append(
            CellSummary(
                variant=variant,
                path=path,
                attempts=len(finals),
                as_expected=sum(r.outcome in AS_EXPECTED for r in finals),
                errors=sum(r.outcome == "error" for r in finals),
                outcomes=tuple(r.outcome for r in finals),
                verdicts=tuple(verdict_text(r) for r in judged),
                mean_seconds=sum(times) / len(times) if times else None,
            )
        )
    return summaries


def verdict_text(record: AttemptRecord) -> str:
    """`completed`, `stalled at SERVER_CHANGE_CIPHER_SPEC`, `failed record_or_buffer_size`, `error`."""
    if record.outcome == "error":
        return "error"
    verdict = record.verdict or "?"
    if verdict == "stalled" and record.last_state:
        return f"stalled at {record.last_state}"
    if verdict in ("failed", "incomplete", "timeout") and record.category:
        return f"{verdict} {record.category}"
    return verdict


_STYLE = {
    "passed": "green",
    "xfailed": "yellow",
    "failed": "bold red",
    "xpassed": "bold red",
    "error": "magenta",
}


def cell_text(summary: CellSummary, records: list[AttemptRecord]) -> str:
    """Rich markup for one table cell."""
    finals = [r for r in final_attempts(records) if (r.variant, r.path) == (summary.variant, summary.path)]
    last = max(finals, key=lambda r: (r.repeat, r.attempt))
    style = _STYLE.get(last.outcome or "", "")
    if summary.attempts == 1:
        text = verdict_text(last)
        if last.outcome == "error" and last.verdict == "not run":
            part = f"{last.path} uplink" if last.part == "uplink" else last.part or "bench"
            text = f"not run: the {part} had failed twice in a row"
        elif last.outcome == "error":
            part = f" ({last.part})" if last.part else ""
            text = f"error{part}: {last.error or 'bench problem'}"
        seconds = last.seconds.reset_to_verdict
        timing = f" {seconds:.1f}s" if seconds > 0 and last.outcome != "error" else ""
        mark = {"xfailed": " (expected)", "xpassed": " (UNEXPECTED PASS)", "failed": " (UNEXPECTED)"}.get(
            last.outcome or "", ""
        )
        return f"[{style}]{_escape(text)}{timing}{mark}[/]"
    rate = summary.pass_rate
    rate_text = "n/a" if rate is None else f"{summary.as_expected}/{summary.judged}"
    verdicts = sorted(set(summary.verdicts))
    mean = f" {summary.mean_seconds:.1f}s" if summary.mean_seconds else ""
    flaky = " [bold red]FLAKY[/]" if summary.flaky else ""
    errors = f" [magenta]{summary.errors} error(s)[/]" if summary.errors else ""
    style = "green" if rate == 1.0 else "bold red"
    return f"[{style}]{rate_text} as expected[/] {_escape(', '.join(verdicts))}{mean}{flaky}{errors}"


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def matrix_table(records: list[AttemptRecord], title: str = "HIL matrix") -> Table:
    """Variants as rows, paths as columns, each cell's verdict and time (or pass rate with repeats)."""
    summaries = summarize(records)
    variants = list(dict.fromkeys(s.variant for s in sorted(summaries, key=lambda s: s.variant)))
    paths = list(dict.fromkeys(s.path for s in summaries))
    benches = benches_of(records)
    table = Table(title=title, show_lines=False)
    table.add_column("variant", style="bold")
    if len(set().union(*benches.values())) > 1:  # a pool: where each variant ran
        table.add_column("bench")
    else:
        benches = {}
    for path in paths:
        table.add_column(path)
    index = {(s.variant, s.path): s for s in summaries}
    for variant in variants:
        row = [variant] + ([", ".join(benches[variant])] if benches else [])
        for path in paths:
            summary = index.get((variant, path))
            row.append("—" if summary is None else cell_text(summary, records))
        table.add_row(*row)
    return table


def benches_of(records: list[AttemptRecord]) -> dict[str, list[str]]:
    """variant → the benches its attempts ran on, in order of first use."""
    benches: dict[str, list[str]] = {}
    for record in records:
        names = benches.setdefault(record.variant, [])
        if record.bench and record.bench not in names:
            names.append(record.bench)
    return benches


def programmed_per_bench(records: list[AttemptRecord]) -> list[str]:
    """One line per bench of a pool run: the variants it ran and how often it programmed each.

    Cells are scheduled by variant, so a bench programs each of its variants once; a variant
    programmed again on the same bench (a retry after a bench problem, or `--dist load`) is named. A
    forensic image is another image, counted apart, and so is putting the variant's own image back after
    it (the variant's next cell on that bench).
    """
    by_bench: dict[str, dict[str, int]] = {}
    forensic: dict[str, int] = {}
    restored: dict[str, int] = {}
    last_forensic: dict[str, str] = {}  # bench → the variant whose forensic image it holds
    for record in sorted(records, key=lambda r: r.started):
        bench = record.bench or "?"
        counts = by_bench.setdefault(bench, {})
        if record.forensic:
            forensic[bench] = forensic.get(bench, 0) + int(record.programmed)
            last_forensic[bench] = record.variant
            continue
        if record.programmed and last_forensic.pop(bench, None) == record.variant:
            restored[bench] = restored.get(bench, 0) + 1
            counts.setdefault(record.variant, 0)
            continue
        counts[record.variant] = counts.get(record.variant, 0) + int(record.programmed)
    lines = []
    for bench, counts in by_bench.items():
        again = [f"{variant} ×{n}" for variant, n in counts.items() if n > 1]
        line = f"bench {bench}: {len(counts)} variant(s), {sum(counts.values())} programmed"
        line += f" — programmed more than once: {', '.join(again)}" if again else ", each at most once"
        if forensic.get(bench):
            line += f" (and {forensic[bench]} forensic image(s)"
            line += f", {restored[bench]} put back after one)" if restored.get(bench) else ")"
        lines.append(line)
    return lines


def flaky_cells(records: list[AttemptRecord]) -> list[CellSummary]:
    return [s for s in summarize(records) if s.flaky]
