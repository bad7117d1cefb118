"""MQTT through the AWS IoT Core stand-in, and its lifecycle events seen by a paho-mqtt observer.

The device side is a TLS socket speaking raw MQTT 3.1.1 (as the hub does); the observer is paho-mqtt
over TLS with the observer certificate on the real mosquitto's TLS listener, as the harness watches.
"""

from __future__ import annotations

import json
import queue
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from paho.mqtt.enums import CallbackAPIVersion

from rig.sim.broker import Broker
from rig.sim.cloud_mqtt import PacketSplitter, connect_packet, publish_packet
from rig.sim.pki import Pki
from rig.sim.procs import free_port

ENDPOINT = "sim-ats.iot.us-east-1.amazonaws.com"  # tests/sim/conftest.py starts the stand-in with it
CLIENT_ID = "hub-sim-0001"
StartCloud = Callable[..., Any]
Message = tuple[str, bytes]


class Observer:
    """paho-mqtt on the broker's TLS listener with the observer certificate; messages land in a queue."""

    def __init__(self, broker: Broker, pki: Pki, topics: list[str]) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self._subscribed: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"observer-{free_port()}")
        self.client.tls_set(
            ca_certs=str(pki.root_pem), certfile=str(pki.observer_pem), keyfile=str(pki.observer_key)
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.put(True)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.connect("127.0.0.1", broker.tls_port, keepalive=30)
        self.client.loop_start()
        self._subscribed.get(timeout=10)

    def next(self, timeout: float = 10.0) -> Message:
        return self.messages.get(timeout=timeout)

    def event(self, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
        topic, payload = self.next(timeout)
        return topic, json.loads(payload)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def observer(mqtt_broker: Broker, sim_pki: Pki) -> Iterator[Observer]:
    watcher = Observer(mqtt_broker, sim_pki, ["$aws/events/presence/#", "hub/#"])
    try:
        yield watcher
    finally:
        watcher.stop()


class Device:
    """A device's MQTT session over TLS to the stand-in, with SNI and its device certificate."""

    def __init__(self, port: int, pki: Pki, client_id: str = CLIENT_ID) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(str(pki.root_pem))
        ctx.load_cert_chain(*map(str, pki.device_credentials(client_id)))
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = ctx.wrap_socket(raw, server_hostname=ENDPOINT)
        self.splitter = PacketSplitter()
        self.pending: list[bytes] = []

    def send(self, packet: bytes) -> None:
        self.sock.sendall(packet)

    def receive(self) -> bytes:
        while not self.pending:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("stand-in closed the session")
            self.pending += self.splitter.feed(data)
        return self.pending.pop(0)

    def connect(self, client_id: str = CLIENT_ID, keepalive_s: int = 60) -> bytes:
        self.send(connect_packet(client_id, keepalive_s=keepalive_s))
        return self.receive()

    def close(self) -> None:
        self.sock.close()


def test_device_connects_and_publishes_through_the_stand_in_to_the_broker(
    start_cloud: StartCloud, sim_pki: Pki, observer: Observer
) -> None:
    cloud = start_cloud()
    device = Device(cloud.port, sim_pki)
    try:
        assert device.connect() == b"\x20\x02\x00\x00"  # CONNACK, session not present, accepted
        device.send(publish_packet("hub/telemetry", b'{"chlorine_ppm":0.8}', packet_id=7))
        assert device.receive() == b"\x40\x02\x00\x07"  # PUBACK for packet 7
        messages = [observer.next() for _ in range(2)]
        assert ("hub/telemetry", b'{"chlorine_ppm":0.8}') in messages
        device.send(b"\xe0\x00")  # DISCONNECT
    finally:
        device.close()
    record = cloud.wait_records(1)[0]
    assert record["mqtt_client_id"] == CLIENT_ID
    assert record["connack"] == 0
    assert record["disconnect_reason"] == "CLIENT_INITIATED_DISCONNECT"


def test_lifecycle_events_carry_aws_fields_for_a_clean_session(
    start_cloud: StartCloud, sim_pki: Pki, observer: Observer
) -> None:
    cloud = start_cloud()
    device = Device(cloud.port, sim_pki)
    try:
        device.connect()
        topic, connected = observer.event()
        device.send(b"\xe0\x00")
        topic2, disconnected = observer.event()
    finally:
        device.close()
    cert = x509.load_pem_x509_certificate(sim_pki.device_credentials(CLIENT_ID)[0].read_bytes())
    principal = cert.fingerprint(hashes.SHA256()).hex()
    assert topic == f"$aws/events/presence/connected/{CLIENT_ID}"
    assert set(connected) == {
        "clientId",
        "timestamp",
        "eventType",
        "sessionIdentifier",
        "principalIdentifier",
        "ipAddress",
        "versionNumber",
    }
    assert connected["clientId"] == CLIENT_ID
    assert connected["eventType"] == "connected"
    assert connected["principalIdentifier"] == principal
    assert connected["ipAddress"] == "127.0.0.1"
    assert connected["versionNumber"] == 1
    assert topic2 == f"$aws/events/presence/disconnected/{CLIENT_ID}"
    assert disconnected["eventType"] == "disconnected"
    assert disconnected["sessionIdentifier"] == connected["sessionIdentifier"]
    assert disconnected["clientInitiatedDisconnect"] is True
    assert disconnected["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert disconnected["timestamp"] >= connected["timestamp"]


def test_dropped_connection_is_reported_as_connection_lost_and_versions_increase(
    start_cloud: StartCloud, sim_pki: Pki, observer: Observer
) -> None:
    cloud = start_cloud()
    versions = []
    for _ in range(2):
        device = Device(cloud.port, sim_pki)
        device.connect()
        _, connected = observer.event()
        device.close()  # no DISCONNECT: the TCP connection just goes away
        _, disconnected = observer.event()
        versions.append(connected["versionNumber"])
        assert disconnected["disconnectReason"] == "CONNECTION_LOST"
        assert disconnected["clientInitiatedDisconnect"] is False
    assert versions == [1, 2]


def test_second_session_with_the_same_client_id_ends_the_first_as_duplicate(
    start_cloud: StartCloud, sim_pki: Pki, observer: Observer
) -> None:
    cloud = start_cloud()
    first, second = Device(cloud.port, sim_pki), Device(cloud.port, sim_pki)
    try:
        first.connect()
        _, connected_first = observer.event()
        second.connect()
        events = [observer.event()[1] for _ in range(2)]
    finally:
        first.close()
        second.close()
    (ended,) = [e for e in events if e["eventType"] == "disconnected"]
    assert ended["sessionIdentifier"] == connected_first["sessionIdentifier"]
    assert ended["disconnectReason"] == "DUPLICATE_CLIENTID"
    assert ended["clientInitiatedDisconnect"] is False


def test_silent_device_is_dropped_for_keep_alive_timeout(
    start_cloud: StartCloud, sim_pki: Pki, observer: Observer
) -> None:
    cloud = start_cloud()
    device = Device(cloud.port, sim_pki)
    try:
        device.connect(keepalive_s=1)  # the broker drops it after 1.5 s without a packet
        observer.event()
        _, disconnected = observer.event(timeout=10)
    finally:
        device.close()
    assert disconnected["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"


def test_failed_handshake_publishes_no_lifecycle_event(
    start_cloud: StartCloud, sim_pki: Pki, observer: Observer
) -> None:
    cloud = start_cloud(mode="alert")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(sim_pki.root_pem))  # no client certificate: refused
    with (
        pytest.raises(ssl.SSLError),
        ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", cloud.port), timeout=5), server_hostname=ENDPOINT
        ) as sock,
    ):
        sock.recv(1)
    # A later good session is the barrier: its event must be the first the observer sees.
    device = Device(cloud.port, sim_pki, client_id="hub-sim-0002")
    try:
        device.connect("hub-sim-0002")
        topic, _ = observer.event()
    finally:
        device.close()
    assert topic == "$aws/events/presence/connected/hub-sim-0002"


def test_stand_in_exits_cleanly_on_sigterm_and_reports_sessions_it_ended(
    start_cloud: StartCloud, sim_pki: Pki, observer: Observer
) -> None:
    cloud = start_cloud()
    device = Device(cloud.port, sim_pki)
    try:
        device.connect()
        observer.event()
        assert cloud.stop() == 0
        _, disconnected = observer.event()
    finally:
        device.close()
    assert disconnected["disconnectReason"] == "SERVER_INITIATED_DISCONNECT"
    assert disconnected["clientInitiatedDisconnect"] is False
    assert cloud.records()[0]["closed_by"] == "stand-in stopping"


def test_unreachable_broker_ends_the_session_and_is_logged(start_cloud: StartCloud, sim_pki: Pki) -> None:
    dead_port = free_port()
    cloud = start_cloud(broker_port=dead_port)
    device = Device(cloud.port, sim_pki)
    try:
        with pytest.raises((ConnectionError, ssl.SSLError)):
            device.send(connect_packet(CLIENT_ID))
            device.receive()
    finally:
        device.close()
    record = cloud.wait_records(1)[0]
    assert record["handshake"] == "ok"
    assert record["error"].startswith(f"broker 127.0.0.1:{dead_port} unreachable:")


def test_broker_tls_listener_refuses_a_client_without_certificate(mqtt_broker: Broker, sim_pki: Pki) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(sim_pki.root_pem))
    with (
        pytest.raises((ssl.SSLError, ConnectionError)),
        ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", mqtt_broker.tls_port), timeout=5),
            server_hostname="127.0.0.1",
        ) as sock,
    ):
        sock.sendall(connect_packet("no-cert"))
        if not sock.recv(4):
            raise ConnectionError("closed")
