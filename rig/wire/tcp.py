"""TCP packets → connections → each direction's byte stream, reassembled in sequence order.

A capture of the hub's LAN may hold several connections, even on the same four-tuple: the simulated
hub and a rebooted PIC32 both reuse the same local port and initial sequence number, so a SYN after
data (or after FIN/RST) starts a new connection, in the order the capture shows them. A capture that
starts in the middle of a connection still gives one, "joined" without its handshake.

Each direction's bytes are placed by sequence number (RFC 9293 §3.4), the first copy of a byte
wins (a receiver keeps what it took first; a later copy with other bytes is flagged `differs`), and
what the capture never saw is a `Hole` with its place in the stream and whether the receiver's
acknowledgements passed it (the segment reached the receiver, the capture missed it) or not (lost
before it). Segments are classified the way Wireshark's TCP analysis does: a retransmission
repeats sequence space already seen, an out-of-order segment fills space below the highest seen,
and `gap_before` counts the bytes skipped when one starts beyond it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Final, Literal

from rig.wire.capture import ACK, FIN, PSH, RST, SYN, URG, TcpPacket

Side = Literal["client", "server"]
SIDES: Final[tuple[Side, Side]] = ("client", "server")

# Ports of TLS services a hub talks to: MQTT over TLS (8883), HTTPS/MQTT with ALPN (443), 8443.
TLS_PORTS: Final = frozenset({443, 8443, 8883})
# A segment this far beyond the stream's end is not part of it (a capture of a hub holds kilobytes;
# the largest window RFC 7323 allows is 1 GiB): it is counted as foreign, never placed.
_MAX_JUMP: Final = 1 << 24
_HALF: Final = 1 << 31
_MOD: Final = 1 << 32


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass
class Segment:
    """One segment of a direction: when, where in the stream, how much, and what TCP made of it.

    `offset` is the stream position of the first payload byte (0 = the first byte after the SYN),
    -1 for a SYN; `window` is the advertised receive window in bytes, scaled when both SYNs
    negotiated a scale (RFC 7323 §2.2).
    """

    number: int
    time: float
    seq: int
    ack: int | None
    offset: int
    length: int
    window: int
    flags: str
    retransmission: bool = False
    out_of_order: bool = False
    gap_before: int = 0
    overlap: int = 0  # payload bytes already seen (all of them for a retransmission)
    differs: bool = False  # repeated bytes that are not the ones first seen
    foreign: bool = False  # sequence number far outside the stream: not placed

    def to_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _SEGMENT_FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Segment:
        return cls(**{k: v for k, v in data.items() if k in _SEGMENT_FIELDS})  # type: ignore[arg-type]


_SEGMENT_FIELDS: Final = tuple(Segment.__dataclass_fields__)


@dataclass(frozen=True)
class Hole:
    """Stream bytes [start, end) the capture does not hold.

    `reason`: "not captured" (no segment with them is in the capture) or "snap length" (segments
    were seen but tcpdump kept only their first bytes); `acked`: the receiver acknowledged past the
    hole's start, so the bytes did reach it.
    """

    start: int
    end: int
    reason: str
    acked: bool

    def to_json(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "reason": self.reason, "acked": self.acked}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Hole:
        return cls(int(str(data["start"])), int(str(data["end"])), str(data["reason"]), bool(data["acked"]))


class _Intervals:
    """A set of disjoint half-open integer intervals, kept merged and sorted."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        i = bisect.bisect_left(self.ends, start)
        j = i
        while j < len(self.starts) and self.starts[j] <= end:
            start, end = min(start, self.starts[j]), max(end, self.ends[j])
            j += 1
        self.starts[i:j] = [start]
        self.ends[i:j] = [end]

    def missing(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) not in the set."""
        parts: list[tuple[int, int]] = []
        i = bisect.bisect_right(self.ends, start)
        cursor = start
        while cursor < end and i < len(self.starts) and self.starts[i] < end:
            if self.starts[i] > cursor:
                parts.append((cursor, self.starts[i]))
            cursor = max(cursor, self.ends[i])
            i += 1
        if cursor < end:
            parts.append((cursor, end))
        return parts

    def covers(self, start: int, end: int) -> bool:
        return not self.missing(start, end)


class Stream:
    """The bytes one side sent, in sequence order, with the time each piece first appeared.

    `data` holds every stream position from 0 to the highest seen; the bytes of `holes` read as
    zero there. `time_complete(start, end)` is when the last byte of a range first appeared: when a
    receiver could first have had the whole range.
    """

    def __init__(self, sender: Side) -> None:
        self.sender: Side = sender
        self.segments: list[Segment] = []
        self.holes: list[Hole] = []
        self.isn: int | None = None  # set when the capture holds this side's SYN
        self.base: int | None = None  # sequence number of stream position 0
        self.mss: int | None = None
        self.window_scale: int | None = None
        self.fin_offset: int | None = None
        self.fin_time: float | None = None
        self.rst_time: float | None = None
        self.last_data_time: float | None = None  # the last segment with bytes never seen before
        self._data = bytearray()
        self._seen = _Intervals()  # sequence space any segment covered
        self._captured = _Intervals()  # stream bytes the capture holds
        self._piece_starts: list[int] = []
        self._piece_ends: list[int] = []
        self._piece_times: list[float] = []

    @property
    def data(self) -> bytes:
        return bytes(self._data)

    @property
    def length(self) -> int:
        return len(self._data)

    def has(self, start: int, end: int) -> bool:
        """Whether the capture holds every byte of [start, end)."""
        return end <= len(self._data) and self._captured.covers(start, end)

    def time_complete(self, start: int, end: int) -> float | None:
        """When the last byte of [start, end) first appeared; None when the capture lacks one."""
        if not self.has(start, end):
            return None
        i = bisect.bisect_right(self._piece_ends, start)
        latest: float | None = None
        while i < len(self._piece_starts) and self._piece_starts[i] < end:
            if latest is None or self._piece_times[i] > latest:
                latest = self._piece_times[i]
            i += 1
        return latest

    def place(self, packets: list[TcpPacket], scale: int | None) -> None:
        """Place this side's packets (in capture order); `scale`: the negotiated window shift or None."""
        self.base = self._base(packets)
        highest = 0
        for packet in packets:
            segment = self._segment(packet, scale)
            self.segments.append(segment)
            if packet.flags & SYN:
                if self.isn is not None and packet.seq != self.isn:
                    segment.foreign = True
                elif len(self.segments) > 1 and any(s.flags.startswith("S") for s in self.segments[:-1]):
                    segment.retransmission = True
                continue
            if packet.flags & RST:
                self.rst_time = packet.time if self.rst_time is None else self.rst_time
            start, end = segment.offset, segment.offset + packet.length
            if start < 0 or start > highest + _MAX_JUMP:
                segment.foreign = packet.length > 0 or bool(packet.flags & FIN)
                continue
            if packet.length:
                self._classify(segment, packet, highest)
                highest = max(highest, end)
            if packet.flags & FIN:
                if self.fin_offset == end and packet.length == 0:
                    segment.retransmission = True
                if self.fin_offset is None:
                    self.fin_offset, self.fin_time = end, packet.time
        if len(self._data) < highest:
            self._data.extend(bytes(highest - len(self._data)))

    def find_holes(self, acked_up_to: int | None) -> None:
        """Record what the capture lacks below the stream's end; `acked_up_to`: the peer's highest ACK."""
        holes = []
        for start, end in self._captured.missing(0, len(self._data)):
            # Split each gap by whether segments covering it were seen (cut by the snap length).
            cursor = start
            for seen_start, seen_end in _complement(self._seen.missing(start, end), start, end):
                if seen_start > cursor:
                    holes.append((cursor, seen_start, "not captured"))
                holes.append((seen_start, seen_end, "snap length"))
                cursor = seen_end
            if cursor < end:
                holes.append((cursor, end, "not captured"))
        self.holes = [
            Hole(s, e, reason, acked_up_to is not None and acked_up_to > s) for s, e, reason in holes
        ]

    def relative(self, sequence: int) -> int | None:
        """A sequence number of this side as a stream position (acks of the peer)."""
        if self.base is None:
            return None
        offset = (sequence - self.base) % _MOD
        return offset - _MOD if offset >= _HALF else offset

    # ----------------------------------------------------------------------------------------------

    def _base(self, packets: list[TcpPacket]) -> int | None:
        for packet in packets:
            if packet.flags & SYN:
                self.isn = packet.seq
                self.mss = packet.mss
                self.window_scale = packet.window_scale
                return (packet.seq + 1) % _MOD
        # Joined mid-stream: position 0 is the lowest sequence number of the first stretch of data.
        carrying = [p for p in packets if p.length or p.flags & FIN]
        if not carrying:
            return packets[0].seq if packets else None
        first = carrying[0].seq
        deltas = [(p.seq - first) % _MOD for p in carrying]
        earlier = [d - _MOD for d in deltas if d >= _HALF and d - _MOD > -_MAX_JUMP]
        return (first + min(earlier, default=0)) % _MOD

    def _segment(self, packet: TcpPacket, scale: int | None) -> Segment:
        window = packet.window if packet.flags & SYN or scale is None else packet.window << scale
        offset = -1 if packet.flags & SYN else (self.relative(packet.seq) or 0)
        return Segment(
            number=packet.number,
            time=packet.time,
            seq=packet.seq,
            ack=packet.ack if packet.flags & ACK else None,
            offset=offset,
            length=packet.length,
            window=window,
            flags=flag_letters(packet.flags),
        )

    def _classify(self, segment: Segment, packet: TcpPacket, highest: int) -> None:
        start, end = segment.offset, segment.offset + packet.length
        new_wire = self._seen.missing(start, end)
        seen_bytes = packet.length - sum(e - s for s, e in new_wire)
        segment.overlap = seen_bytes
        segment.retransmission = not new_wire
        segment.out_of_order = bool(new_wire) and start < highest and new_wire[0][0] < highest
        segment.gap_before = max(0, start - highest)
        self._seen.add(start, end)
        captured_end = start + len(packet.payload)
        if captured_end > len(self._data):
            self._data.extend(bytes(captured_end - len(self._data)))
        fresh = self._captured.missing(start, captured_end)
        if seen_bytes:
            old = _complement(fresh, start, captured_end)
            segment.differs = any(self._data[s:e] != packet.payload[s - start : e - start] for s, e in old)
        for s, e in fresh:
            self._data[s:e] = packet.payload[s - start : e - start]
            self._captured.add(s, e)
            i = bisect.bisect_left(self._piece_starts, s)
            self._piece_starts.insert(i, s)
            self._piece_ends.insert(i, e)
            self._piece_times.insert(i, packet.time)
        if new_wire:
            self.last_data_time = packet.time


