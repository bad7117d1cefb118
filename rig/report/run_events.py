"""The run's own events in `results/<run-id>/events.jsonl`: what the bench did outside every attempt.

Bringing the bench up, taking its lease (and breaking a dead run's), repairing a bench a killed run left
on another path, the preflight, restoring the baseline and releasing the lease at the end: events that
no attempt's `events.jsonl` takes (no attempt folder is attached while they happen). `RunEvents` is an
`EventHandler` (every event of every `EventLog` reaches it through the `rig.events` loggers) that
writes those, one JSON line each, flushed as they come, so a run killed during bring-up keeps them.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from rig.events import Event, EventHandler


class RunEvents(EventHandler):
    """Writes the events no attempt took to `path` (appending) from creation until `close()`."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self._write_lock = threading.Lock()
        self.start()

    def on_event(self, event: Event, in_attempt: bool) -> None:
        if in_attempt:
            return
        with self._write_lock:
            if not self._file.closed:
                self._file.write(json.dumps(event.to_json(), default=str) + "\n")
                self._file.flush()

    def close(self) -> None:
        """Stop recording: the handler leaves the logger and the file is closed."""
        super().close()
        with self._write_lock:
            self._file.close()
