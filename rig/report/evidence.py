"""The evidence folder of a run: `DIR/<run-id>/<cell>/<attempt>/` plus the run's `cells.jsonl`.

Each attempt gets its own folder, made before the attempt starts so that the drivers can stream into
it (the UART's `uart.raw`/`uart.jsonl`, the event log's `events.jsonl`, the programmer's output, the
capture's pcap); the cell runner adds `diagnosis.json`, the timeline chart and the diff against a
passing attempt. `DIR/latest` points at the newest run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from rig.report.records import CellsLog, cell_id

# File names inside an attempt folder, shared by the cell runner, the report and the allure attachments.
UART_RAW = "uart.raw"
UART_JSONL = "uart.jsonl"
EVENTS = "events.jsonl"
DIAGNOSIS = "diagnosis.json"
CAPTURE = "capture.pcap"
PROGRAMMER_DIR = "programmer"
TIMELINE = "timeline.png"
DIFF_TEXT = "diff.txt"
DIFF_JSON = "diff.json"


def new_run_id() -> str:
    """A sortable, unique-enough id: the local time to the second and the process id."""
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


class RunFolder:
    """`results/<run-id>/`: one folder per attempt, `cells.jsonl`, and `run.json` describing the run."""

    def __init__(self, results: Path, run_id: str | None = None) -> None:
        self.results = results
        self.run_id = run_id or new_run_id()
        self.root = results / self.run_id
        self.root.mkdir(parents=True, exist_ok=True)
        self.cells = CellsLog(self.root / "cells.jsonl")
        self._point_latest()

    def _point_latest(self) -> None:
        latest = self.results / "latest"
        try:
            if latest.is_symlink() or latest.exists():
                latest.unlink()
            latest.symlink_to(self.run_id)
        except OSError:
            pass  # a convenience link only; a filesystem without symlinks still gets the run folder

    def attempt_dir(self, variant: str, path: str, attempt: int) -> Path:
        """The (new, empty) folder for one attempt of a cell."""
        folder = self.root / cell_id(variant, path) / str(attempt)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def write_run_info(self, info: dict[str, Any]) -> Path:
        """`run.json`: bench, options, start time; written at the start and rewritten at the end."""
        target = self.root / "run.json"
        target.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
        return target


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path
