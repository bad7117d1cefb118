"""The lifecycle every part of a bench shares: `open()`, `close()`, and `with part:` for both.

The UART, an SSH connection, the router, the router's session (the bench held on its baseline), the
cloud watcher and the lease are all `Part`s, so the orchestration holds a bench by entering its parts
in order and leaves it by closing them in reverse (labgrid's binding states, one vocabulary for all):

- `open(timeout=None)` makes the part usable, waiting at most `timeout` seconds (None: the part's own
  default, given when it was made); a part that cannot be opened raises a `RigError` naming the part
  and what to check, and holds nothing afterwards. Opening an open part does nothing.
- `close()` gives back what `open()` took; safe to call twice, and after a failed `open()`.
- `with part:` opens and closes; a part whose leaving depends on how the body ended (the router session
  restores the baseline, and reports a failed restore only when nothing else is being raised) overrides
  `__exit__`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class Part(ABC):
    """One part of a bench with the shared lifecycle; `name` is how events and errors call it."""

    name: str

    @abstractmethod
    def open(self, timeout: float | None = None) -> None:
        """Make the part usable within `timeout` seconds (None: its default)."""

    @abstractmethod
    def close(self) -> None:
        """Give back what `open()` took; safe to call twice."""

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
