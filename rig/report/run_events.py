"""The run's own events in `results/<run-id>/events.jsonl`: what the bench did outside every attempt.

Bringing the bench up, taking its lease (and breaking a dead run's), repairing a bench a killed run left
on another path, the preflight, restoring the baseline and releasing the lease at the end: events that
no attempt's `events.jsonl` takes (no attempt folder is attached while they happen). `RunEvents` is a
logging handler on the `rig.events` loggers (`rig.events` sends every event there) that writes those,
one JSON line each, flushed as they come, so a run killed during bring-up keeps them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rig.events import LOGGER, Event


class RunEvents(logging.Handler):
    """Writes the events no attempt took to `path` (appending) from creation until `close()`."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.INFO)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self._logger = logging.getLogger(LOGGER)
        # The events are emitted at INFO; a logger left at the default level (WARNING, from the root)
        # would drop them before any handler. An explicit level someone set is theirs.
        self._level_was = self._logger.level
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "rig_event", None)
        if not isinstance(event, Event) or getattr(record, "rig_in_attempt", False):
            return
        self.acquire()
        try:
            if not self._file.closed:
                self._file.write(json.dumps(event.to_json(), default=str) + "\n")
                self._file.flush()
        finally:
            self.release()

    def close(self) -> None:
        """Stop recording: the handler leaves the logger and the file is closed."""
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level_was)
        self.acquire()
        try:
            self._file.close()
        finally:
            self.release()
        super().close()
