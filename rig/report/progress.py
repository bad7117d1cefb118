"""How a cell's progress is shown while it runs: one live line in a terminal, plain lines elsewhere.

`LiveLine` rewrites one line per cell in place (carriage return, clear to the end of the line) as the
cell goes through its phases, and leaves the cell's verdict on it. `PlainLines` (CI logs, a pipe)
writes one line when the phase changes, never a rewrite. Both write through `write`, a function that
puts text on the user's terminal (the pytest plugin gives its terminal writer's).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

Write = Callable[[str], None]


class ProgressView(Protocol):
    def show(self, cell: str, phase: str, detail: str) -> None:
        """The cell is in `phase` (programming, path, reset, handshake…), with `detail` (elapsed…)."""

    def settle(self, cell: str, text: str) -> None:
        """The cell ended: `text` is its verdict."""


class LiveLine:
    """One line per cell, rewritten in place; it settles into the verdict."""

    def __init__(self, write: Write, width: int = 100) -> None:
        self.write = write
        self.width = max(40, width)
        self._lock = threading.Lock()
        self._open: str | None = None  # the cell whose line is the current one

    def _line(self, text: str) -> str:
        return text if len(text) < self.width else text[: self.width - 2] + "…"

    def show(self, cell: str, phase: str, detail: str) -> None:
        with self._lock:
            start = "\r" if self._open == cell else "\n"
            self._open = cell
            self.write(f"{start}{self._line(f'  {cell}: {phase} {detail}'.rstrip())}\x1b[K")

    def settle(self, cell: str, text: str) -> None:
        with self._lock:
            start = "\r" if self._open == cell else "\n"
            self._open = None
            self.write(f"{start}{self._line(f'  {cell}: {text}')}\x1b[K ")


class PlainLines:
    """One line per phase, for logs: `rig: tcp-rx-1024-satellite: reset`."""

    def __init__(self, write: Write) -> None:
        self.write = write
        self._lock = threading.Lock()
        self._phase: dict[str, str] = {}

    def show(self, cell: str, phase: str, detail: str) -> None:
        with self._lock:
            if self._phase.get(cell) == phase:
                return
            self._phase[cell] = phase
            self.write(f"\nrig: {cell}: {phase} {detail}".rstrip())

    def settle(self, cell: str, text: str) -> None:
        with self._lock:
            self._phase.pop(cell, None)
            self.write(f"\nrig: {cell}: {text}\n")
