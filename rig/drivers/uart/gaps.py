"""What the capture missed: every stretch of time the UART's port was not open, with its length.

A port is lost when the device goes away (a USB CDC console re-enumerating on a reset, ser2net hanging
up) and lent when a programmer needs it; whatever the device printed meanwhile was not captured. The
reader thread of `rig.drivers.uart.port` records each such gap here as it begins and completes it when
the port is open again, so whoever judges a boot can ask which gaps overlap it (`Uart.gaps(since)`) —
including one still open — instead of mistaking the missing lines for a silent device.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace

KEPT_GAPS = 1000  # the newest gaps kept (an adapter that flaps for a week must not grow memory)


@dataclass(frozen=True)
class UartGap:
    """One time the port was not open: from `lost` to `back` (host monotonic time; `back` None: still gone).

    `reason`: `lost` (the port went away) or `lent` (closed for a programmer). `return_to_back_s`: how
    long after the device came back the port was open again, and `return_seen_by` how that is known:
    `device node` (the creation time of the device node or its link), or `polling` (an upper bound:
    the time since the last reopen attempt that found the device still absent).
    """

    lost: float
    lost_wall: float
    reason: str
    error: str = ""
    back: float | None = None
    attempts: int = 0
    return_to_back_s: float | None = None
    return_seen_by: str | None = None

    @property
    def seconds(self) -> float | None:
        """The gap's length; None while it lasts."""
        return None if self.back is None else self.back - self.lost

    def overlaps(self, start: float, end: float) -> bool:
        """Whether the port was gone at some moment in [start, end] (host monotonic times)."""
        return self.lost <= end and (self.back is None or self.back >= start)


class GapLog:
    """The gaps of one Uart, written by its reader thread, read by anyone. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: deque[UartGap] = deque(maxlen=KEPT_GAPS)
        self._open: UartGap | None = None

    @property
    def current(self) -> UartGap | None:
        """The gap that lasts now, if the port is gone."""
        return self._open

    def begin(self, lost: float, lost_wall: float, reason: str, error: str = "") -> None:
        with self._lock:
            if self._open is None:
                self._open = UartGap(lost, lost_wall, reason, error)

    def end(self, back: float, attempts: int, return_to_back_s: float | None, seen_by: str | None) -> UartGap:
        with self._lock:
            gap = self._open or UartGap(back, 0.0, "lost")
            done = replace(
                gap, back=back, attempts=attempts, return_to_back_s=return_to_back_s, return_seen_by=seen_by
            )
            self._done.append(done)
            self._open = None
            return done

    def since(self, start: float) -> list[UartGap]:
        """Every gap that lasted into or past `start` (monotonic), the current one included, oldest first."""
        with self._lock:
            gaps = [g for g in self._done if g.back is not None and g.back >= start]
            if self._open is not None:
                gaps.append(self._open)
            return gaps
