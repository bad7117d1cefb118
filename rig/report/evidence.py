"""The evidence folder of a run: `DIR/<run-id>/<cell>/<attempt>/` plus the run's `cells.jsonl`.

Each attempt gets its own folder, made before the attempt starts so that the drivers can stream into
it (the UART's `uart.raw`/`uart.jsonl`, the event log's `events.jsonl`, the programmer's output, the
capture's pcap); the cell runner adds `diagnosis.json`, `wire.json` (the capture read by `rig.wire`,
`write_wire_json`), the comparison of the wire with the bytes Mbed TLS read (`wire-vs-stack.txt` and
`.json`, `rig.report.wire_vs_stack`), the timeline chart and the diff against a passing attempt. `DIR/latest` points at
the newest run.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from rig.errors import ConfigError, InfrastructureError
from rig.report.records import CellsLog, cell_id
from rig.wire import read_capture

# File names inside an attempt folder, shared by the cell runner, the report and the allure attachments.
UART_RAW = "uart.raw"
UART_JSONL = "uart.jsonl"
EVENTS = "events.jsonl"
DIAGNOSIS = "diagnosis.json"
CAPTURE = "capture.pcap"
WIRE = "wire.json"
PROGRAMMER_DIR = "programmer"
TIMELINE = "timeline.png"
DIFF_TEXT = "diff.txt"
DIFF_JSON = "diff.json"
WIRE_VS_STACK_TEXT = "wire-vs-stack.txt"
WIRE_VS_STACK_JSON = "wire-vs-stack.json"
THEORIES = "theories.txt"
CLOUD_LOG = "cloud.jsonl"


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

    def attempt_dir(self, variant: str, path: str, attempt: int) -> tuple[int, Path]:
        """The number and the new, empty folder of one attempt of a cell: `attempt`, or the next number
        no other process of the run has taken (two workers of a pool running the same cell)."""
        cell = self.root / cell_id(variant, path)
        cell.mkdir(parents=True, exist_ok=True)
        while True:
            folder = cell / str(attempt)
            try:
                folder.mkdir()
            except FileExistsError:
                attempt += 1
                continue
            return attempt, folder

    def write_run_info(self, info: dict[str, Any]) -> Path:
        """`run.json`: bench, options, start time; written at the start and rewritten at the end."""
        target = self.root / "run.json"
        target.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
        return target


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def write_wire_json(folder: Path, *, stopped: float | None = None) -> Path | None:
    """Read the attempt's `capture.pcap` into `wire.json` beside it; None when the attempt has no capture.

    `stopped`: when the capture was stopped (wall time), so that a side's silence runs until then;
    by default the `capture_stopped` event of the folder's `events.jsonl`, else the last packet. A
    capture cut short is read up to the cut and says so in its `truncated` field; one that cannot be
    read at all is the bench's capture failing: `InfrastructureError` naming the file.
    """
    capture = folder / CAPTURE
    if not capture.is_file():
        return None
    if stopped is None:
        stopped = capture_stopped(folder)
    try:
        view = read_capture(capture, stopped=stopped, partial=True)
    except ConfigError as exc:
        raise InfrastructureError(f"the bench's capture is unreadable: {exc}") from exc
    return write_json(folder / WIRE, view.to_json())


def collect_server_log(folder: Path, source: Path, since: float) -> list[dict[str, Any]]:
    """The cloud endpoint's own log lines from `since` (wall time) on, kept as the attempt's `cloud.jsonl`.

    Lines without a `wall` time, or that are not JSON objects, are skipped; a log that cannot be read
    gives none (the endpoint's side is then unknown, which the theories say).
    """
    try:
        text = source.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("wall"), int | float) and entry["wall"] >= since:
            lines.append(entry)
    if lines:
        (folder / CLOUD_LOG).write_text("".join(json.dumps(e) + "\n" for e in lines), encoding="utf-8")
    return lines


def capture_stopped(folder: Path) -> float | None:
    """Wall time of the last `capture_stopped` event in the folder's `events.jsonl`, if any."""
    stops = [e["wall"] for e in read_events(folder) if e.get("kind") == "capture_stopped" and "wall" in e]
    return float(stops[-1]) if stops else None


def host_clock_offset(folder: Path) -> float | None:
    """The host's wall clock minus its monotonic clock during the attempt (median over its events).

    UART lines carry monotonic times, the capture wall times (the capturing host's clock): this
    puts them on one axis. It holds as long as the router's clock agrees with the host's (the
    simulated bench's does; a real router wants NTP).
    """
    offsets = [
        float(e["wall"]) - float(e["mono"]) for e in read_events(folder) if "wall" in e and "mono" in e
    ]
    return statistics.median(offsets) if offsets else None


def read_events(folder: Path) -> list[dict[str, Any]]:
    """The events of a folder's `events.jsonl` (an attempt's or the run's); a torn last line is skipped."""
    try:
        text = (folder / EVENTS).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of a killed run
        if isinstance(event, dict):
            events.append(event)
    return events
