"""Cloud lifecycle events against a real mosquitto with mutual TLS (certificates made per test run).

The broker plays AWS IoT Core's side: a publisher with the "service" certificate publishes AWS-style
`$aws/events/presence/...` JSON, and `CloudEvents` (with the harness's own certificate) must see it,
tell a connect from a disconnect, ignore events that came before the attempt, and name the broker
and what to check when it cannot watch.
"""

from __future__ import annotations

import datetime
import getpass
import json
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from rig.config import CloudConfig
from rig.drivers.cloud import CloudEvents
from rig.errors import InfrastructureError
from rig.events import EventLog
from tests.peers.drivers import free_port, stop_process, wait_listening

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
DEVICE = "hub-0001"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    folder: Path,
    stem: str,
    common: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(issuer[0].subject if issuer else _name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if common == "127.0.0.1":
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


@dataclass
class Broker:
    port: int
    pki: Path

    def cloud(self, *, cert: str = "observer", port: int | None = None) -> CloudConfig:
        return CloudConfig.model_validate(
            {
                "endpoint": "test-ats.iot.us-east-1.amazonaws.com",
                "client_id": "rig-observer-test",
                "events": {
                    "broker": f"mqtts://127.0.0.1:{port or self.port}",
                    "ca": str(self.pki / "root.pem"),
                    "cert": str(self.pki / f"{cert}.pem"),
                    "key": str(self.pki / f"{cert}.key"),
                },
            }
        )

    def publish(self, kind: str, client_id: str, **fields: object) -> None:
        """Publish one lifecycle event as AWS IoT does, with the service's certificate."""
        payload = {
            "clientId": client_id,
            "timestamp": int(time.time() * 1000),
            "eventType": kind,
            "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
            "principalIdentifier": "12345678901234567890123456789012",
            **fields,
        }
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="aws-iot-stand-in")
        client.tls_set(
            ca_certs=str(self.pki / "root.pem"),
            certfile=str(self.pki / "service.pem"),
            keyfile=str(self.pki / "service.key"),
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        client.connect("127.0.0.1", self.port, keepalive=10)
        client.loop_start()
        try:
            info = client.publish(f"$aws/events/presence/{kind}/{client_id}", json.dumps(payload), qos=1)
            info.wait_for_publish(timeout=5)
            assert info.is_published()
        finally:
            client.disconnect()
            client.loop_stop()


class Mosquitto:
    """A mosquitto process on a fixed port with the test PKI; can be stopped and started again."""

    def __init__(self, pki: Path, port: int) -> None:
        self.pki = pki
        self.port = port
        self.conf = pki / f"mosquitto-{port}.conf"
        self.conf.write_text(
            f"listener {port} 127.0.0.1\n"
            f"cafile {pki / 'root.pem'}\ncertfile {pki / 'server.pem'}\nkeyfile {pki / 'server.key'}\n"
            "require_certificate true\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
            # Run as whoever runs the tests: as root mosquitto would switch to a user who cannot read them.
            f"user {getpass.getuser()}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.pki / f"mosquitto-{self.port}.log").open("ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_listening(self.port, 10, self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    root = _issue(folder, "root", "rig test root", None, ca=True)
    _issue(folder, "server", "127.0.0.1", root)
    _issue(folder, "observer", "rig-observer-test", root)
    _issue(folder, "service", "aws-iot-stand-in", root)
    _issue(
        folder, "stranger", "rig-observer-test", _issue(folder, "other-root", "another root", None, ca=True)
    )
    return folder


@pytest.fixture(scope="module")
def broker(pki: Path) -> Iterator[Broker]:
    server = Mosquitto(pki, free_port())
    server.start()
    try:
        yield Broker(server.port, pki)
    finally:
        server.stop()


@pytest.fixture
def watcher(broker: Broker) -> Iterator[tuple[CloudEvents, EventLog]]:
    events = EventLog()
    cloud = CloudEvents(broker.cloud(), events=events)
    cloud.open(timeout=10)
    yield cloud, events
    cloud.close()


def test_a_device_connect_published_by_the_cloud_is_seen(
    broker: Broker, watcher: tuple[CloudEvents, EventLog]
) -> None:
    cloud, events = watcher
    since = time.time()
    broker.publish("connected", DEVICE, ipAddress="192.0.2.50", versionNumber=0)

    event = cloud.wait_connected(DEVICE, timeout=10, since=since)

    assert event is not None
    assert (event["clientId"], event["eventType"], event["ipAddress"]) == (DEVICE, "connected", "192.0.2.50")
    assert event["topic"] == f"$aws/events/presence/connected/{DEVICE}"
    assert event["received"] >= since
    assert [e.fields["client_id"] for e in events.history if e.kind == "cloud_connected"] == [DEVICE]


def test_no_connected_event_means_none_after_the_timeout(
    broker: Broker, watcher: tuple[CloudEvents, EventLog]
) -> None:
    cloud, _ = watcher
    since = time.time()
    broker.publish(
        "disconnected", DEVICE, disconnectReason="CONNECTION_LOST", clientInitiatedDisconnect=False
    )
    broker.publish("connected", "another-hub")

    assert cloud.wait_connected(DEVICE, timeout=1.0, since=since) is None
    assert [e["disconnectReason"] for e in cloud.seen(DEVICE)] == ["CONNECTION_LOST"]


def test_events_from_before_the_attempt_do_not_count(
    broker: Broker, watcher: tuple[CloudEvents, EventLog]
) -> None:
    cloud, _ = watcher
    broker.publish("connected", "hub-0002")
    assert cloud.wait_connected("hub-0002", timeout=5, since=0) is not None

    assert cloud.wait_connected("hub-0002", timeout=0.5, since=time.time()) is None


def test_a_certificate_the_broker_does_not_trust_is_an_infrastructure_error(broker: Broker) -> None:
    cloud = CloudEvents(broker.cloud(cert="stranger"))
    with pytest.raises(InfrastructureError) as caught:
        cloud.open(timeout=3)
    assert str(caught.value).startswith(
        f"cloud events: mqtts://127.0.0.1:{broker.port} did not let 'rig-observer-test' watch "
        "(the broker closed the connection: "
    )
    assert "check that the broker trusts cloud.events.cert" in str(caught.value)
    assert not cloud.connected


def test_a_broker_that_is_down_is_named_with_what_to_check(broker: Broker) -> None:
    port = free_port()
    with pytest.raises(InfrastructureError) as caught:
        CloudEvents(broker.cloud(port=port)).open(timeout=3)
    assert str(caught.value).startswith(f"cloud events: cannot connect to mqtts://127.0.0.1:{port} (")
    assert "check cloud.events.broker, that the broker is up, and the certificate files" in str(caught.value)


def test_a_missing_certificate_file_names_the_bench_file_key(broker: Broker, tmp_path: Path) -> None:
    config = broker.cloud()
    assert config.events is not None
    missing = config.model_copy(
        update={"events": config.events.model_copy(update={"cert": tmp_path / "nope.pem"})}
    )
    with pytest.raises(
        InfrastructureError, match=r"cloud.events.cert .*nope\.pem does not exist — check the bench file"
    ):
        CloudEvents(missing).open(timeout=3)


def test_the_watcher_reconnects_and_resubscribes_after_the_broker_restarts(pki: Path) -> None:
    server = Mosquitto(pki, free_port())
    server.start()
    events = EventLog()
    cloud = CloudEvents(Broker(server.port, pki).cloud(), events=events)
    try:
        cloud.open(timeout=10)
        server.stop()
        server.start()
        since = time.time()
        deadline = time.monotonic() + 30
        seen = None
        while seen is None and time.monotonic() < deadline:  # publish until the watcher is back
            Broker(server.port, pki).publish("connected", DEVICE)
            seen = cloud.wait_connected(DEVICE, timeout=0.5, since=since)
        assert seen is not None and seen["eventType"] == "connected"
        assert "cloud_lost" in [e.kind for e in events.history]
    finally:
        cloud.close()
        server.stop()
