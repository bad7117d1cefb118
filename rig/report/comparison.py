"""A failing attempt beside a passing one: the timeline chart and the trace diff, into the evidence.

The run's passing attempt of the same variant (on another path) is the reference: same image, same
server, only the path differs — the comparison the incident's engineer made by hand, line by line,
over weeks. Writes `timeline.png` (both attempts, see `rig.report.timeline`) and, when a reference
exists, `diff.txt` / `diff.json` from `rig.mbedtls.diff_traces`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rig.mbedtls import HandshakeTrace, diff_traces
from rig.report import evidence as files
from rig.report.evidence import write_json
from rig.report.timeline import TimelineSeries, plot_timeline


@dataclass(frozen=True)
class Side:
    """One attempt to draw: its label (cell id and attempt), its trace and its verdict text."""

    label: str
    trace: HandshakeTrace
    verdict: str
    end: float | None = None  # host monotonic time of the verdict


def series_from_trace(side: Side) -> TimelineSeries:
    """States and inbound reads of a trace, in seconds since its first timestamped event."""
    trace = side.trace
    times = [v.host_time for v in trace.states if v.host_time is not None]
    times += [e.host_time for e in trace.events if e.host_time is not None]
    origin = min(times, default=0.0)
    states = [
        (v.host_time - origin, v.number, (v.name or "").removeprefix("MBEDTLS_SSL_"))
        for v in trace.states
        if v.host_time is not None and v.number is not None
    ]
    reads = []
    for event in trace.events:
        value = event.data.get("value")
        if event.kind == "recv" and event.host_time is not None and isinstance(value, int) and value > 0:
            reads.append((event.host_time - origin, value))
    end = side.end - origin if side.end is not None and times else None
    return TimelineSeries(side.label, states=states, reads=reads, verdict=side.verdict, end=end)


def write_comparison(folder: Path, failing: Side, passing: Side | None, title: str = "") -> list[Path]:
    """Write the timeline chart (and the diff when there is a passing side) into `folder`."""
    written = []
    sides = [failing] if passing is None else [failing, passing]
    written.append(plot_timeline([series_from_trace(s) for s in sides], folder / files.TIMELINE, title=title))
    if passing is not None:
        result = diff_traces(passing.trace, failing.trace)
        (folder / files.DIFF_TEXT).write_text(result.render() + "\n", encoding="utf-8")
        written.append(folder / files.DIFF_TEXT)
        written.append(write_json(folder / files.DIFF_JSON, result.to_json()))
    return written
