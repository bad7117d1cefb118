"""Crafted captures for the edge cases a bench capture rarely shows: written with dpkt, read by rig.wire.

`Flow` builds one TCP connection segment by segment (hub 192.168.8.50:49153 ↔ 203.0.113.10:8883),
tracking sequence numbers like a real pair of stacks, so that a test only says what is unusual:
a segment sent twice, out of order, lost, cut, or carrying other bytes.
"""

from __future__ import annotations

import io
import socket
import struct
from dataclasses import dataclass, field

import dpkt

HUB = ("192.168.8.50", 49153)
CLOUD = ("203.0.113.10", 8883)
T0 = 1_800_000_000.0


def record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    """A TLS record (RFC 5246 §6.2)."""
    return struct.pack(">BHH", content_type, version, len(body)) + body


def handshake(kind: int, body: bytes) -> bytes:
    """A handshake message (RFC 5246 §7.4)."""
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def client_hello(server_name: str = "sim-ats.iot.us-east-1.amazonaws.com") -> bytes:
    name = server_name.encode()
    sni = struct.pack(">HBH", len(name) + 3, 0, len(name)) + name
    extensions = struct.pack(">HH", 0, len(sni)) + sni
    body = (
        b"\x03\x03" + bytes(32) + b"\x00" + struct.pack(">H", 4) + b"\xc0\x30\xc0\x2f" + b"\x01\x00"
        + struct.pack(">H", len(extensions)) + extensions
    )  # fmt: skip
    return handshake(1, body)


def server_hello(suite: int = 0xC030, session_id: bytes = bytes(32)) -> bytes:
    body = (
        b"\x03\x03" + bytes(32) + bytes([len(session_id)]) + session_id + suite.to_bytes(2, "big") + b"\x00"
    )
    return handshake(2, body + b"\x00\x00")


def first_flight(certificate_size: int = 3000) -> bytes:
    """ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone as messages."""
    return (
        server_hello() + handshake(11, bytes(certificate_size)) + handshake(12, bytes(300))
        + handshake(13, bytes(40)) + handshake(14, b"")
    )  # fmt: skip


CCS = record(20, b"\x01")


@dataclass
class Flow:
    """One connection's packets, built in order; `data(...)` sends payload and advances the sequence."""

    hub_isn: int = 4096
    cloud_isn: int = 1_592_594_432
    t: float = T0
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    hub_next: int = 0
    cloud_next: int = 0
    window_scale: int | None = None

    def __post_init__(self) -> None:
        self.hub_next = self.hub_isn + 1
        self.cloud_next = self.cloud_isn + 1

    def tick(self, seconds: float = 0.01) -> None:
        self.t += seconds

    def packet(
        self,
        from_hub: bool,
        seq: int,
        flags: int,
        payload: bytes = b"",
        window: int = 1024,
        options: bytes = b"",
        snap: int | None = None,
    ) -> None:
        src, dst = (HUB, CLOUD) if from_hub else (CLOUD, HUB)
        ack = self.cloud_next if from_hub else self.hub_next
        tcp = dpkt.tcp.TCP(
            sport=src[1], dport=dst[1], seq=seq % (1 << 32), ack=ack % (1 << 32), flags=flags, win=window,
            opts=options, data=payload,
        )  # fmt: skip
        tcp.off = (20 + len(options)) // 4
        ip = dpkt.ip.IP(
            src=socket.inet_aton(src[0]),
            dst=socket.inet_aton(dst[0]),
            p=dpkt.ip.IP_PROTO_TCP,
            data=tcp,
            ttl=64,
        )
        ip.len = 20 + len(bytes(tcp))
        frame = bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))
        self.frames.append((self.t, frame if snap is None else frame[:snap]))
        self.tick(0.001)

    def handshake_tcp(self) -> None:
        scale = b"" if self.window_scale is None else bytes([3, 3, self.window_scale, 1])
        mss = struct.pack(">BBH", 2, 4, 1460)
        self.packet(True, self.hub_isn, dpkt.tcp.TH_SYN, window=1024, options=mss + scale)
        self.packet(
            False, self.cloud_isn, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, window=65535, options=mss + scale
        )
        self.packet(True, self.hub_next, dpkt.tcp.TH_ACK)

    def data(self, from_hub: bool, payload: bytes, *, send: bool = True, window: int = 1024) -> int:
        """Send `payload` as one segment at the next sequence number (or only advance: send=False)."""
        seq = self.hub_next if from_hub else self.cloud_next
        if send:
            self.packet(from_hub, seq, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, payload, window=window)
        if from_hub:
            self.hub_next += len(payload)
        else:
            self.cloud_next += len(payload)
        return seq

    def ack(self, from_hub: bool, window: int = 1024) -> None:
        self.packet(from_hub, self.hub_next if from_hub else self.cloud_next, dpkt.tcp.TH_ACK, window=window)

    def fin(self, from_hub: bool) -> None:
        seq = self.hub_next if from_hub else self.cloud_next
        self.packet(from_hub, seq, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)
        if from_hub:
            self.hub_next += 1
        else:
            self.cloud_next += 1

    def rst(self, from_hub: bool) -> None:
        self.packet(
            from_hub, self.hub_next if from_hub else self.cloud_next, dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK
        )


def pcap_bytes(*flows: Flow, snaplen: int = 65535) -> bytes:
    """A pcap file of the flows' frames in time order."""
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, snaplen=snaplen)
    for when, frame in sorted((f for flow in flows for f in flow.frames), key=lambda f: f[0]):
        writer.writepkt(frame[:snaplen], ts=when)
    return out.getvalue()


def pcapng_bytes(flow: Flow) -> bytes:
    out = io.BytesIO()
    writer = dpkt.pcapng.Writer(out)
    for when, frame in flow.frames:
        writer.writepkt(frame, ts=when)
    return out.getvalue()
