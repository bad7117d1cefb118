"""The handshake timeline chart: client state over time and inbound read sizes, failing beside passing.

A failing attempt is drawn next to the run's passing attempt of the same variant (another path), on
the same axes scale, so the eye sees at once where the failing one stopped advancing and what the
reads looked like before it (the incident's 1393-then-2 reads against a healthy flight). Input is a
plain `TimelineSeries` (built by the cell runner from the parser's trace); output is a PNG made with
matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TimelineSeries:
    """One attempt's handshake as points in time (seconds since the attempt's first handshake line)."""

    label: str
    states: list[tuple[float, int, str]] = field(default_factory=list)  # (t, state number, state name)
    reads: list[tuple[float, int]] = field(default_factory=list)  # (t, bytes returned by f_recv)
    verdict: str = ""
    end: float | None = None  # when the verdict was reached (drawn as a marker)


def plot_timeline(series: list[TimelineSeries], out: Path, title: str = "") -> Path:
    """Draw each series as a column: states (top) and inbound reads (bottom); write `out` (PNG)."""
    if not series:
        raise ValueError("plot_timeline needs at least one series")
    plt = _pyplot()
    columns = len(series)
    figure, axes = plt.subplots(
        2, columns, figsize=(6.5 * columns, 6.0), sharex="col", squeeze=False, height_ratios=(3, 2)
    )
    top_state = max((n for s in series for _, n, _ in s.states), default=16)
    names = {n: name for s in series for _, n, name in s.states}
    horizon = max((_last_time(s) for s in series), default=1.0) or 1.0
    for column, one in enumerate(series):
        states_axis, reads_axis = axes[0][column], axes[1][column]
        if one.states:
            times = [t for t, _, _ in one.states]
            numbers = [n for _, n, _ in one.states]
            end = one.end if one.end is not None else times[-1]
            states_axis.step([*times, max(end, times[-1])], [*numbers, numbers[-1]], where="post", color="C0")
            states_axis.plot(times, numbers, "o", markersize=3, color="C0")
        if one.end is not None:
            states_axis.axvline(one.end, color="C3", linestyle="--", linewidth=1)
        states_axis.set_title(f"{one.label}\n{one.verdict}", fontsize=10)
        states_axis.set_ylim(-0.5, top_state + 0.5)
        ticks = sorted(names)
        states_axis.set_yticks(ticks)
        states_axis.set_yticklabels([f"{n} {names[n]}"[:28] for n in ticks], fontsize=6)
        states_axis.grid(True, alpha=0.3)
        if one.reads:
            # Cumulative inbound bytes: a healthy flight climbs in a few steps; a stall is a flat line.
            times, total, cumulative = [], 0, []
            for t, size in one.reads:
                total += size
                times.append(t)
                cumulative.append(total)
            end = max(one.end or times[-1], times[-1])
            reads_axis.step([0.0, *times, end], [0, *cumulative, total], where="post", color="C2")
            reads_axis.plot(times, cumulative, "o", markersize=3, color="C2")
            shown = ", ".join(str(size) for _, size in one.reads[:14])
            more = f", … ({len(one.reads)} reads)" if len(one.reads) > 14 else ""
            reads_axis.text(
                0.99, 0.04, f"f_recv sizes: {shown}{more}", transform=reads_axis.transAxes,
                fontsize=7, va="bottom", ha="right", wrap=True,
            )  # fmt: skip
        reads_axis.set_ylabel("bytes received (total)")
        reads_axis.set_xlabel("seconds since the handshake started")
        reads_axis.set_xlim(0, horizon * 1.05)
        reads_axis.grid(True, alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, imported on first use (it costs ~0.6 s at pytest start)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _last_time(series: TimelineSeries) -> float:
    times = [t for t, _, _ in series.states] + [t for t, _ in series.reads]
    if series.end is not None:
        times.append(series.end)
    return max(times, default=0.0)
