"""Packet capture of the router's LAN side, synthesized from the LAN frames (libpcap format).

The hub and the router do not exchange real IP packets (rig.sim.lan), yet a capture must look like
`tcpdump -U -w -` on the router's LAN port: Ethernet + IPv4 + TCP headers built from the frames, with
the real sequence numbers, acknowledgements, windows and payloads. Readable by tshark and dpkt.
"""

from __future__ import annotations

import struct
import time

LINKTYPE_ETHERNET = 1
HUB_IP = bytes([192, 168, 8, 50])
CLOUD_IP = bytes([203, 0, 113, 10])  # the endpoint's address as the LAN sees it (TEST-NET-3)
HUB_MAC = bytes.fromhex("02000000a032")
ROUTER_MAC = bytes.fromhex("020000000001")
SYN, FIN_FLAG, RST_FLAG, PSH, ACK_FLAG = 0x02, 0x01, 0x04, 0x08, 0x10


def file_header(snaplen: int = 65535) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_packet(
    *,
    from_hub: bool,
    hub_port: int,
    cloud_port: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    payload: bytes = b"",
    mss: int | None = None,
    ip_id: int = 0,
) -> bytes:
    """One Ethernet frame with IPv4 and TCP headers around `payload`."""
    src, dst = (HUB_IP, CLOUD_IP) if from_hub else (CLOUD_IP, HUB_IP)
    sport, dport = (hub_port, cloud_port) if from_hub else (cloud_port, hub_port)
    options = struct.pack(">BBH", 2, 4, mss) if mss else b""
    offset = (20 + len(options)) // 4
    header = struct.pack(
        ">HHIIBBHHH",
        sport,
        dport,
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        offset << 4,
        flags,
        min(window, 0xFFFF),
        0,
        0,
    )
    segment = header + options + payload
    pseudo = src + dst + struct.pack(">BBH", 0, 6, len(segment))
    checksum = _checksum(pseudo + segment)
    segment = segment[:16] + struct.pack(">H", checksum) + segment[18:]
    total = 20 + len(segment)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, ip_id & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack(">H", _checksum(ip)) + ip[12:]
    ether = (ROUTER_MAC + HUB_MAC if not from_hub else HUB_MAC + ROUTER_MAC) + b"\x08\x00"
    return ether + ip + segment


def record(packet: bytes, when: float | None = None) -> bytes:
    """A pcap record (header + packet) stamped `when` (wall time)."""
    stamp = time.time() if when is None else when
    seconds = int(stamp)
    micros = int((stamp - seconds) * 1_000_000)
    return struct.pack("<IIII", seconds, micros, len(packet), len(packet)) + packet
