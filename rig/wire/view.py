"""The wire as a witness: a capture read into connections, each direction's segments and TLS records.

`read_capture(path)` is the whole reading: packets (`capture`), connections and reassembled
streams (`tcp`), records and handshake messages (`tls`), gathered into a `WireView` that says who
sent last and how long the other side has been silent. `WireView.to_json()` is `wire.json` and
`rig wire --json`; `render()` is the short text of `rig wire`.

Silence needs the end of the capture, which a pcap file does not record: a capture of a handshake
that stalled ends with the client's last segment, long before the bench stopped listening. Give
`stopped` (the wall time the capture was stopped, on the capturing host's clock) to measure it
until then; without it the silences run until the last packet, and the view says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from rig.errors import ConfigError
from rig.wire import tables
from rig.wire.capture import ACK, RST, read_packets
from rig.wire.tcp import (
    SIDES,
    TLS_PORTS,
    Endpoint,
    Hole,
    Segment,
    Side,
    Stream,
    TcpConnection,
    split_connections,
)
from rig.wire.tls import HandshakeMessage, TlsRecord, looks_like_tls, parse_records

SCHEMA: Final = 1
END_LAST_PACKET: Final = "last packet"
END_STOPPED: Final = "capture stopped"


@dataclass
class Direction:
    """What one side sent on a connection: segments, holes, TLS records and handshake messages.

    `stream` is the reassembled byte stream (holes read as zeros), kept for comparisons with what
    the stack logged; it is not part of the JSON (`from_json` gives it empty).
    """

    sender: Side
    segments: list[Segment] = field(default_factory=list)
    holes: list[Hole] = field(default_factory=list)
    records: list[TlsRecord] = field(default_factory=list)
    messages: list[HandshakeMessage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    length: int = 0  # stream bytes: the highest stream position seen
    mss: int | None = None
    window_scale: int | None = None
    fin_time: float | None = None
    rst_time: float | None = None
    last_data_time: float | None = None  # the last segment with bytes never seen before
    silent_s: float | None = None  # from its last new data (or the connection's start) to the capture's end
    stream: bytes = field(default=b"", repr=False)

    @property
    def data_segments(self) -> list[Segment]:
        return [s for s in self.segments if s.length]

    @property
    def retransmissions(self) -> int:
        return sum(1 for s in self.segments if s.retransmission)

    def record_bytes(self, record: TlsRecord) -> bytes | None:
        """The record as sent (header and body), or None when the stream is not at hand or lacks a byte."""
        if not self.stream or record.missing or record.end > len(self.stream):
            return None
        return self.stream[record.offset : record.end]

    def to_json(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "length": self.length,
            "mss": self.mss,
            "window_scale": self.window_scale,
            "fin_time": self.fin_time,
            "rst_time": self.rst_time,
            "last_data_time": self.last_data_time,
            "silent_s": self.silent_s,
            "retransmissions": self.retransmissions,
            "holes": [h.to_json() for h in self.holes],
            "records": [r.to_json() for r in self.records],
            "messages": [m.to_json() for m in self.messages],
            "notes": list(self.notes),
            "segments": [s.to_json() for s in self.segments],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Direction:
        return cls(
            sender=data["sender"],
            segments=[Segment.from_json(s) for s in data.get("segments", [])],
            holes=[Hole.from_json(h) for h in data.get("holes", [])],
            records=[TlsRecord.from_json(r) for r in data.get("records", [])],
            messages=[HandshakeMessage.from_json(m) for m in data.get("messages", [])],
            notes=[str(n) for n in data.get("notes", [])],
            length=int(data.get("length", 0)),
            mss=data.get("mss"),
            window_scale=data.get("window_scale"),
            fin_time=data.get("fin_time"),
            rst_time=data.get("rst_time"),
            last_data_time=data.get("last_data_time"),
            silent_s=data.get("silent_s"),
        )


@dataclass
class Connection:
    """One TCP connection: endpoints, what TLS it carried, and both directions."""

    index: int
    client: Endpoint
    server: Endpoint
    start: float
    end: float
    joined: bool  # began before the capture (no SYN in it)
    tls: bool
    client_side: Direction
    server_side: Direction
    version: int | None = None
    cipher_suite: int | None = None
    server_name: str | None = None

    def side(self, sender: Side) -> Direction:
        return self.client_side if sender == "client" else self.server_side

    @property
    def cipher_suite_name(self) -> str | None:
        return None if self.cipher_suite is None else tables.cipher_suite_name(self.cipher_suite)

    @property
    def last_sender(self) -> Side | None:
        """The side whose new data came last; None when neither sent any."""
        times = {s: self.side(s).last_data_time for s in SIDES}
        known = {s: t for s, t in times.items() if t is not None}
        if not known:
            return None
        return (
            "client" if known.get("client", float("-inf")) >= known.get("server", float("-inf")) else "server"
        )

    @property
    def silence_s(self) -> float | None:
        """How long the side that did not send last has been silent at the capture's end."""
        last = self.last_sender
        if last is None:
            return None
        return self.side("server" if last == "client" else "client").silent_s

    @property
    def closed(self) -> str | None:
        """How the connection ended in the capture: "FIN by client", "RST by server", … or None."""
        events = []
        for sender in SIDES:
            one = self.side(sender)
            if one.rst_time is not None:
                events.append((one.rst_time, f"RST by {sender}"))
            if one.fin_time is not None:
                events.append((one.fin_time, f"FIN by {sender}"))
        return ", ".join(text for _, text in sorted(events)) or None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "client": str(self.client),
            "server": str(self.server),
            "client_ip": self.client.ip,
            "client_port": self.client.port,
            "server_ip": self.server.ip,
            "server_port": self.server.port,
            "start": self.start,
            "end": self.end,
            "joined": self.joined,
            "tls": self.tls,
            "version": None if self.version is None else tables.version_name(self.version),
            "cipher_suite": self.cipher_suite,
            "cipher_suite_name": self.cipher_suite_name,
            "server_name": self.server_name,
            "last_sender": self.last_sender,
            "silence_s": self.silence_s,
            "closed": self.closed,
            "client_side": self.client_side.to_json(),
            "server_side": self.server_side.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Connection:
        version = data.get("version")
        return cls(
            index=int(data["index"]),
            client=Endpoint(str(data["client_ip"]), int(data["client_port"])),
            server=Endpoint(str(data["server_ip"]), int(data["server_port"])),
            start=float(data["start"]),
            end=float(data["end"]),
            joined=bool(data["joined"]),
            tls=bool(data["tls"]),
            client_side=Direction.from_json(data["client_side"]),
            server_side=Direction.from_json(data["server_side"]),
            version=None if version is None else tables.version_number(str(version)),
            cipher_suite=data.get("cipher_suite"),
            server_name=data.get("server_name"),
        )


