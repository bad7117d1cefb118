"""A pcap or pcapng capture → its TCP packets, with times, headers and payloads (dpkt does the reading).

The only module of `rig.wire` that touches dpkt (which ships no type annotations): it turns dpkt's
objects into the typed `TcpPacket`s the rest of the package works on, and a file that is not a
capture, is cut short, or carries a link layer without IP into one `ConfigError` line naming the file
and what is wrong with it.

Link layers read: Ethernet (tcpdump on a LAN port or a bridge, 802.1Q tags included), Linux cooked
v1 and v2 (`tcpdump -i any`), raw IP, and BSD/Linux loopback. Frames that carry no TCP over IPv4 or
IPv6 (ARP, DNS, a fragment after the first) are counted, not kept.
"""

from __future__ import annotations

import io
import socket
import struct
from dataclasses import dataclass
from typing import Any, Final

import dpkt

from rig.errors import ConfigError

# Link-layer header types (tcpdump.org/linktypes.html); 12 and 14 are DLT_RAW on BSDs and OpenBSD.
_ETHERNET: Final = 1
_LINUX_SLL: Final = 113
_LINUX_SLL2: Final = 276
_RAW: Final = frozenset({12, 14, 101})
_IPV4: Final = 228
_IPV6: Final = 229
_NULL: Final = frozenset({0, 108})
LINK_NAMES: Final[dict[int, str]] = {
    _ETHERNET: "ethernet",
    _LINUX_SLL: "linux cooked (sll)",
    _LINUX_SLL2: "linux cooked v2 (sll2)",
    12: "raw ip",
    14: "raw ip",
    101: "raw ip",
    _IPV4: "ipv4",
    _IPV6: "ipv6",
    0: "loopback (null)",
    108: "loopback",
}

# TCP flag bits (RFC 9293 §3.1).
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20


@dataclass(frozen=True, slots=True)
class TcpPacket:
    """One TCP segment as captured: frame number, time, addresses, header fields, payload.

    `length` is the payload's size on the wire; `payload` holds the bytes the capture kept, fewer
    than `length` when tcpdump's snap length cut the frame.
    """

    number: int  # 1-based frame number in the file
    time: float  # capture timestamp, seconds since the epoch (the capturing host's clock)
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    window: int  # the raw 16-bit field; scaling (RFC 7323 §2) is the connection's business
    payload: bytes
    length: int
    mss: int | None = None  # MSS option (RFC 9293 §3.7.1), sent on SYNs
    window_scale: int | None = None  # window scale option (RFC 7323 §2.2), sent on SYNs


@dataclass(frozen=True)
class Capture:
    """What a capture file holds: its format and link layer, its frames and the TCP packets among them."""

    source: str
    format: str  # "pcap" | "pcapng"
    link: str
    frames: int
    packets: list[TcpPacket]
    other_frames: int  # frames without TCP over IP
    truncated: str | None = None  # what was cut short, when read with partial=True


