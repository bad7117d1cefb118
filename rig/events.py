"""Every action is an event: one JSON line with monotonic and wall time.

Drivers take an `EventLog` and `emit()` what they do (flash started, port lost, path selected…).
The harness points the log at the current attempt's `events.jsonl` with `attach()`; listeners
(the live display, the report) subscribe. Every event also goes to Python logging, at INFO on the
logger `rig.events.<source>` (`rig.events.router`, `rig.events.lock`…), with the `Event` itself in the
log record's `rig_event` and whether an attempt's file took it in `rig_in_attempt`: `pytest
--log-cli-level=INFO` shows the bench at work, and a handler can keep the events no attempt took
(the run's own: bring-up, lease, preflight, restore). Emitting never blocks on I/O errors silently: a file that
cannot be written raises where the caller is.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any


@dataclass(frozen=True)
class Event:
    """One thing that happened on the bench."""

    kind: str
    source: str
    mono: float
    wall: float
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "mono": self.mono, "wall": self.wall, **self.fields}


Listener = Callable[[Event], None]

LOGGER = "rig.events"


def event_text(event: Event) -> str:
    """`preflight part=uart ok=True detail=…`: an event as one line of a log."""
    details = " ".join(f"{key}={value}" for key, value in event.fields.items())
    return f"{event.kind} {details}".rstrip()


class EventLog:
    """Thread-safe event sink: appends JSON lines to the attached file and tells listeners."""

    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._listeners: list[Listener] = []
        self.history: list[Event] = []
        if path is not None:
            self.attach(path)

    def attach(self, path: Path | None) -> None:
        """Write from now on to `path` (appending), or to no file with None."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = path.open("a", encoding="utf-8")
            self.history = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` for every event; returns a function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def emit(self, kind: str, source: str, **fields: Any) -> Event:
        """Record that `source` did `kind` now, with details in `fields` (JSON-serialisable)."""
        event = Event(kind, source, time.monotonic(), time.time(), fields)
        with self._lock:
            self.history.append(event)
            in_attempt = self._file is not None
            if self._file is not None:
                self._file.write(json.dumps(event.to_json(), default=str) + "\n")
                self._file.flush()
            listeners = list(self._listeners)
        logger = logging.getLogger(f"{LOGGER}.{source}")
        if logger.isEnabledFor(logging.INFO):
            extra = {"rig_event": event, "rig_in_attempt": in_attempt}
            logger.info("%s", event_text(event), extra=extra)
        for listener in listeners:
            listener(event)
        return event

    def close(self) -> None:
        self.attach(None)


class EventHandler(logging.Handler, ABC):
    """A logging handler that receives every bench event of the process (from any `EventLog`).

    Subclasses implement `on_event`; `start()` attaches the handler to the `rig.events` loggers (and
    lets INFO through to it when the logger would drop it), `close()` detaches it and puts the level back.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._logger = logging.getLogger(LOGGER)
        self._level_was: int | None = None

    def start(self) -> None:
        self._level_was = self._logger.level
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self)

    @abstractmethod
    def on_event(self, event: Event, in_attempt: bool) -> None:
        """Take one event; `in_attempt`: an attempt's folder recorded it (its `events.jsonl`)."""

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "rig_event", None)
        if isinstance(event, Event):
            self.on_event(event, bool(getattr(record, "rig_in_attempt", False)))

    def __enter__(self) -> EventHandler:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._logger.removeHandler(self)
        if self._level_was is not None:
            self._logger.setLevel(self._level_was)
            self._level_was = None
        super().close()