@dataclass
class WireView:
    """A capture as a witness: its connections in order, the end it is measured to, and how it was read."""

    source: str
    format: str
    link: str
    frames: int
    other_frames: int
    start: float | None
    end: float | None
    end_basis: str  # END_LAST_PACKET or END_STOPPED
    connections: list[Connection] = field(default_factory=list)
    truncated: str | None = None

    @property
    def tls_connections(self) -> list[Connection]:
        return [c for c in self.connections if c.tls]

    @property
    def main(self) -> Connection | None:
        """The connection a verdict is about: the last TLS connection (after a reboot, the reconnect)."""
        tls = self.tls_connections
        if tls:
            return tls[-1]
        return self.connections[-1] if self.connections else None

    @property
    def last_sender(self) -> Side | None:
        return self.main.last_sender if self.main else None

    @property
    def silence_s(self) -> float | None:
        return self.main.silence_s if self.main else None

    def to_json(self) -> dict[str, Any]:
        main = self.main
        return {
            "schema": SCHEMA,
            "source": self.source,
            "format": self.format,
            "link": self.link,
            "frames": self.frames,
            "other_frames": self.other_frames,
            "start": self.start,
            "end": self.end,
            "end_basis": self.end_basis,
            "truncated": self.truncated,
            "main": None if main is None else main.index,
            "last_sender": self.last_sender,
            "silence_s": self.silence_s,
            "connections": [c.to_json() for c in self.connections],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WireView:
        if data.get("schema") != SCHEMA:
            raise ConfigError(f"wire view schema {data.get('schema')!r}: this rig reads schema {SCHEMA}")
        return cls(
            source=str(data["source"]),
            format=str(data["format"]),
            link=str(data["link"]),
            frames=int(data["frames"]),
            other_frames=int(data["other_frames"]),
            start=data.get("start"),
            end=data.get("end"),
            end_basis=str(data["end_basis"]),
            connections=[Connection.from_json(c) for c in data.get("connections", [])],
            truncated=data.get("truncated"),
        )

    def render(self, *, segments: bool = False) -> str:
        """A short text: per connection its records in time order, holes, and who went silent."""
        return "\n".join(_render(self, segments))


def read_capture(path: Path | str, *, stopped: float | None = None, partial: bool = False) -> WireView:
    """Read a capture file into a `WireView`; `ConfigError` (naming the file) when it cannot be read."""
    target = Path(path)
    try:
        data = target.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{target}: no such capture file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{target}: is a folder, not a capture file") from exc
    except OSError as exc:
        raise ConfigError(f"{target}: cannot read the capture ({exc.strerror or exc})") from exc
    return read_capture_bytes(data, str(target), stopped=stopped, partial=partial)


def read_capture_bytes(
    data: bytes, source: str, *, stopped: float | None = None, partial: bool = False
) -> WireView:
    """The same as `read_capture` for a capture's bytes; `source` names it in errors and the view."""
    capture = read_packets(data, source, partial=partial)
    times = [p.time for p in capture.packets]
    start = min(times, default=None)
    last = max(times, default=None)
    end: float | None = last
    basis = END_LAST_PACKET
    if stopped is not None and (last is None or stopped >= last):
        end, basis = stopped, END_STOPPED
    connections = [_connection(c, end) for c in split_connections(capture.packets)]
    return WireView(
        source=source,
        format=capture.format,
        link=capture.link,
        frames=capture.frames,
        other_frames=capture.other_frames,
        start=start,
        end=end,
        end_basis=basis,
        connections=connections,
        truncated=capture.truncated,
    )


def _connection(tcp: TcpConnection, end: float | None) -> Connection:
    sides: dict[Side, Direction] = {}
    hellos = {}
    tls = any(looks_like_tls(tcp.streams[s]) for s in SIDES) or tcp.server.port in TLS_PORTS
    for sender in SIDES:
        stream = tcp.streams[sender]
        reading = parse_records(stream) if tls else None
        direction = Direction(
            sender=sender,
            segments=stream.segments,
            holes=stream.holes,
            records=reading.records if reading else [],
            messages=reading.messages if reading else [],
            notes=reading.notes if reading else [],
            length=stream.length,
            mss=stream.mss,
            window_scale=stream.window_scale,
            fin_time=stream.fin_time,
            rst_time=stream.rst_time,
            last_data_time=stream.last_data_time,
            stream=stream.data,
        )
        _stamp_acks(direction.records, stream, tcp, "server" if sender == "client" else "client")
        if end is not None:
            since = direction.last_data_time if direction.last_data_time is not None else tcp.start
            direction.silent_s = round(max(0.0, end - since), 6)
        sides[sender] = direction
        if reading is not None:
            hellos[sender] = reading.hello
    server_hello = hellos.get("server")
    client_hello = hellos.get("client")
    return Connection(
        index=tcp.index,
        client=tcp.client,
        server=tcp.server,
        start=tcp.start,
        end=tcp.end,
        joined=tcp.joined,
        tls=tls,
        client_side=sides["client"],
        server_side=sides["server"],
        version=server_hello.version if server_hello else None,
        cipher_suite=server_hello.cipher_suite if server_hello else None,
        server_name=client_hello.server_name if client_hello else None,
    )


def _stamp_acks(records: list[TlsRecord], stream: Stream, tcp: TcpConnection, peer: Side) -> None:
    """Each record's `acked_time`: the first of the peer's ACKs that covers the record's last byte."""
    acks = [
        (p.time, stream.relative(p.ack))
        for p in tcp.packets
        if tcp.side_of(p) == peer and p.flags & ACK and not p.flags & RST
    ]
    pending = sorted(records, key=lambda r: r.end)
    waiting, highest = 0, -1
    for when, position in acks:
        if position is None or position <= highest:
            continue
        highest = position
        while waiting < len(pending) and pending[waiting].end <= highest:
            pending[waiting].acked_time = when
            waiting += 1


# ------------------------------------------------------------------------------------------ render

_ARROW: Final[dict[Side, str]] = {"client": "client→server", "server": "server→client"}


def _render(view: WireView, segments: bool) -> list[str]:
    origin = view.start or 0.0
    span = (view.end - origin) if view.end is not None else 0.0
    lines = [
        f"{view.source}: {view.format} ({view.link}), {view.frames} frames, "
        f"{_count(len(view.connections), 'TCP connection')}, {span:.3f} s until the {view.end_basis}"
        + (f"; times from the first packet, {_utc(origin)}" if view.start is not None else "")
    ]
    if view.truncated:
        lines.append(f"  truncated: {view.truncated}")
    if not view.connections:
        lines.append("  no TCP segment in the capture")
    for connection in view.connections:
        lines.extend(_render_connection(view, connection, origin, segments))
    return lines


def _render_connection(view: WireView, c: Connection, origin: float, segments: bool) -> list[str]:
    facts = [f"{c.client} → {c.server}"]
    if c.joined:
        facts.append("joined mid-connection")
    if c.tls:
        facts.append(tables.version_name(c.version) if c.version else "TLS")
    if c.cipher_suite_name:
        facts.append(c.cipher_suite_name)
    if c.server_name:
        facts.append(f"SNI {c.server_name}")
    main = " (main)" if view.main is c and len(view.connections) > 1 else ""
    lines = [f"connection {c.index}{main}: " + ", ".join(facts)]
    for sender in SIDES:
        one = c.side(sender)
        parts = [
            f"{_count(len(one.segments), 'segment')} ({len(one.data_segments)} with data)",
            f"{one.length} bytes",
            _count(len(one.records), "record"),
        ]
        if one.retransmissions:
            parts.append(f"{one.retransmissions} retransmitted")
        if one.mss:
            parts.append(f"MSS {one.mss}")
        lines.append(f"  {_ARROW[sender]}: " + ", ".join(parts))
    events: list[tuple[float, int, str]] = []
    for sender in SIDES:
        one = c.side(sender)
        for record in one.records:
            when = record.when
            if when is not None:
                events.append((when, record.offset, f"{sender:<6} {record.size:>6}  {record.content}"))
        if segments:
            for s in one.segments:
                note = _segment_note(s)
                events.append(
                    (
                        s.time,
                        -1,
                        f"  {sender:<6} seg #{s.number} {s.flags:<3} off {s.offset} len {s.length} win {s.window}{note}",
                    )
                )
    if events:
        lines.append("      time  from     bytes  record")
        for when, _, text in sorted(events, key=lambda e: (e[0], e[1])):
            lines.append(f"  {when - origin:8.3f}  {text}")
    for sender in SIDES:
        one = c.side(sender)
        for hole in one.holes:
            passed = "acknowledged by the receiver" if hole.acked else "never acknowledged"
            lines.append(
                f"  hole {_ARROW[sender]} bytes {hole.start}–{hole.end} ({hole.end - hole.start}): {hole.reason}, {passed}"
            )
        for note in one.notes:
            lines.append(f"  note {_ARROW[sender]}: {note}")
    if c.closed:
        lines.append(f"  closed: {c.closed}")
    last = c.last_sender
    if last is None:
        lines.append("  no data either way")
    else:
        other: Side = "server" if last == "client" else "client"
        when = c.side(last).last_data_time
        when_text = "" if when is None else f" at {when - origin:.3f} s"
        silence = c.side(other).silent_s
        silence_text = (
            "" if silence is None else f"; {other} silent for {silence:.3f} s until the {view.end_basis}"
        )
        lines.append(f"  last sender: {last}{when_text}{silence_text}")
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _utc(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _segment_note(s: Segment) -> str:
    notes = []
    if s.retransmission:
        notes.append("retransmission")
    if s.out_of_order:
        notes.append("out of order")
    if s.gap_before:
        notes.append(f"{s.gap_before} bytes before it not captured")
    if s.overlap and not s.retransmission:
        notes.append(f"{s.overlap} bytes overlap")
    if s.differs:
        notes.append("bytes differ from the first copy")
    if s.foreign:
        notes.append("outside the stream")
    return f"  [{', '.join(notes)}]" if notes else ""