class _TrackedReads(io.BytesIO):
    """A BytesIO that remembers each short read: dpkt's readers do not tell a cut file from its end."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.size = len(data)
        self.shorts: list[tuple[int, int, int]] = []  # (offset, wanted, got)

    def read(self, size: int | None = -1, /) -> bytes:
        start = self.tell()
        if size is None or size < 0:
            # dpkt only asks for whole files on a pcapng block length below 8: the file is corrupt.
            self.shorts.append((start, -1, 0))
            return b""
        data = super().read(size)
        if len(data) < size:
            self.shorts.append((start, size, len(data)))
        return data


def read_packets(data: bytes, source: str, *, partial: bool = False) -> Capture:
    """Read a capture's bytes (pcap or pcapng) into its TCP packets.

    Raises `ConfigError` naming `source` when the bytes are not a capture, use a link layer without
    IP, or are cut short; with `partial`, a capture cut short gives the packets before the cut and
    says what was cut in `Capture.truncated`.
    """
    if not data:
        raise ConfigError(
            f"{source}: the capture is empty (0 bytes); the capture never started or wrote nothing"
        )
    stream = _TrackedReads(data)
    reader, kind = _open(stream, data, source)
    linktype = int(reader.datalink())
    if linktype not in LINK_NAMES:
        raise ConfigError(
            f"{source}: link type {linktype} carries no IP this reader knows; capture on an Ethernet port, "
            "a bridge or 'any' (tcpdump -i)"
        )
    frames, other = 0, 0
    packets: list[TcpPacket] = []
    truncated: str | None = None
    iterator = iter(reader)
    while True:
        before = stream.tell()
        try:
            stamp, frame = next(iterator)
        except StopIteration:
            break
        except (dpkt.UnpackError, struct.error, ValueError) as exc:
            truncated = _cut_message(
                stream, before, frames + 1, None if stream.shorts else f"unreadable ({exc})"
            )
            break
        if stream.shorts:
            truncated = _cut_message(stream, before, frames + 1, None)
            break
        frames += 1
        packet = _tcp_packet(frames, float(stamp), bytes(frame), linktype)
        if packet is None:
            other += 1
        else:
            packets.append(packet)
    if truncated is None and _cut_at_end(stream):
        truncated = _cut_message(stream, stream.shorts[0][0], frames + 1, None)
    if truncated is not None and not partial:
        raise ConfigError(
            f"{source}: truncated: {truncated}; the packets before it are readable (rig wire --partial)"
        )
    return Capture(source, kind, LINK_NAMES[linktype], frames, packets, other, truncated)


# pcap magic numbers in file byte order: microsecond and nanosecond resolution, both byte orders.
_PCAP_MAGICS: Final = frozenset(
    {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
)
_PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"  # the Section Header Block type


def _open(stream: _TrackedReads, data: bytes, source: str) -> tuple[Any, str]:
    """dpkt's reader for the file's format, chosen by its magic number."""
    magic = data[:4]
    if magic not in _PCAP_MAGICS | {_PCAPNG_MAGIC}:
        raise ConfigError(
            f"{source}: not a pcap or pcapng capture (it starts with {data[:8].hex(' ')}); "
            "give the file that tcpdump -w or the bench's capture wrote"
        )
    try:
        reader = dpkt.pcapng.Reader(stream) if magic == _PCAPNG_MAGIC else dpkt.pcap.Reader(stream)
    except (ValueError, dpkt.UnpackError, struct.error) as exc:
        if stream.shorts:
            raise ConfigError(
                f"{source}: truncated: the file header is cut short ({len(data)} bytes)"
            ) from exc
        raise ConfigError(f"{source}: not a readable capture: {exc}") from exc
    stream.shorts.clear()
    return reader, "pcapng" if magic == _PCAPNG_MAGIC else "pcap"


def _cut_at_end(stream: _TrackedReads) -> bool:
    """Whether the reads that ended the file left a piece behind (a clean end reads 0 bytes once)."""
    if not stream.shorts:
        return False
    return len(stream.shorts) > 1 or stream.shorts[0][2] > 0 or stream.shorts[0][1] < 0


def _cut_message(stream: _TrackedReads, offset: int, number: int, reason: str | None) -> str:
    if reason is None and stream.shorts:
        _, wanted, got = stream.shorts[-1]
        if wanted < 0:
            reason = "its block length is below the 8-byte minimum"
        else:
            reason = f"it needs {wanted} bytes there, the file holds {got}"
    return f"frame {number} at byte {offset} of {stream.size} is cut short: {reason}"


def _tcp_packet(number: int, stamp: float, frame: bytes, linktype: int) -> TcpPacket | None:
    """The TCP segment inside one frame, or None for a frame without TCP over IP."""
    try:
        network = _network_layer(frame, linktype)
    except (dpkt.UnpackError, struct.error, IndexError):
        return None
    if isinstance(network, dpkt.ip.IP):
        # A fragment after the first carries no TCP header (RFC 791 §3.2): not a segment.
        if network.offset or network.p != dpkt.ip.IP_PROTO_TCP:
            return None
        family, header_room = socket.AF_INET, network.len - network.hl * 4
    elif isinstance(network, dpkt.ip6.IP6):
        if network.nxt != dpkt.ip.IP_PROTO_TCP:
            return None
        family, header_room = socket.AF_INET6, network.plen
    else:
        return None
    tcp = network.data
    if not isinstance(tcp, dpkt.tcp.TCP):
        return None
    payload = bytes(tcp.data)
    wire_length = max(len(payload), header_room - tcp.off * 4)
    mss, scale = _options(bytes(tcp.opts)) if tcp.flags & SYN else (None, None)
    return TcpPacket(
        number=number,
        time=stamp,
        src=socket.inet_ntop(family, network.src),
        sport=int(tcp.sport),
        dst=socket.inet_ntop(family, network.dst),
        dport=int(tcp.dport),
        seq=int(tcp.seq),
        ack=int(tcp.ack),
        flags=int(tcp.flags),
        window=int(tcp.win),
        payload=payload,
        length=wire_length,
        mss=mss,
        window_scale=scale,
    )


def _network_layer(frame: bytes, linktype: int) -> Any:
    """The IP or IP6 object dpkt decodes from a frame of the given link type."""
    if linktype == _ETHERNET:
        return dpkt.ethernet.Ethernet(frame).data
    if linktype == _LINUX_SLL:
        return dpkt.sll.SLL(frame).data
    if linktype == _LINUX_SLL2:
        return dpkt.sll2.SLL2(frame).data
    if linktype in _NULL:
        return dpkt.loopback.Loopback(frame).data
    if linktype == _IPV6 or (linktype in _RAW and frame[:1] and frame[0] >> 4 == 6):
        return dpkt.ip6.IP6(frame)
    return dpkt.ip.IP(frame)


def _options(raw: bytes) -> tuple[int | None, int | None]:
    """MSS and window scale from a SYN's options (RFC 9293 §3.2: kinds 2 and 3)."""
    mss: int | None = None
    scale: int | None = None
    try:
        options = dpkt.tcp.parse_opts(raw)
    except (dpkt.UnpackError, struct.error, IndexError):
        return None, None
    for kind, value in options:
        if kind == dpkt.tcp.TCP_OPT_MSS and len(value) == 2:
            mss = int(struct.unpack(">H", value)[0])
        elif kind == dpkt.tcp.TCP_OPT_WSCALE and len(value) == 1:
            scale = min(int(value[0]), 14)  # RFC 7323 §2.3: larger shifts are used as 14
    return mss, scale
