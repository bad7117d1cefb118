"""The history of runs: every run's attempts in one SQLite store, `RESULTS/history.sqlite`, and what it says.

SQLite (the standard library's `sqlite3`), not a folder of JSON files: nights are compared by queries over
many runs (the last N runs of a cell, in order), several runs may end at once on one results folder (a
transaction keeps each run's rows whole, the database's lock serialises writers), and a run killed while
writing leaves the store as it was before. One file, nothing to install, readable by any SQLite tool.

A run's rows are written once, at its end (`record_run`), from its `cells.jsonl`; recording a run again
replaces its rows. The views (`cell_histories`) are computed from the rows: a cell's pass rate over the
last N runs, whether it is flaky, and the first run in which its result changed with what changed with it
(the image's digest, the bench).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from rig.errors import ConfigError
from rig.report.records import AttemptRecord, final_attempts
from rig.report.table import AS_EXPECTED, verdict_text

HISTORY_FILE = "history.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    started     REAL NOT NULL,   -- wall time of the run's first attempt (or of its end, without any)
    finished    REAL NOT NULL,
    bench       TEXT,            -- the bench file's name
    bench_kind  TEXT,            -- lab | simulated | …
    rig_version TEXT,
    exit_status INTEGER
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id       TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    cell         TEXT NOT NULL,
    variant      TEXT NOT NULL,
    path         TEXT NOT NULL,
    repeat       INTEGER NOT NULL,
    attempt      INTEGER NOT NULL,
    final        INTEGER NOT NULL, -- 1: the attempt that stands for its repeat (a retry replaces an error)
    started      REAL,
    outcome      TEXT,             -- passed | failed | error | xfailed | xpassed
    verdict      TEXT,             -- completed | failed | stalled | … as the judge said
    result       TEXT,             -- the table's text: `stalled at SERVER_CHANGE_CIPHER_SPEC`, `error`
    category     TEXT,
    state        TEXT,
    image_sha256 TEXT,
    evidence     TEXT,
    PRIMARY KEY (run_id, cell, repeat, attempt)
);
CREATE INDEX IF NOT EXISTS attempts_by_cell ON attempts (cell, run_id);
"""


def history_path(results: Path) -> Path:
    """The history store of a results folder."""
    return results / HISTORY_FILE


@dataclass(frozen=True)
class RunInfo:
    """What the history keeps of a run beside its attempts."""

    run_id: str
    bench: str | None
    bench_kind: str | None
    rig_version: str | None = None
    exit_status: int | None = None


@contextmanager
def _connect(path: Path, *, create: bool) -> Iterator[sqlite3.Connection]:
    """A connection to the store; a missing or unreadable store is a `ConfigError` naming the file."""
    if not create and not path.is_file():
        raise ConfigError(
            f"{path}: no history here — it is written at the end of every HIL run with `--results "
            f"{path.parent}`; run the matrix (pytest tests_hil --results {path.parent}) or give the results "
            "folder with --results"
        )
    try:
        with closing(sqlite3.connect(path, timeout=30.0)) as connection:
            connection.execute("PRAGMA foreign_keys = ON")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{path}: history of a newer rig (schema {version}, this rig reads {SCHEMA_VERSION}) — "
                    "upgrade the rig"
                )
            if create:
                with connection:
                    connection.executescript(_SCHEMA)
                    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version < SCHEMA_VERSION:
                raise ConfigError(f"{path}: not a rig history store (no schema in it)")
            yield connection
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            f"{path}: the history store is broken ({exc}) — move it aside; the next run starts a new one"
        ) from exc


def record_run(results: Path, run: RunInfo, records: Iterable[AttemptRecord]) -> Path:
    """Write one run and its attempts into `RESULTS/history.sqlite` (replacing the run's earlier rows)."""
    records = list(records)
    finals = {id(r) for r in final_attempts(records)}
    now = time.time()
    starts = [r.started for r in records if r.started > 0]
    path = history_path(results)
    results.mkdir(parents=True, exist_ok=True)
    with _connect(path, create=True) as connection, connection:
        connection.execute("DELETE FROM runs WHERE run_id = ?", (run.run_id,))
        connection.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                run.run_id,
                min(starts) if starts else now,
                now,
                run.bench,
                run.bench_kind,
                run.rig_version,
                run.exit_status,
            ),
        )
        connection.executemany(
            "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run.run_id,
                    r.cell,
                    r.variant,
                    r.path,
                    r.repeat,
                    r.attempt,
                    int(id(r) in finals),
                    r.started or None,
                    r.outcome,
                    r.verdict,
                    verdict_text(r),
                    r.category,
                    r.last_state,
                    r.image_sha256,
                    r.evidence,
                )
                for r in records
            ],
        )
    return path


@dataclass(frozen=True)
class CellRun:
    """One cell in one run: its final attempts, as the history has them."""

    run_id: str
    started: float
    bench: str | None
    bench_kind: str | None
    outcomes: tuple[str | None, ...]
    results: tuple[str, ...]  # each final attempt's text, `completed`, `stalled at …`, `error`
    images: tuple[str, ...]  # the image digests the attempts ran (normally one)

    @property
    def judged(self) -> list[str | None]:
        return [o for o in self.outcomes if o != "error"]

    @property
    def result(self) -> str:
        """The run's result for the cell: its judged results, or `error` when nothing was judged."""
        judged = sorted({r for r in self.results if r != "error"})
        return ", ".join(judged) if judged else "error"

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started": self.started,
            "bench": self.bench,
            "bench_kind": self.bench_kind,
            "outcomes": list(self.outcomes),
            "result": self.result,
            "images": list(self.images),
        }


