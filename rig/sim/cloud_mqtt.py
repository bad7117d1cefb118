"""MQTT 3.1.1 for the AWS IoT Core stand-in: packet framing, CONNECT parsing, lifecycle events.

The stand-in relays the device's MQTT bytes unchanged to mosquitto's plain loopback listener, but it
frames both directions into packets to learn what AWS IoT knows: the client id (from CONNECT), whether
the broker accepted the session (CONNACK return code) and whether the device said goodbye
(DISCONNECT). From that it publishes AWS-style lifecycle events (AWS IoT Developer Guide, "Lifecycle
events"): `$aws/events/presence/connected/<clientId>` and `…/disconnected/<clientId>` with the fields
clientId, timestamp (ms), eventType, sessionIdentifier, principalIdentifier (the certificate id),
ipAddress, versionNumber, and for disconnects clientInitiatedDisconnect and disconnectReason.
`EventPublisher` is its own small MQTT client on the broker's plain listener (QoS 1, waits for PUBACK).

Packet format (MQTT 3.1.1 §2.2): one byte type/flags, the remaining length as a base-128 varint
(1–4 bytes), then the variable header and payload.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
DISCONNECT = 14


class MqttProtocolError(ValueError):
    """The bytes are not MQTT 3.1.1."""


def encode_length(n: int) -> bytes:
    """The MQTT remaining-length varint of `n`."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class PacketSplitter:
    """Cuts a byte stream into whole MQTT packets (fixed header included)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        packets: list[bytes] = []
        while True:
            length, multiplier, pos = 0, 1, 1
            while True:
                if pos >= len(self._buffer):
                    return packets
                byte = self._buffer[pos]
                length += (byte & 0x7F) * multiplier
                multiplier *= 128
                pos += 1
                if not byte & 0x80:
                    break
                if pos > 4:
                    raise MqttProtocolError("remaining length longer than 4 bytes")
            if len(self._buffer) < pos + length:
                return packets
            packets.append(bytes(self._buffer[: pos + length]))
            del self._buffer[: pos + length]


def packet_type(packet: bytes) -> int:
    return packet[0] >> 4


def _body(packet: bytes) -> bytes:
    pos = 1
    while packet[pos] & 0x80:
        pos += 1
    return packet[pos + 1 :]


def _string(data: bytes, pos: int) -> tuple[str, int]:
    if pos + 2 > len(data):
        raise MqttProtocolError("string length runs past the packet")
    n = int.from_bytes(data[pos : pos + 2], "big")
    if pos + 2 + n > len(data):
        raise MqttProtocolError("string runs past the packet")
    return data[pos + 2 : pos + 2 + n].decode("utf-8", errors="replace"), pos + 2 + n


def connect_client_id(packet: bytes) -> str:
    """The client identifier of a CONNECT packet (MQTT 3.1.1 §3.1.3.1)."""
    if packet_type(packet) != CONNECT:
        raise MqttProtocolError(f"first packet is type {packet_type(packet)}, not CONNECT")
    body = _body(packet)
    protocol, pos = _string(body, 0)
    if protocol not in ("MQTT", "MQIsdp"):
        raise MqttProtocolError(f"protocol name {protocol!r}")
    client_id, _ = _string(body, pos + 4)  # level, flags, keep-alive
    return client_id


def connect_keepalive(packet: bytes) -> int:
    """The keep-alive interval in seconds of a CONNECT packet (0: none)."""
    body = _body(packet)
    _, pos = _string(body, 0)
    if pos + 4 > len(body):
        raise MqttProtocolError("CONNECT variable header is short")
    return int.from_bytes(body[pos + 2 : pos + 4], "big")


def connack_return_code(packet: bytes) -> int:
    body = _body(packet)
    if packet_type(packet) != CONNACK or len(body) != 2:
        raise MqttProtocolError("not a CONNACK")
    return body[1]


def connect_packet(client_id: str, keepalive_s: int = 0) -> bytes:
    """A clean-session CONNECT without credentials."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02" + keepalive_s.to_bytes(2, "big") + len(cid).to_bytes(2, "big") + cid
    return bytes([CONNECT << 4]) + encode_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """A QoS 1 PUBLISH."""
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + packet_id.to_bytes(2, "big") + payload
    return bytes([(PUBLISH << 4) | 0x02]) + encode_length(len(body)) + body


def lifecycle_event(
    event_type: str,
    client_id: str,
    *,
    session: str,
    principal: str,
    ip_address: str,
    version: int,
    client_initiated: bool | None = None,
    reason: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The topic and JSON document AWS IoT publishes for a `connected` or `disconnected` client."""
    doc: dict[str, Any] = {
        "clientId": client_id,
        "timestamp": int(time.time() * 1000),
        "eventType": event_type,
        "sessionIdentifier": session,
        "principalIdentifier": principal,
        "ipAddress": ip_address,
        "versionNumber": version,
    }
    if event_type == "disconnected":
        doc["clientInitiatedDisconnect"] = bool(client_initiated)
        doc["disconnectReason"] = reason
    return f"$aws/events/presence/{event_type}/{client_id}", doc


class EventPublisher:
    """Publishes lifecycle events to the broker's plain listener, reconnecting when needed."""

    def __init__(self, host: str, port: int, client_id: str, timeout_s: float = 5.0) -> None:
        self.host, self.port, self.client_id, self.timeout_s = host, port, client_id, timeout_s
        self._lock = asyncio.Lock()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._splitter = PacketSplitter()
        self._next_id = 0

    async def publish(self, topic: str, document: dict[str, Any]) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK; raises OSError/TimeoutError on failure."""
        async with self._lock:
            try:
                await asyncio.wait_for(self._publish(topic, json.dumps(document).encode()), self.timeout_s)
            except (OSError, TimeoutError, MqttProtocolError):
                await self.close()
                raise

    async def _publish(self, topic: str, payload: bytes) -> None:
        reader, writer = await self._connected()
        self._next_id = self._next_id % 65535 + 1
        writer.write(publish_packet(topic, payload, self._next_id))
        await writer.drain()
        while True:
            packet = await self._read_packet(reader)
            if packet_type(packet) == PUBACK and _body(packet)[:2] == self._next_id.to_bytes(2, "big"):
                return

    async def _connected(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._splitter = PacketSplitter()
            writer.write(connect_packet(self.client_id))
            await writer.drain()
            code = connack_return_code(await self._read_packet(reader))
            if code != 0:
                writer.close()
                raise MqttProtocolError(f"broker refused the event publisher: CONNACK {code}")
            self._streams = (reader, writer)
        return self._streams

    async def _read_packet(self, reader: asyncio.StreamReader) -> bytes:
        while True:
            data = await reader.read(4096)
            if not data:
                raise ConnectionResetError(f"broker 127.0.0.1:{self.port} closed the event publisher")
            packets = self._splitter.feed(data)
            if packets:
                # The publisher only ever waits for one packet at a time: CONNACK or a PUBACK.
                return packets[-1]

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, TimeoutError):
                log.debug("event publisher connection closed uncleanly")
