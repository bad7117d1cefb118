"""The LAN link between the virtual hub and the bench router: a small framed protocol.

Why not a kernel TCP socket (design.md): the kernel would hide segment boundaries and advertise its own
window, so the hub's receive path could not be the Microchip stack's. Over one loopback TCP connection
the router delivers *segments* with sequence numbers and the hub answers each with an ACK carrying
its advertised window (the free space of its RX FIFO). Frames: `type u8 | body length u16 BE | body`.

    hub -> router   O OPEN    conn u16, port u16, window u16, mss u16, iss u32, host
                    K ACK     conn u16, ack u32, window u16, kind u8 (1 = answers a segment, 0 = window update)
                    D DATA    conn u16, seq u32, payload
                    F FIN     conn u16
    router -> hub   A OPENED  conn u16, irs u32
                    S SEG     conn u16, seq u32, payload
                    F FIN     conn u16
                    R RST     conn u16, reason (UTF-8)

The hub side is rig/sim/firmware/hub_lan.c; this module is the router side's codec.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OPEN, ACK, DATA, FIN, OPENED, SEG, RST = b"O", b"K", b"D", b"F", b"A", b"S", b"R"
HEADER = struct.Struct(">cH")
MAX_BODY = 0xFFFF


@dataclass(frozen=True)
class Frame:
    """One frame; `conn` is the hub's connection id, the rest depends on the type."""

    kind: bytes
    conn: int
    body: bytes

    def encode(self) -> bytes:
        payload = struct.pack(">H", self.conn) + self.body
        if len(payload) > MAX_BODY:
            raise ValueError(f"LAN frame of {len(payload)} bytes is larger than {MAX_BODY}")
        return HEADER.pack(self.kind, len(payload)) + payload


@dataclass(frozen=True)
class Open:
    conn: int
    port: int
    window: int
    mss: int
    iss: int
    host: str


@dataclass(frozen=True)
class Ack:
    conn: int
    ack: int
    window: int
    answers_segment: bool


@dataclass(frozen=True)
class Data:
    conn: int
    seq: int
    payload: bytes


def parse_open(frame: Frame) -> Open:
    port, window, mss, iss = struct.unpack_from(">HHHI", frame.body)
    return Open(frame.conn, port, window, mss, iss, frame.body[10:].decode("ascii", "replace"))


def parse_ack(frame: Frame) -> Ack:
    ack, window, kind = struct.unpack_from(">IHB", frame.body)
    return Ack(frame.conn, ack, window, kind == 1)


def parse_data(frame: Frame) -> Data:
    (seq,) = struct.unpack_from(">I", frame.body)
    return Data(frame.conn, seq, frame.body[4:])


def opened(conn: int, irs: int) -> Frame:
    return Frame(OPENED, conn, struct.pack(">I", irs))


def segment(conn: int, seq: int, payload: bytes) -> Frame:
    return Frame(SEG, conn, struct.pack(">I", seq & 0xFFFFFFFF) + payload)


def fin(conn: int) -> Frame:
    return Frame(FIN, conn, b"")


def reset(conn: int, reason: str) -> Frame:
    return Frame(RST, conn, reason.encode()[:200])


class FrameReader:
    """Accumulates bytes from the link and yields complete frames in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            if len(self._buffer) < HEADER.size + length:
                break
            body = bytes(self._buffer[HEADER.size : HEADER.size + length])
            del self._buffer[: HEADER.size + length]
            if length < 2:
                continue
            frames.append(Frame(kind, struct.unpack_from(">H", body)[0], body[2:]))
        return frames