def _complement(parts: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) minus the sorted disjoint `parts`."""
    out, cursor = [], start
    for s, e in parts:
        if s > cursor:
            out.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < end:
        out.append((cursor, end))
    return out


def flag_letters(flags: int) -> str:
    """TCP flags as tcpdump-like letters in a fixed order: S, F, R, P, U, A (e.g. "SA", "PA", "FA")."""
    return "".join(
        letter
        for bit, letter in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U"), (ACK, "A"))
        if flags & bit
    )


@dataclass
class TcpConnection:
    """One TCP connection of the capture: its endpoints and each side's stream."""

    index: int
    client: Endpoint
    server: Endpoint
    packets: list[TcpPacket] = field(default_factory=list)
    joined: bool = False  # the capture holds no SYN of it: it began before the capture
    streams: dict[Side, Stream] = field(default_factory=dict)

    @property
    def start(self) -> float:
        return self.packets[0].time

    @property
    def end(self) -> float:
        return self.packets[-1].time

    def side_of(self, packet: TcpPacket) -> Side:
        return "client" if (packet.src, packet.sport) == (self.client.ip, self.client.port) else "server"

    def reassemble(self) -> None:
        """Build both streams from the packets (after all of them were added)."""
        by_side: dict[Side, list[TcpPacket]] = {"client": [], "server": []}
        for packet in self.packets:
            by_side[self.side_of(packet)].append(packet)
        syns = {side: next((p for p in by_side[side] if p.flags & SYN), None) for side in SIDES}
        self.joined = syns["client"] is None and syns["server"] is None
        # RFC 7323 §2.2: scaling is in force only when both SYNs carried the option.
        scales: dict[Side, int | None] = {"client": None, "server": None}
        client_syn, server_syn = syns["client"], syns["server"]
        if client_syn is not None and server_syn is not None:
            if client_syn.window_scale is not None and server_syn.window_scale is not None:
                scales = {"client": client_syn.window_scale, "server": server_syn.window_scale}
            else:
                scales = {"client": 0, "server": 0}
        for side in SIDES:
            stream = Stream(side)
            stream.place(by_side[side], scales[side])
            self.streams[side] = stream
        pairs: tuple[tuple[Side, Side], ...] = (("client", "server"), ("server", "client"))
        for side, peer in pairs:
            acks = [
                self.streams[side].relative(p.ack)
                for p in by_side[peer]
                if p.flags & ACK and not p.flags & RST
            ]
            known = [a for a in acks if a is not None]
            self.streams[side].find_holes(max(known) if known else None)


