"""A cell's phases as they happen, for the live progress line: from the bench's events and the attempt.

`CellProgress` follows one cell (its attempts, the retry included): programming (with the elapsed
time), the path switch, the reset, then the handshake as the live parser sees it — the client's state,
the bytes received, how long the UART has been quiet against the path's `stall_after` — until the
verdict, which the line settles into. The events come from every `EventLog` through logging
(`rig.events.EventHandler`); the handshake's figures are read from the attempt's parser by a ticker
thread that redraws a live line every `TICK_S` (a plain view gets one line per phase and no ticker).
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rig.events import Event, EventHandler
from rig.hil.matrix import Cell
from rig.report.progress import ProgressView
from rig.report.records import cell_id

TICK_S = 0.5

# Event kind → the phase it starts (the detail is filled from the event's fields).
_PHASES = {
    "attempt_started": "starting",
    "flash_started": "programming",
    "flash_skipped": "image already on the DUT",
    "path_select": "path",
    "path_kept": "path",
    "path_selected": "path",
    "path_probe": "path",
    "uart_settled": "waiting for the UART to fall quiet",
    "reset": "reset",
}


class CellProgress(EventHandler):
    """The progress of one cell, shown on `view` while it runs (`with CellProgress(...)`)."""

    def __init__(self, cell: Cell, view: ProgressView, *, live: bool) -> None:
        super().__init__()
        self.cell = cell
        self.view = view
        self.live = live
        self.phase = "starting"
        self.detail = ""
        self.since = time.monotonic()
        self.settled = False
        self._uart_quiet = False  # the current attempt's UART has settled: its next reset is the judged one
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    @property
    def label(self) -> str:
        """The cell's test id: `tcp-rx-1024-satellite` (`-r2` with repeats)."""
        return self.cell.spec.id

    def on_event(self, event: Event, in_attempt: bool) -> None:
        if event.kind == "verdict" and event.fields.get("cell") == cell_id(
            self.cell.spec.name, self.cell.spec.path
        ):
            self._settle(_verdict_text(event))
            return
        phase = _PHASES.get(event.kind)
        if phase is None or self.settled:
            return
        fields = event.fields
        detail = ""
        if event.kind == "attempt_started" and int(fields.get("attempt", 1)) > 1:
            phase, detail = "retrying after a bench problem", f"attempt {fields.get('attempt')}"
        elif event.kind.startswith("path_"):
            verb = {"path_select": "switching to", "path_kept": "kept on", "path_selected": "selected"}
            detail = f"{verb.get(event.kind, 'probing the uplink of')} {fields.get('path')}"
            if "seconds" in fields:
                detail += f" in {fields['seconds']} s"
        elif event.kind == "flash_skipped":
            detail = f"({fields.get('known_by', 'known')})"
        elif event.kind == "reset" and not self._uart_quiet:
            # A reset before the UART settled is the programmer's (to read the boot banner), not the
            # one the attempt judges: that one always follows the settling.
            phase = "checking the image on the DUT"
        if event.kind == "uart_settled":
            self._uart_quiet = True
        elif event.kind == "attempt_started":
            self._uart_quiet = False
        with self._lock:
            self.phase, self.detail, self.since = phase, detail, time.monotonic()
        self._show()

    def handshake_detail(self) -> str | None:
        """`state 12 (…), 5425 B in, quiet 3.1 s of stall_after 9.6 s` from the attempt's live parser."""
        attempt = self.cell.attempt
        parser = attempt.parser if attempt is not None else None
        if attempt is None or parser is None:
            return None
        trace = parser.trace
        states = list(trace.states)
        received = sum(list(trace.inbound_reads))
        parts = [f"state {states[-1].label()}" if states else "no state printed yet", f"{received} B in"]
        # The judge's measure of a stall: time since the handshake last moved (a state, a byte in),
        # not since the last UART line (a client re-reading nothing still prints).
        last = trace.last_progress_time if trace.last_progress_time is not None else attempt.last_line_at
        stall = attempt.record.stall_after_s
        if last is not None:
            quiet = max(0.0, time.monotonic() - last)
            parts.append(f"quiet {quiet:.1f} s" + (f" of stall_after {stall:g} s" if stall else ""))
        return ", ".join(parts)

    def _show(self) -> None:
        with self._lock:
            if self.settled:
                return
            phase, detail = self.phase, self.detail
            elapsed = time.monotonic() - self.since
        if phase == "reset":
            handshake = self.handshake_detail() if self.live else None
            if handshake is not None:
                phase, detail = "handshake", handshake
        elif phase == "programming" and self.live:
            detail = f"{elapsed:.1f} s"
        self.view.show(self.label, phase, detail)

    def _settle(self, text: str) -> None:
        with self._lock:
            if self.settled:
                return
            self.settled = True
        self.view.settle(self.label, text)

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            self._show()

    def __enter__(self) -> CellProgress:
        self.start()
        if self.live:
            self._ticker = threading.Thread(target=self._tick, name=f"progress {self.label}", daemon=True)
            self._ticker.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        self.close()
        if exc is not None:
            part = getattr(exc, "part", None)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._settle(f"error{f' ({part})' if part else ''}: {first}")
        else:
            self._settle("done")


def _verdict_text(event: Event) -> str:
    fields = event.fields
    verdict = str(fields.get("verdict"))
    if verdict == "stalled" and fields.get("last_state"):
        verdict = f"stalled at {fields['last_state']}"
    elif fields.get("category") and verdict != "completed":
        verdict = f"{verdict} {fields['category']}"
    seconds = fields.get("seconds")
    return f"{verdict} {seconds:.1f} s after the reset" if isinstance(seconds, int | float) else verdict