@dataclass(frozen=True)
class Change:
    """The first run (in the window) whose result for a cell differs from the run before it."""

    run_id: str
    before: str
    after: str
    previous_run: str
    what: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # image, bench: (was, is)

    def text(self) -> str:
        changed = (
            "; ".join(f"{name} {_short(was)} → {_short(now)}" for name, (was, now) in self.what.items())
            or "same image and bench"
        )
        return f"run {self.run_id}: {self.before} → {self.after} ({changed})"

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "previous_run": self.previous_run,
            "before": self.before,
            "after": self.after,
            "changed": {name: {"was": was, "now": now} for name, (was, now) in self.what.items()},
        }


@dataclass(frozen=True)
class CellHistory:
    """A cell over the last runs that ran it, oldest first."""

    cell: str
    variant: str
    path: str
    runs: tuple[CellRun, ...]

    @property
    def attempts(self) -> int:
        return sum(len(r.outcomes) for r in self.runs)

    @property
    def judged(self) -> int:
        return sum(len(r.judged) for r in self.runs)

    @property
    def as_expected(self) -> int:
        return sum(o in AS_EXPECTED for r in self.runs for o in r.outcomes)

    @property
    def errors(self) -> int:
        return self.attempts - self.judged

    @property
    def pass_rate(self) -> float | None:
        """Share of judged attempts that went as the variant file expects; None when none was judged."""
        return None if self.judged == 0 else self.as_expected / self.judged

    @property
    def flaky(self) -> bool:
        """Judged attempts over the window disagree: in outcome, or in what the DUT did."""
        judged = [o for r in self.runs for o in r.judged]
        mixed = 0 < sum(o in AS_EXPECTED for o in judged) < len(judged)
        results = {x for r in self.runs for x in r.results if x != "error"}
        return mixed or len(results) > 1

    @property
    def first_change(self) -> Change | None:
        """The first run whose result differs from the judged run before it (runs of only errors skipped)."""
        judged = [r for r in self.runs if r.result != "error"]
        for before, after in pairwise(judged):
            if before.result != after.result:
                what: dict[str, tuple[str | None, str | None]] = {}
                was_image, now_image = _one(before.images), _one(after.images)
                if was_image != now_image:
                    what["image"] = (was_image, now_image)
                if before.bench != after.bench:
                    what["bench"] = (before.bench, after.bench)
                return Change(after.run_id, before.result, after.result, before.run_id, what)
        return None

    def to_json(self) -> dict[str, Any]:
        change = self.first_change
        return {
            "cell": self.cell,
            "variant": self.variant,
            "path": self.path,
            "runs": len(self.runs),
            "attempts": self.attempts,
            "as_expected": self.as_expected,
            "errors": self.errors,
            "pass_rate": self.pass_rate,
            "flaky": self.flaky,
            "first_change": change.to_json() if change is not None else None,
            "history": [r.to_json() for r in self.runs],
        }


def _one(values: tuple[str, ...]) -> str | None:
    return ",".join(values) if values else None


def _short(digest: str | None) -> str:
    if digest is None:
        return "(none)"
    return digest[:12] if len(digest) == 64 else digest


def cell_histories(results: Path, *, last: int = 10, cell: str | None = None) -> list[CellHistory]:
    """Every cell (or `cell` alone) over the last `last` runs of the store, oldest run first.

    A missing store, a broken one, or a cell the store never saw is a `ConfigError`.
    """
    if last < 1:
        raise ConfigError(f"--last {last}: give a number of runs, 1 or more")
    path = history_path(results)
    with _connect(path, create=False) as connection:
        runs = connection.execute(
            "SELECT run_id, started, bench, bench_kind FROM runs ORDER BY started DESC, run_id DESC LIMIT ?",
            (last,),
        ).fetchall()
        runs.reverse()
        marks = ",".join("?" for _ in runs)
        rows = connection.execute(
            "SELECT run_id, cell, variant, path, outcome, result, image_sha256 FROM attempts "
            f"WHERE final = 1 AND run_id IN ({marks}) ORDER BY repeat, attempt",
            [r[0] for r in runs],
        ).fetchall()
        if cell is not None and not any(row[1] == cell for row in rows):
            known = sorted({row[0] for row in connection.execute("SELECT DISTINCT cell FROM attempts")})
            raise ConfigError(
                f"--cell {cell}: not in the last {len(runs)} run(s) of {path} "
                f"(cells: {', '.join(known) or 'none'})"
            )
    by_cell: dict[str, dict[str, list[tuple[str | None, str, str | None]]]] = {}
    names: dict[str, tuple[str, str]] = {}
    for run_id, name, variant, path_name, outcome, result, image in rows:
        if cell is not None and name != cell:
            continue
        names[name] = (variant, path_name)
        by_cell.setdefault(name, {}).setdefault(run_id, []).append((outcome, result, image))
    histories = []
    for name in sorted(by_cell):
        cell_runs = []
        for run_id, started, bench, bench_kind in runs:
            attempts = by_cell[name].get(run_id)
            if not attempts:
                continue
            cell_runs.append(
                CellRun(
                    run_id=run_id,
                    started=started,
                    bench=bench,
                    bench_kind=bench_kind,
                    outcomes=tuple(a[0] for a in attempts),
                    results=tuple(a[1] for a in attempts),
                    images=tuple(dict.fromkeys(a[2] for a in attempts if a[2])),
                )
            )
        variant, path_name = names[name]
        histories.append(CellHistory(name, variant, path_name, tuple(cell_runs)))
    return histories


def run_count(results: Path) -> int:
    """How many runs the store holds."""
    with _connect(history_path(results), create=False) as connection:
        count: int = connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return count
