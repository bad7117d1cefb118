"""One record per attempt: the typed model that `cells.jsonl` holds, written the moment the attempt ends.

The run's results are this file: the terminal table, the nightly summary and the release gate are all
computed from it, so a run killed half-way keeps every attempt it finished (each line is flushed and
fsync'ed before the next attempt starts). The live attempt fills the same `AttemptRecord` that is
written and read back; `diagnosis.json` is a view of it (`evidence_json`). Fields are the ones users
grep for: `variant, path, attempt, outcome, verdict, category, last_state, error, seconds{program, path,
reset_to_verdict, settle}, programmed, evidence`, plus `repeat`, `ciphersuite`, `summary`, `started`,
`image_sha256`, `rig_version`, `bench`, `simulated`, `mqtt_connected`, `cloud_connected`, `stall_after_s`
`uart_gaps` (every time the UART's port was gone during the attempt, and what it cost) and
`wire_vs_stack` (the comparison of the capture with the bytes Mbed TLS dumped, at debug level 4). Lines written
by older versions of the rig (without the later fields, `verdict: null` for a bench problem) read as before.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass

from rig.errors import ConfigError, HandshakeFailed

Outcome = Literal["passed", "failed", "error", "xfailed", "xpassed"]
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "error", "xfailed", "xpassed")
# What the DUT did, as the live verdict saw it; `error`: not judged because of a bench problem.
Verdict = Literal["not run", "completed", "failed", "stalled", "timeout", "incomplete", "error"]


@dataclass
class Seconds:
    """Where an attempt's time went: programming, switching the path, reset until the verdict.

    `settle`: waiting, before the reset, for the UART to fall quiet (what the DUT printed earlier).
    """

    program: float = 0.0
    path: float = 0.0
    reset_to_verdict: float = 0.0
    settle: float = 0.0


GapEffect = Literal[
    "before the reset", "before the boot banner", "the boot banner", "the judged boot", "after the verdict"
]


class UartGapRecord(BaseModel):
    """One time the UART's port was gone during an attempt, in seconds relative to the DUT's reset.

    `effect` says what the capture lost by it: nothing judged (`before the reset`, `before the boot
    banner`: the port was back before the boot it judges printed its banner, as with a USB console
    re-enumerating on the reset; `after the verdict`), or what makes the attempt a bench problem:
    `the boot banner` (no banner was seen after the reset: the boot may have printed while the port was
    gone) or `the judged boot` (lines between the banner and the verdict were not seen).
    """

    model_config = ConfigDict(extra="ignore")

    lost_s: float  # when the port went, seconds after the reset (negative: before it)
    seconds: float | None  # how long it was gone; None: not back yet when the attempt was judged
    reason: str  # `lost` (the device or the server went away) or `lent` (closed for a programmer)
    return_to_back_s: float | None = None  # the device's return → the port open again (see port_back)
    effect: GapEffect


class AttemptRecord(BaseModel):
    """What one attempt of one cell (variant × path) did: filled live, written to `cells.jsonl`."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    variant: str
    path: str
    attempt: int
    outcome: Outcome | None = None  # against the variant's expectation; set when the attempt is written
    verdict: Verdict | None = "not run"
    category: str | None = None
    last_state: str | None = None
    error: str | None = None  # the firmware's Mbed TLS error, or the bench problem for `error`
    part: str | None = None  # the bench part whose problem kept the attempt from a verdict
    quiet: str | None = None  # a stall's silent side, as the wire shows it: server | device | nobody
    seconds: Seconds = Field(default_factory=Seconds)
    programmed: bool = False
    evidence: str = ""
    repeat: int = 1
    ciphersuite: str | None = None
    summary: str = ""
    started: float = 0.0
    image_sha256: str | None = None
    rig_version: str | None = None
    bench: str | None = None  # the bench file's name
    simulated: bool | None = None  # judged on a simulated bench: never a release verdict
    mqtt_connected: bool = False
    cloud_connected: bool | None = None
    stall_after_s: float | None = None
    uart_gaps: list[UartGapRecord] = Field(default_factory=list)
    # The wire against the bytes Mbed TLS read (debug level 4 only): its one-line summary.
    wire_vs_stack: str | None = None
    # A failure's answers to the incident's theories, one sentence each, the last the one supported.
    theories: list[str] = Field(default_factory=list)
    # A forensic rerun (the variant's debug-level-4 image after a failing attempt): evidence of the
    # cell, never one of its attempts in tables, pass rates or the gate.
    forensic: bool = False
    # The full `rig diagnose --json` object: in `diagnosis.json`, not in every line of `cells.jsonl`.
    diagnosis: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @property
    def cell(self) -> str:
        """The cell's id, as in test ids and evidence folders: `tcp-rx-1024-satellite`."""
        return cell_id(self.variant, self.path)

    @property
    def folder(self) -> Path:
        """The attempt's evidence folder."""
        return Path(self.evidence)

    @property
    def completed(self) -> bool:
        return self.verdict == "completed"

    def raise_for_failure(self) -> None:
        """Raise `HandshakeFailed` (of the diagnosis category's class) unless the attempt completed."""
        if not self.completed:
            failure = HandshakeFailed.of(self.category, self.last_state)
            raise failure(self.summary, diagnosis=self.diagnosis)

    def to_json(self) -> dict[str, Any]:
        """The line of `cells.jsonl`."""
        return self.model_dump(mode="json")

    def evidence_json(self) -> dict[str, Any]:
        """`diagnosis.json`: the record with the cell's id and the full diagnosis."""
        return {"cell": self.cell, **self.to_json(), "diagnosis": self.diagnosis}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttemptRecord:
        """A record from a line of `cells.jsonl`, of this version of the rig or an older one."""
        return cls.model_validate(data)


def cell_id(variant: str, path: str) -> str:
    """`variant-path`: the id of a cell in test ids, folders and tables."""
    return f"{variant}-{path}"


class CellsLog:
    """Appends attempt records to a `cells.jsonl`, durably, one line per attempt.

    Safe for threads and for processes (the workers of a pool run share one file): each line is
    written whole under an exclusive `flock`, so lines never interleave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)

    def append(self, record: AttemptRecord) -> None:
        line = json.dumps(record.to_json(), sort_keys=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)  # released when the file closes
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def read(self) -> list[AttemptRecord]:
        return read_cells(self.path)


def read_cells(path: Path) -> list[AttemptRecord]:
    """The records of a `cells.jsonl`; a torn last line (a run killed mid-write) is ignored."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue  # only the line being written when the run was killed can be incomplete
        try:
            records.append(AttemptRecord.from_json(data))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "(the line)"
            raise ConfigError(
                f"{path}:{number}: not an attempt record: {where}: {first['msg']} — was the file edited by hand?"
            ) from None
    return records


def final_attempts(records: list[AttemptRecord]) -> list[AttemptRecord]:
    """The last attempt of every (variant, path, repeat): an infrastructure retry replaces its error.

    Forensic reruns are not attempts of the cell's verdict: they are left out.
    """
    last: dict[tuple[str, str, int], AttemptRecord] = {}
    for record in records:
        if record.forensic:
            continue
        key = (record.variant, record.path, record.repeat)
        if key not in last or record.attempt >= last[key].attempt:
            last[key] = record
    return list(last.values())
