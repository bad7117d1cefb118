"""The handshake timeline chart: client state over time, inbound read sizes and the wire's TLS records.

A failing attempt is drawn next to the run's passing attempt of the same variant (another path), on
the same axes scale, so the eye sees at once where the failing one stopped advancing and what the
reads looked like before it (the incident's 1393-then-2 reads against a healthy flight). When a
series has records from the capture (`WireMark`s), a third row shows both directions' TLS records
(hub→server above, server→hub below, type and size) and the span a side stayed silent until the
capture ended: the incident's server that sent nothing after the client's Finished. Input is a plain
`TimelineSeries` (built by `rig.report.comparison` from the parser's trace and the capture's view);
output is a PNG made with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal


@dataclass(frozen=True)
class WireMark:
    """One TLS record on the wire: when (series seconds), who sent it, its size and a short label."""

    t: float
    sender: Literal["client", "server"]
    size: int  # bytes on the wire, header included
    label: str  # e.g. "SH+Cert+SKE+CR+SHD", "CCS", "Fin", "Alert"


@dataclass(frozen=True)
class Silence:
    """A side that sent nothing from `start` until the capture ended at `end` (series seconds)."""

    sender: Literal["client", "server"]
    start: float
    end: float


@dataclass
class TimelineSeries:
    """One attempt's handshake as points in time (seconds since the attempt's first handshake line).

    `records` and `silence` come from the capture; a series without them (no capture, or a caller
    that has none) draws no record lane, and a chart none of whose series has records keeps two rows.
    """

    label: str
    states: list[tuple[float, int, str]] = field(default_factory=list)  # (t, state number, state name)
    reads: list[tuple[float, int]] = field(default_factory=list)  # (t, bytes returned by f_recv)
    verdict: str = ""
    end: float | None = None  # when the verdict was reached (drawn as a marker)
    records: list[WireMark] = field(default_factory=list)
    silence: Silence | None = None


def plot_timeline(series: list[TimelineSeries], out: Path, title: str = "") -> Path:
    """Draw each series as a column: states (top) and inbound reads (bottom); write `out` (PNG)."""
    if not series:
        raise ValueError("plot_timeline needs at least one series")
    plt = _pyplot()
    columns = len(series)
    wire = any(s.records or s.silence for s in series)
    rows, ratios = (3, (3, 2, 2.2)) if wire else (2, (3, 2))
    figure, axes = plt.subplots(
        rows, columns, figsize=(6.5 * columns, 8.6 if wire else 6.0), sharex="col", squeeze=False,
        height_ratios=ratios,
    )  # fmt: skip
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
        reads_axis.set_xlim(0, horizon * 1.05)
        reads_axis.grid(True, alpha=0.3)
        if wire:
            _draw_wire(axes[2][column], one)
        axes[rows - 1][column].set_xlabel("seconds since the handshake started")
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


# Lanes of the record row: the hub (client) sends above, the server below.
_LANES: Final = {"client": 1, "server": 0}
_LANE_NAMES: Final = ("server→hub", "hub→server")
_COLOURS: Final = {"client": "C0", "server": "C1"}


def _draw_wire(axis: Any, one: TimelineSeries) -> None:
    """The record lanes: one marker per record (area grows with size), labelled with type and size."""
    axis.set_ylim(-1.1, 2.1)
    axis.set_yticks([0, 1])
    axis.set_yticklabels(_LANE_NAMES, fontsize=7)
    axis.grid(True, axis="x", alpha=0.3)
    if one.silence is not None:
        lane = _LANES[one.silence.sender]
        axis.axvspan(one.silence.start, one.silence.end, ymin=(lane + 0.85) / 3.2, ymax=(lane + 1.35) / 3.2,
                     color=_COLOURS[one.silence.sender], alpha=0.12, hatch="//", linewidth=0)  # fmt: skip
        axis.text(
            (one.silence.start + one.silence.end) / 2, lane + 0.35,
            f"{one.silence.sender} silent {one.silence.end - one.silence.start:.1f} s",
            fontsize=7, ha="center", va="bottom", color=_COLOURS[one.silence.sender],
        )  # fmt: skip
    if not one.records:
        axis.text(0.5, 0.5, "no TLS record in the capture", transform=axis.transAxes, fontsize=8, ha="center")
        return
    for sender in ("client", "server"):
        marks = [m for m in one.records if m.sender == sender]
        if not marks:
            continue
        lane = _LANES[sender]
        axis.scatter(
            [m.t for m in marks], [lane] * len(marks), s=[12 + m.size / 60 for m in marks],
            color=_COLOURS[sender], alpha=0.7, zorder=3,
        )  # fmt: skip
        # Records a few ms apart (a flight) would print on top of each other: stagger their labels,
        # upwards for the hub's lane and downwards for the server's.
        previous, step, direction = None, 0, 1 if sender == "client" else -1
        for mark in marks:
            step = step + 1 if previous is not None and mark.t - previous < 0.15 * _span(one) else 0
            previous = mark.t
            axis.annotate(
                f"{mark.label} {mark.size}", (mark.t, lane), xytext=(2, direction * (4 + 7 * (step % 5))),
                textcoords="offset points", fontsize=6, va="bottom" if direction > 0 else "top",
                color=_COLOURS[sender],
            )  # fmt: skip


def _span(series: TimelineSeries) -> float:
    return _last_time(series) or 1.0


def _last_time(series: TimelineSeries) -> float:
    times = [t for t, _, _ in series.states] + [t for t, _ in series.reads] + [m.t for m in series.records]
    if series.end is not None:
        times.append(series.end)
    if series.silence is not None:
        times.append(series.silence.end)
    return max(times, default=0.0)
