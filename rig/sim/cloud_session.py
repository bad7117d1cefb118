"""One connection to the AWS IoT Core stand-in: handshake, failure behaviour, MQTT relay, its log record.

`rig.sim.cloud` accepts; this module serves. The TLS server is an `ssl.SSLObject` over two
`MemoryBIO`s, so what OpenSSL wants to send can be rewritten (the coalesced first flight) or withheld
(the fatal alert of a failed handshake in `silent` mode: what AWS IoT did in the incident). The
record each connection leaves in `cloud.log` is the stand-in's own view, the evidence a user compares
with the device's log: SNI, handshake result, OpenSSL's reason, the alert sent or withheld, the size of
the first flight, the client's certificate CN and MQTT client id, how the session ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.sim.cloud_mqtt import (
    CONNACK,
    CONNECT,
    DISCONNECT,
    EventPublisher,
    MqttProtocolError,
    PacketSplitter,
    connack_return_code,
    connect_client_id,
    connect_keepalive,
    lifecycle_event,
    packet_type,
)
from rig.sim.cloud_tls import FlightCoalescer, alerts_in
from rig.sim.pki import certificate_cn, certificate_id

log = logging.getLogger(__name__)

_CHUNK = 65536
_IO_TIMEOUT_S = 10.0
_BROKER_TIMEOUT_S = 5.0


@dataclass
class ServerSettings:
    """What every connection of one stand-in shares."""

    directory: Path
    endpoint: str
    context: ssl.SSLContext
    sni_seen: dict[int, str | None]
    broker_port: int
    default_mode: str
    hold_s: float
    publisher: EventPublisher
    versions: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, Connection] = field(default_factory=dict)  # client id → its live session
    # Writes one line to cloud.log at once (the stand-in's journal: flights sent, why it gave up); the
    # connection's own record follows when it ends.
    journal: Callable[[dict[str, Any]], None] | None = None


class Connection:
    """Serves one accepted TCP connection to its end and returns its `cloud.log` record."""

    def __init__(
        self, settings: ServerSettings, mode: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.settings, self.mode, self.reader, self.writer = settings, mode, reader, writer
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = settings.context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.coalescer = FlightCoalescer()
        peer = writer.get_extra_info("peername")
        self.ip = str(peer[0])
        self.started = time.monotonic()
        self.record: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "peer": f"{peer[0]}:{peer[1]}",
            "mode": mode,
            "sni": None,
            "handshake": None,
            "error": None,
            "client_cn": None,
            "alert": None,
            "first_flight_bytes": None,
            "first_flight_records": None,
            "mqtt_client_id": None,
            "bytes_in": 0,
            "bytes_out": 0,
        }
        self.client_id: str | None = None
        self.principal = ""
        self.connected: tuple[str, str, int] | None = None  # session id, principal, version
        self.client_disconnect = False
        self.end_reason = "SERVER_INITIATED_DISCONNECT"
        self.keepalive_s = 0
        self.last_device_data = time.monotonic()
        self.taken_over = False  # another session connected with the same client id
        self.flights = 0  # handshake flights sent

    async def serve(self) -> dict[str, Any]:
        try:
            if await self._handshake():
                await self._relay()
        except asyncio.CancelledError:
            self.record["closed_by"] = "stand-in stopping"
            self.end_reason = "SERVER_INITIATED_DISCONNECT"
        finally:
            self.settings.sni_seen.pop(id(self.tls), None)
            await self._close()
            await self._publish_disconnected()
            self.record["duration_s"] = round(time.monotonic() - self.started, 3)
        return self.record

    # -- handshake ---------------------------------------------------------------------------

    async def _handshake(self) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.hold_s
        while True:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._send_handshake_output()
                data = await self._read(deadline)
                if data is None:
                    self.record.update(
                        handshake="timeout", error=f"no client data for {self.settings.hold_s:g} s"
                    )
                    return False
                if not data:
                    said = (
                        "before sending a ClientHello"
                        if not self.record["bytes_in"]
                        else "during the handshake"
                    )
                    self.record.update(handshake="client closed", error=f"client closed {said}")
                    return False
                self.incoming.write(data)
                continue
            except ssl.SSLError as exc:
                await self._failed(exc)
                return False
            break
        await self._send_handshake_output()
        self.record["sni"] = self.settings.sni_seen.get(id(self.tls))
        self.record["handshake"] = "ok"
        self.record["cipher"] = (self.tls.cipher() or ("?",))[0]
        der = self.tls.getpeercert(binary_form=True)
        if der:
            self.principal = certificate_id(der)
            self.record["client_cn"] = certificate_cn(der)
        return True

    async def _send_handshake_output(self) -> None:
        pending = self.outgoing.read()
        if not pending:
            return
        wire = self.coalescer.feed(pending)
        if self.record["first_flight_bytes"] is None and wire:
            self.record["first_flight_bytes"] = len(wire)
            self.record["first_flight_records"] = self.coalescer.records_out
            self.record["openssl_records"] = self.coalescer.records_in
        if wire:
            # The digest of what the server put on its own socket: a capture elsewhere on the path that
            # holds other bytes shows the path changed them.
            self.flights += 1
            digest = hashlib.sha256(wire).hexdigest()
            self.record.setdefault("flights", []).append({"bytes": len(wire), "sha256": digest})
            self._journal("flight sent", flight=self.flights, bytes=len(wire), sha256=digest)
        await self._send(wire)

    def _journal(self, event: str, **fields: Any) -> None:
        if self.settings.journal is not None:
            self.settings.journal(
                {"event": event, "wall": round(time.time(), 6), "peer": self.record["peer"], **fields}
            )

    async def _failed(self, exc: ssl.SSLError) -> None:
        """Answer a failed handshake: refuse a wrong SNI with its alert; otherwise act per mode."""
        pending = self.outgoing.read()
        alerts = alerts_in(pending)
        sni = self.settings.sni_seen.get(id(self.tls))
        self.record["sni"] = sni
        self.record["error"] = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        # Refused at the front door only if the SNI check ran (a ClientHello OpenSSL rejects earlier,
        # e.g. without a TLS 1.2 offer, is an ordinary failed handshake).
        refused = id(self.tls) in self.settings.sni_seen and sni != self.settings.endpoint
        self.record["handshake"] = "refused" if refused else "failed"
        send_alert = refused or self.mode == "alert"
        if alerts:
            self.record["alert"] = {**alerts[0].to_json(), "sent": send_alert}
        alert = alerts[0].name if alerts else None
        if send_alert:
            action = f"sending its fatal alert ({alert}) and closing" if alert else "closing"
        elif self.mode == "silent":
            withheld = f"withholding its fatal alert ({alert})" if alert else "sending no alert"
            action = (
                f"{withheld} and holding the connection open and silent for up to {self.settings.hold_s:g} s"
            )
        else:
            action = "closing without an alert"
        self._journal(
            "gave up",
            handshake=self.record["handshake"],
            reason=self.record["error"],
            mode=self.mode,
            alert=alert,
            alert_sent=send_alert if alert else None,
            message=f"gave up on the handshake: {self.record['error']}; {action}",
        )
        if send_alert:
            await self._send(pending)
        elif self.mode == "silent":
            await self._hold()

    async def _hold(self) -> None:
        """Keep the connection open and silent, discarding what the client sends, until it closes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.hold_s
        held_from = loop.time()
        while True:
            data = await self._read(deadline)
            if data is None:
                self.record["hold_end"] = "hold timeout"
                break
            if not data:
                self.record["hold_end"] = "client closed"
                break
        self.record["held_s"] = round(loop.time() - held_from, 3)

    # -- MQTT relay --------------------------------------------------------------------------

    async def _relay(self) -> None:
        port = self.settings.broker_port
        try:
            b_reader, b_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), _BROKER_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            self.record["error"] = f"broker 127.0.0.1:{port} unreachable: {exc}"
            return
        up = asyncio.create_task(self._device_to_broker(b_writer))
        down = asyncio.create_task(self._broker_to_device(b_reader))
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            b_writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(b_writer.wait_closed(), 2.0)
        for task in done:
            failure = task.exception()
            if isinstance(failure, MqttProtocolError):
                self.record["error"] = f"MQTT protocol error: {failure}"
                self.end_reason = "CLIENT_ERROR"
            elif failure is not None:
                self.record["error"] = f"relay: {failure!r}"
        if self.client_disconnect:
            self.end_reason = "CLIENT_INITIATED_DISCONNECT"

    async def _device_to_broker(self, b_writer: asyncio.StreamWriter) -> None:
        splitter = PacketSplitter()
        while True:
            data = await self.reader.read(_CHUNK)
            if not data:
                self.end_reason = "CONNECTION_LOST"
                self.record["closed_by"] = "device (TCP close)"
                return
            self.last_device_data = time.monotonic()
            self.record["bytes_in"] += len(data)
            self.incoming.write(data)
            while True:
                try:
                    plain = self.tls.read(_CHUNK)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    self.end_reason = "CONNECTION_LOST"
                    self.record["closed_by"] = "device (close_notify)"
                    return
                for packet in splitter.feed(plain):
                    kind = packet_type(packet)
                    if kind == CONNECT and self.client_id is None:
                        self.client_id = connect_client_id(packet)
                        self.keepalive_s = connect_keepalive(packet)
                        self.record["mqtt_client_id"] = self.client_id
                        previous = self.settings.sessions.get(self.client_id)
                        if previous is not None:
                            previous.taken_over = True  # the broker will drop it
                        self.settings.sessions[self.client_id] = self
                    elif kind == DISCONNECT:
                        self.client_disconnect = True
                b_writer.write(plain)
                await asyncio.wait_for(b_writer.drain(), _IO_TIMEOUT_S)

    async def _broker_to_device(self, b_reader: asyncio.StreamReader) -> None:
        splitter = PacketSplitter()
        while True:
            data = await b_reader.read(_CHUNK)
            if not data:
                self.record["closed_by"] = "broker"
                self.end_reason = self._broker_close_reason()
                return
            for packet in splitter.feed(data):
                if packet_type(packet) == CONNACK and self.connected is None and self.client_id is not None:
                    code = connack_return_code(packet)
                    self.record["connack"] = code
                    if code == 0:
                        await self._publish_connected()
            self.tls.write(data)
            await self._send(self.outgoing.read())

    def _broker_close_reason(self) -> str:
        """Why the broker ended the session, in AWS's words."""
        if self.taken_over:
            return "DUPLICATE_CLIENTID"
        silent_s = time.monotonic() - self.last_device_data
        if self.keepalive_s and silent_s >= 1.5 * self.keepalive_s:
            return "MQTT_KEEP_ALIVE_TIMEOUT"
        return "SERVER_INITIATED_DISCONNECT"

    # -- lifecycle events --------------------------------------------------------------------

    async def _publish_connected(self) -> None:
        assert self.client_id is not None
        version = self.settings.versions.get(self.client_id, 0) + 1
        self.settings.versions[self.client_id] = version
        self.connected = (str(uuid.uuid4()), self.principal, version)
        session, principal, _ = self.connected
        topic, doc = lifecycle_event(
            "connected",
            self.client_id,
            session=session,
            principal=principal,
            ip_address=self.ip,
            version=version,
        )
        await self._publish(topic, doc)

    async def _publish_disconnected(self) -> None:
        if self.client_id is not None and self.settings.sessions.get(self.client_id) is self:
            del self.settings.sessions[self.client_id]
        if self.connected is None or self.client_id is None:
            return
        session, principal, version = self.connected
        self.record["disconnect_reason"] = self.end_reason
        topic, doc = lifecycle_event(
            "disconnected",
            self.client_id,
            session=session,
            principal=principal,
            ip_address=self.ip,
            version=version,
            client_initiated=self.end_reason == "CLIENT_INITIATED_DISCONNECT",
            reason=self.end_reason,
        )
        await self._publish(topic, doc)

    async def _publish(self, topic: str, doc: dict[str, Any]) -> None:
        try:
            await self.settings.publisher.publish(topic, doc)
        except (OSError, TimeoutError, MqttProtocolError) as exc:
            # Reported in this connection's log record: the harness's observer would miss the event.
            log.warning("lifecycle event %s not published: %s", topic, exc)
            self.record.setdefault("event_errors", []).append(f"{topic}: {exc!r}")

    # -- socket primitives -------------------------------------------------------------------

    async def _read(self, deadline: float) -> bytes | None:
        """Bytes from the client, b'' when it closed, None at the deadline."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        try:
            data = await asyncio.wait_for(self.reader.read(_CHUNK), remaining)
        except TimeoutError:
            return None
        except ConnectionError:
            return b""
        self.record["bytes_in"] += len(data)
        return data

    async def _send(self, data: bytes) -> None:
        if not data or self.writer.is_closing():
            return
        self.writer.write(data)
        self.record["bytes_out"] += len(data)
        try:
            await asyncio.wait_for(self.writer.drain(), _IO_TIMEOUT_S)
        except (ConnectionError, TimeoutError) as exc:
            self.record.setdefault("send_error", repr(exc))

    async def _close(self) -> None:
        if self.record["handshake"] == "ok":
            # A close_notify, as a server ending a TLS session does.
            with contextlib.suppress(ssl.SSLError):
                self.tls.unwrap()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(self._send(self.outgoing.read()), 2.0)
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
