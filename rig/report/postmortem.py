"""A run read back from its folder: what `rig report RESULTS/<run-id>` prints, finished or killed.

Everything comes from the files the run wrote as it went: `cells.jsonl` (one line per attempt, written as
each ends), `run.json` and `summary.json` (written at the end: a run without `summary.json` was killed or
is still running), and the run's own `events.jsonl` (bring-up, lease, preflight, restore). A last line of
`cells.jsonl` cut short by the kill is named, not silently dropped.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.errors import ConfigError
from rig.report.evidence import read_events
from rig.report.records import AttemptRecord, read_cells

CELLS = "cells.jsonl"
SUMMARY = "summary.json"
RUN_INFO = "run.json"

# Run events worth a line of their own in a post-mortem: the bench was not as the run expected it.
NOTABLE = ("bench_left_dirty", "lease_lapsed", "lease_broken", "lease_lost", "restore_failed")


@dataclass(frozen=True)
class TornLine:
    """The last line of `cells.jsonl`, cut short when the run was killed while writing it."""

    number: int
    length: int


@dataclass
class RunView:
    """One run's folder, read."""

    folder: Path
    records: list[AttemptRecord]
    info: dict[str, Any] | None  # run.json
    summary: dict[str, Any] | None  # summary.json: None when the run did not reach its end
    torn: TornLine | None
    events: list[dict[str, Any]] = field(default_factory=list)  # the run's own events

    @property
    def run_id(self) -> str:
        return self.folder.name

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def event_counts(self) -> Counter[str]:
        return Counter(str(e.get("kind")) for e in self.events)

    def notable_events(self) -> list[dict[str, Any]]:
        """Run events that say the bench was not as expected: left dirty, a lease broken, a failed check."""
        return [
            e
            for e in self.events
            if e.get("kind") in NOTABLE or (e.get("kind") == "preflight" and e.get("ok") is False)
        ]


def run_folder_of(path: Path) -> Path:
    """The run folder `path` names: a run folder itself, or a results folder (its `latest` run)."""
    if not path.is_dir():
        raise ConfigError(
            f"{path}: no such folder — give a run's folder, RESULTS/<run-id> (or RESULTS/latest)"
        )
    if (path / CELLS).is_file():
        return path.resolve() if path.is_symlink() else path
    latest = path / "latest"
    if (latest / CELLS).is_file():
        return latest.resolve()
    raise ConfigError(
        f"{path}: not a run's folder (no {CELLS}) — give RESULTS/<run-id>, the folder the run printed as its evidence"
    )


def read_run(path: Path) -> RunView:
    """Read a run's folder (or a results folder's latest run)."""
    folder = run_folder_of(path)
    cells = folder / CELLS
    return RunView(
        folder=folder,
        records=read_cells(cells),
        info=_json(folder / RUN_INFO),
        summary=_json(folder / SUMMARY),
        torn=_torn_line(cells),
        events=read_events(folder),
    )


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}) — was it edited by hand?") from None
    return data if isinstance(data, dict) else None


def _torn_line(path: Path) -> TornLine | None:
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if not lines or not lines[-1].strip():
        return None
    try:
        json.loads(lines[-1])
    except json.JSONDecodeError:
        return TornLine(len(lines), len(lines[-1].encode()))
    return None


def event_line(event: dict[str, Any]) -> str:
    """A run event as a person reads it: `bench_left_dirty: on satellite (pid 8857 on vm), restored to landline`."""
    kind = str(event.get("kind"))
    if kind == "bench_left_dirty":
        previous = event.get("previous")
        if isinstance(previous, dict):
            owner = (
                f" (left by pid {previous.get('pid')} on {previous.get('host')})"
                if previous.get("pid")
                else ""
            )
            previous = f"{previous.get('path')}{owner}"
        return f"{kind}: the bench was on {previous}, restored to {event.get('baseline')}"
    details = ", ".join(
        f"{key}={value}" for key, value in event.items() if key not in ("kind", "source", "mono", "wall")
    )
    return f"{kind}: {details}"
