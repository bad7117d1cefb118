"""Two traces side by side: where a failing handshake first did something a passing one did not.

This is what the incident's engineer did by hand: walk both logs in lockstep, one handshake
state at a time, until one side stops doing what the other did. A trace is cut into steps (one per
state, re-entries of the same state folded in); both step lists are aligned from the first state
they share (fragments may start mid-handshake), and the first step whose state or ending differs
is the divergence. Durations per state, inbound read patterns, records, suites and alerts are
compared alongside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rig.mbedtls.tables import ALERT_NAMES, RECORD_TYPES, error_hex
from rig.mbedtls.trace import Alert, HandshakeTrace


@dataclass
class Step:
    """Everything a trace did while in one state (its first entry and the re-entries)."""

    number: int | None
    name: str | None
    first_line: int
    last_line: int
    start_time: float | None
    end_time: float | None = None
    entries: int = 1
    reads: list[int] = field(default_factory=list)
    records_in: list[tuple[int, int | None]] = field(default_factory=list)
    records_out: list[tuple[int, int | None]] = field(default_factory=list)
    waits: list[tuple[int | None, int | None]] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ending: str = "log ended"  # advanced | completed | failed | waiting | log ended
    next_label: str | None = None  # the state it advanced to, at line next_line
    next_line: int | None = None

    @property
    def key(self) -> tuple[int | None, str | None]:
        return (self.number, self.name)

    @property
    def label(self) -> str:
        if self.number is not None and self.name:
            return f"{self.number} ({self.name})"
        return str(self.number) if self.number is not None else (self.name or "?")

    def describe(self) -> str:
        """What the trace did in this state, in one sentence."""
        parts: list[str] = []
        if self.records_out:
            parts.append("sent " + _records_text(self.records_out))
        if self.records_in:
            parts.append("received " + _records_text(self.records_in))
        if self.reads:
            parts.append("read " + ", ".join(str(n) for n in self.reads) + " bytes")
        if self.alerts:
            parts.append("alerts: " + ", ".join(self.alerts))
        if self.errors:
            parts.append("errors: " + ", ".join(self.errors))
        if self.ending == "waiting":
            wait = self.waits[-1] if self.waits else (None, None)
            retries = self.entries - 1
            through = f" through {retries} re-entr{'y' if retries == 1 else 'ies'}" if retries else ""
            parts.append(
                f"waited for input (in_left {wait[0]}, nb_want {wait[1]}){through} with no byte; the log ends there"
            )
        elif self.ending == "advanced":
            parts.append(f"advanced to {self.next_label} at line {self.next_line}")
        elif self.ending == "log ended":
            parts.append("the log ends here")
        elif self.ending == "failed":
            parts.append("the handshake failed here")
        elif self.ending == "completed":
            parts.append("the handshake completed")
        return "; ".join(parts) if parts else "nothing logged"


def _records_text(records: list[tuple[int, int | None]]) -> str:
    shown = [f"{RECORD_TYPES.get(t, t)} ({n if n is not None else '?'} B)" for t, n in records]
    return f"{len(records)} record{'s' if len(records) != 1 else ''}: " + ", ".join(shown)


def steps_of(trace: HandshakeTrace) -> list[Step]:
    """Cut a trace into steps, one per state change, with what happened in each."""
    steps: list[Step] = []
    current: Step | None = None
    visits = iter(trace.states)  # one visit per state event, in the same order
    errors = {e.line_no: e for e in trace.errors}
    for event in trace.events:
        data = event.data
        kind = event.kind
        if kind == "state":
            visit = next(visits, None)
            if visit is None:
                continue
            if current is not None and current.key == (visit.number, visit.name):
                current.entries += 1  # a re-entry (WANT_READ) or the 2.x ticket quirk: the same step
                current.last_line = event.line_no
                continue
            step = Step(visit.number, visit.name, event.line_no, event.line_no, event.host_time)
            if current is not None:
                current.ending = "advanced"
                current.end_time = event.host_time
                current.next_label = step.label
                current.next_line = event.line_no
            current = step
            steps.append(current)
            continue
        if current is None:
            continue
        current.last_line = event.line_no
        if event.host_time is not None:
            current.end_time = event.host_time
        if kind == "recv" and isinstance(data["value"], int) and data["value"] > 0:
            current.reads.append(data["value"])
        elif kind == "record_in" or kind == "record_out":
            record = (int(str(data["type"])), data["length"] if isinstance(data["length"], int) else None)
            (current.records_in if kind == "record_in" else current.records_out).append(record)
        elif kind == "fetch_wait":
            current.waits.append(
                (
                    data["in_left"] if isinstance(data["in_left"], int) else None,
                    data["nb_want"] if isinstance(data["nb_want"], int) else None,
                )
            )
        elif kind == "alert_received" or kind == "alert_sent":
            description = data.get("description")
            name = ALERT_NAMES.get(description, str(description)) if isinstance(description, int) else "?"
            current.alerts.append(f"{'received' if kind == 'alert_received' else 'sent'} {name}")
        elif kind == "error":
            code = data["code"]
            if isinstance(code, int):
                found = errors.get(event.line_no)
                current.errors.append(f"{found.name if found and found.name else error_hex(code)}")
    if current is not None:
        if trace.completed:
            current.ending = "completed"
        elif trace.failed:
            current.ending = "failed"
        elif trace.waiting_for_input:
            current.ending = "waiting"
    return steps


@dataclass
class TraceDiff:
    """The comparison of a passing (good) and a failing (bad) trace."""

    aligned: list[tuple[Step | None, Step | None]]
    divergence: dict[str, Any] | None
    differences: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The JSON object `rig diff --json` prints."""
        return {
            "divergence": self.divergence,
            "steps": [
                {
                    "state": _label(g, b),
                    "good": _step_json(g),
                    "bad": _step_json(b),
                }
                for g, b in self.aligned
            ],
            **self.differences,
        }

    def render(self) -> str:
        """Human text: the divergence first, then the states side by side, then other differences."""
        out: list[str] = []
        d = self.divergence
        if d is None:
            out.append("No divergence: both traces went through the same states and ended the same way.")
        else:
            out.append(f"First divergence at state {d['state']}:")
            out.append(f"  good (lines {_lines(d['good_lines'])}): {d['good']}")
            out.append(f"  bad  (lines {_lines(d['bad_lines'])}): {d['bad']}")
        out.append("")
        out.append(f"{'state':<48} {'good':>12} {'bad':>12}")
        for g, b in self.aligned:
            label = _label(g, b)
            out.append(f"{label:<48} {_duration_text(g):>12} {_duration_text(b):>12}")
        for key, value in self.differences.items():
            if value.get("same"):
                continue
            out.append(f"{key.replace('_', ' ')}: good {value['good']}  |  bad {value['bad']}")
        return "\n".join(out)


