"""A failing attempt beside a passing one: the timeline chart and the trace diff, into the evidence.

The run's passing attempt of the same variant (on another path) is the reference: same image, same
server, only the path differs — the comparison the incident's engineer made by hand, line by line,
over weeks. Writes `timeline.png` (both attempts, see `rig.report.timeline`) and, when a reference
exists, `diff.txt` / `diff.json` from `rig.mbedtls.diff_traces`.

A side with the attempt's wire view (`with_wire(side, folder)`: its `wire.json`, else its
`capture.pcap`) also shows both directions' TLS records under the UART states; the capture's wall
times are put on the trace's monotonic axis with the host's clock offset from the attempt's events.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rig.errors import ConfigError
from rig.mbedtls import HandshakeTrace, diff_traces
from rig.report import evidence as files
from rig.report.evidence import capture_stopped, host_clock_offset, write_json
from rig.report.timeline import Silence, TimelineSeries, WireMark, plot_timeline
from rig.wire import Side as Sender
from rig.wire import TlsRecord, WireView, read_capture

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Side:
    """One attempt to draw: its label (cell id and attempt), its trace and its verdict text.

    `wire` and `wall_minus_mono` (the host's wall clock minus its monotonic clock) add the record
    lane; a side without both draws none.
    """

    label: str
    trace: HandshakeTrace
    verdict: str
    end: float | None = None  # host monotonic time of the verdict
    wire: WireView | None = None
    wall_minus_mono: float | None = None


def with_wire(side: Side, folder: Path) -> Side:
    """The side with the wire of the attempt whose evidence is in `folder` (unchanged without a capture).

    Reads `wire.json`, else `capture.pcap`; a capture that cannot be read leaves the chart without
    its record lane (and says so in the log) rather than without a chart.
    """
    offset = host_clock_offset(folder)
    wire: WireView | None = None
    try:
        if (folder / files.WIRE).is_file():
            wire = WireView.from_json(json.loads((folder / files.WIRE).read_text(encoding="utf-8")))
        elif (folder / files.CAPTURE).is_file():
            wire = read_capture(folder / files.CAPTURE, stopped=capture_stopped(folder), partial=True)
    except (ConfigError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: no record lane in the timeline: %s", folder, exc)
        wire = None
    if wire is None or offset is None:
        return side
    return dataclasses.replace(side, wire=wire, wall_minus_mono=offset)


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
    series = TimelineSeries(side.label, states=states, reads=reads, verdict=side.verdict, end=end)
    if side.wire is not None and side.wall_minus_mono is not None and times:
        _add_wire(series, side.wire, origin + side.wall_minus_mono)
    return series


def _add_wire(series: TimelineSeries, wire: WireView, wall_origin: float) -> None:
    """Records of every TLS connection, and the main one's silence, in seconds since `wall_origin`."""
    for connection in wire.tls_connections:
        senders: tuple[Sender, Sender] = ("client", "server")
        for sender in senders:
            for record in connection.side(sender).records:
                when = record.when
                if when is not None and when >= wall_origin:
                    series.records.append(
                        WireMark(when - wall_origin, sender, record.size, record_label(record))
                    )
    main = wire.main
    if main is None or wire.end is None or (last := main.last_sender) is None:
        return
    quiet: Sender = "server" if last == "client" else "client"
    since = main.side(quiet).last_data_time or main.start
    if wire.end - since >= 1.0 and since >= wall_origin:
        series.silence = Silence(quiet, since - wall_origin, wire.end - wall_origin)


# Short names of what a record carries, for the chart's labels.
_SHORT: Final = {
    "ClientHello": "CH",
    "ServerHello": "SH",
    "Certificate": "Cert",
    "ServerKeyExchange": "SKE",
    "CertificateRequest": "CR",
    "ServerHelloDone": "SHD",
    "ClientKeyExchange": "CKE",
    "CertificateVerify": "CV",
    "NewSessionTicket": "NST",
    "Finished": "Fin",
}


def record_label(record: TlsRecord) -> str:
    """ "SH+Cert+SKE+CR+SHD", "CCS", "Fin", "App", "Alert fatal decrypt_error", "Alert (enc)"…"""
    if record.messages:
        return "+".join(_SHORT.get(m.strip("…"), m.strip("…")) for m in record.messages)
    if record.content_type == 20:
        return "CCS"
    if record.alert is not None:
        return "Alert (enc)" if record.alert.encrypted else f"Alert {record.alert.description_name}"
    if record.content_type == 23:
        return "App"
    if record.content_type == 22 and record.encrypted:
        return "Fin" if record.content.startswith("Finished") else "HS (enc)"
    return record.type_name


def write_comparison(folder: Path, failing: Side, passing: Side | None, title: str = "") -> list[Path]:
    """Write the timeline chart (and the diff when there is a passing side) into `folder`.

    `folder` is the failing attempt's: its wire is read from there when the side has none.
    """
    written = []
    if failing.wire is None:
        failing = with_wire(failing, folder)
    sides = [failing] if passing is None else [failing, passing]
    written.append(plot_timeline([series_from_trace(s) for s in sides], folder / files.TIMELINE, title=title))
    if passing is not None:
        result = diff_traces(passing.trace, failing.trace)
        (folder / files.DIFF_TEXT).write_text(result.render() + "\n", encoding="utf-8")
        written.append(folder / files.DIFF_TEXT)
        written.append(write_json(folder / files.DIFF_JSON, result.to_json()))
    return written