def split_connections(packets: list[TcpPacket]) -> list[TcpConnection]:
    """Group packets into connections, in the order of each connection's first packet."""
    current: dict[frozenset[tuple[str, int]], TcpConnection] = {}
    connections: list[TcpConnection] = []
    for packet in packets:
        key = frozenset({(packet.src, packet.sport), (packet.dst, packet.dport)})
        connection = current.get(key)
        opening = packet.flags & SYN and not packet.flags & ACK
        if connection is None or (opening and _has_begun(connection, packet)):
            connection = _new_connection(len(connections) + 1, packet)
            current[key] = connection
            connections.append(connection)
        connection.packets.append(packet)
    for connection in connections:
        _choose_client(connection)
        connection.reassemble()
    return connections


def _has_begun(connection: TcpConnection, syn: TcpPacket) -> bool:
    """Whether a SYN opens a new connection on this four-tuple rather than repeat the first one's."""
    for packet in connection.packets:
        if packet.length or packet.flags & (FIN | RST):
            return True
        if packet.flags & SYN and not packet.flags & ACK and packet.seq != syn.seq:
            return True
    return not any(p.flags & SYN for p in connection.packets)


def _new_connection(index: int, packet: TcpPacket) -> TcpConnection:
    source, destination = Endpoint(packet.src, packet.sport), Endpoint(packet.dst, packet.dport)
    return TcpConnection(index, source, destination)


def _choose_client(connection: TcpConnection) -> None:
    """The client is the SYN's sender; without a SYN, the sender of a ClientHello, else by port."""
    first = connection.packets[0]
    a, b = Endpoint(first.src, first.sport), Endpoint(first.dst, first.dport)
    for packet in connection.packets:
        if packet.flags & SYN:
            syn_sender = Endpoint(packet.src, packet.sport)
            client = syn_sender if not packet.flags & ACK else Endpoint(packet.dst, packet.dport)
            break
        if packet.payload[:1] == b"\x16" and packet.payload[5:6] == b"\x01":
            client = Endpoint(packet.src, packet.sport)
            break
    else:
        if a.port in TLS_PORTS and b.port not in TLS_PORTS:
            client = b
        elif b.port in TLS_PORTS and a.port not in TLS_PORTS:
            client = a
        else:
            client = a if a.port > b.port else b
    connection.client = client
    connection.server = b if client == a else a