def _label(first: Step | None, second: Step | None) -> str:
    step = first if first is not None else second
    return step.label if step is not None else "?"


def _lines(lines: list[int]) -> str:
    return "–".join(str(n) for n in lines) if lines else "-"


def _duration(step: Step | None) -> float | None:
    if step is None or step.start_time is None or step.end_time is None:
        return None
    return round(step.end_time - step.start_time, 3)


def _duration_text(step: Step | None) -> str:
    if step is None:
        return "-"
    seconds = _duration(step)
    return f"{seconds:.3f} s" if seconds is not None else f"line {step.first_line}"


def _step_json(step: Step | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {
        "first_line": step.first_line,
        "last_line": step.last_line,
        "entries": step.entries,
        "seconds": _duration(step),
        "reads": list(step.reads),
        "records_in": [list(r) for r in step.records_in],
        "records_out": [list(r) for r in step.records_out],
        "alerts": list(step.alerts),
        "errors": list(step.errors),
        "ending": step.ending,
        "did": step.describe(),
    }


def _same_state(a: Step, b: Step) -> bool:
    if a.name and b.name:
        return a.name == b.name
    return a.number == b.number


def _align(good: list[Step], bad: list[Step]) -> list[tuple[Step | None, Step | None]]:
    # Start at the first state both traces have (fragments may start mid-handshake).
    gi = bi = 0
    if good and bad and not _same_state(good[0], bad[0]):
        later_bad = next((i for i, s in enumerate(bad) if _same_state(s, good[0])), None)
        later_good = next((i for i, s in enumerate(good) if _same_state(s, bad[0])), None)
        if later_bad is not None:
            bi = later_bad
        elif later_good is not None:
            gi = later_good
    pairs: list[tuple[Step | None, Step | None]] = []
    while gi < len(good) or bi < len(bad):
        g = good[gi] if gi < len(good) else None
        b = bad[bi] if bi < len(bad) else None
        pairs.append((g, b))
        gi += 1
        bi += 1
    return pairs


def diff_traces(good: HandshakeTrace, bad: HandshakeTrace) -> TraceDiff:
    """Align two traces by handshake state and report the first divergence and other differences."""
    aligned = _align(steps_of(good), steps_of(bad))
    divergence: dict[str, Any] | None = None
    for g, b in aligned:
        if g is None or b is None or not _same_state(g, b) or g.ending != b.ending:
            state = _label(b, g)
            if g is not None and b is not None and not _same_state(g, b):
                state = f"{g.label} (good) / {b.label} (bad)"
            divergence = {
                "state": state,
                "good": g.describe() if g else "the good log has no such state (it ends or starts elsewhere)",
                "bad": b.describe() if b else "the bad log has no such state (it ends or starts elsewhere)",
                "good_lines": [g.first_line, g.last_line] if g else [],
                "bad_lines": [b.first_line, b.last_line] if b else [],
            }
            break
    differences = {
        "inbound_reads": _compare(good.inbound_reads, bad.inbound_reads),
        "records_in": _compare(
            [RECORD_TYPES.get(r.type, str(r.type)) for r in good.records_in],
            [RECORD_TYPES.get(r.type, str(r.type)) for r in bad.records_in],
        ),
        "records_out": _compare(
            [RECORD_TYPES.get(r.type, str(r.type)) for r in good.records_out],
            [RECORD_TYPES.get(r.type, str(r.type)) for r in bad.records_out],
        ),
        "ciphersuite": _compare(good.ciphersuite, bad.ciphersuite),
        "alerts": _compare(
            [_alert_text(a) for a in good.alerts],
            [_alert_text(a) for a in bad.alerts],
        ),
    }
    return TraceDiff(aligned, divergence, differences)


def _alert_text(alert: Alert) -> str:
    if alert.description is None:
        return f"{alert.direction} (description not logged)"
    return f"{alert.direction} {alert.name or alert.description}"


def _compare(good: Any, bad: Any) -> dict[str, Any]:
    return {"good": good, "bad": bad, "same": good == bad}
