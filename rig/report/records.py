"""One record per attempt, appended to `cells.jsonl` the moment the attempt ends.

The run's results are this file: the terminal table, the nightly summary and the release gate are all
computed from it, so a run killed half-way keeps every attempt it finished (each line is flushed and
fsync'ed before the next attempt starts). Fields are the ones users grep for:
`variant, path, attempt, outcome, verdict, category, last_state, error, seconds{program, path,
reset_to_verdict}, programmed, evidence`, plus `repeat`, `ciphersuite`, `summary` and `started`.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["passed", "failed", "error", "xfailed", "xpassed"]
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "error", "xfailed", "xpassed")


@dataclass
class Seconds:
    """Where an attempt's time went: programming, switching the path, reset until the verdict.

    `settle`: waiting, before the reset, for the UART to fall quiet (what the DUT printed earlier).
    """

    program: float = 0.0
    path: float = 0.0
    reset_to_verdict: float = 0.0
    settle: float = 0.0


@dataclass
class AttemptRecord:
    """What one attempt of one cell (variant × path) did, as written to `cells.jsonl`."""

    variant: str
    path: str
    attempt: int
    outcome: Outcome
    verdict: str | None = None
    category: str | None = None
    last_state: str | None = None
    error: str | None = None
    seconds: Seconds = field(default_factory=Seconds)
    programmed: bool = False
    evidence: str = ""
    repeat: int = 1
    ciphersuite: str | None = None
    summary: str = ""
    started: float = 0.0

    @property
    def cell(self) -> str:
        """The cell's id, as in test ids and evidence folders: `tcp-rx-1024-satellite`."""
        return cell_id(self.variant, self.path)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttemptRecord:
        values = dict(data)
        values["seconds"] = Seconds(**values.get("seconds", {}))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def cell_id(variant: str, path: str) -> str:
    """`variant-path`: the id of a cell in test ids, folders and tables."""
    return f"{variant}-{path}"


class CellsLog:
    """Appends attempt records to a `cells.jsonl`, durably, one line per attempt, thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)

    def append(self, record: AttemptRecord) -> None:
        line = json.dumps(record.to_json(), sort_keys=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def read(self) -> list[AttemptRecord]:
        return read_cells(self.path)


def read_cells(path: Path) -> list[AttemptRecord]:
    """The records of a `cells.jsonl`; a torn last line (a run killed mid-write) is ignored."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue  # only the line being written when the run was killed can be incomplete
        records.append(AttemptRecord.from_json(data))
    return records


def final_attempts(records: list[AttemptRecord]) -> list[AttemptRecord]:
    """The last attempt of every (variant, path, repeat): an infrastructure retry replaces its error."""
    last: dict[tuple[str, str, int], AttemptRecord] = {}
    for record in records:
        key = (record.variant, record.path, record.repeat)
        if key not in last or record.attempt >= last[key].attempt:
            last[key] = record
    return list(last.values())
