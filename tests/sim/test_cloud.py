"""The AWS IoT Core stand-in's TLS side, seen by a real OpenSSL client over a socket and memory BIOs.

The client can flip bytes of the server's stream as they arrive, like the hub's defective receive
buffer, to provoke the failed handshake each mode answers differently.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from rig.sim.cloud import set_down, write_mode
from rig.sim.pki import Pki

ENDPOINT = "sim-ats.iot.us-east-1.amazonaws.com"  # tests/sim/conftest.py starts the stand-in with it
StartCloud = Callable[..., Any]

DECRYPT_ERROR_ALERT = bytes.fromhex("15030300020233")
# ServerHello inside the first record: record header 5, handshake header 4, version 2, random 32,
# session id length at 43, session id 44..75. Parsed by the client, covered by no signature.
SESSION_ID_LENGTH_AT = 43
SESSION_ID_BYTES = (50, 51)


@dataclass
class Outcome:
    """How a client handshake ended: ok | alert | closed | silent, with what the client received."""

    result: str
    reason: str | None = None
    received: bytearray = field(default_factory=bytearray)
    after_flight: bytes = b""


def handshake(
    port: int,
    pki: Pki,
    *,
    cert: tuple[Path, Path] | None,
    sni: str | None = ENDPOINT,
    corrupt: tuple[int, ...] = (),
    quiet_s: float = 1.5,
) -> Outcome:
    """Run a TLS 1.2 client handshake; `silent` when no byte comes for `quiet_s` while the socket stays open."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(str(pki.root_pem))
    ctx.check_hostname = sni == ENDPOINT
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    outcome = Outcome("?")
    flight_done = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(quiet_s)
        while True:
            try:
                tls.do_handshake()
                outcome.result = "ok"
                return outcome
            except ssl.SSLWantReadError:
                pending = outgoing.read()
                if pending:
                    sock.sendall(pending)
                    flight_done = flight_done or len(outcome.received) > 0
                try:
                    data = bytearray(sock.recv(65536))
                except TimeoutError:
                    outcome.result = "silent"
                    return outcome
                if not data:
                    outcome.result = "closed"
                    return outcome
                start = len(outcome.received)
                for offset in corrupt:
                    if start <= offset < start + len(data):
                        data[offset - start] ^= 0xFF
                outcome.received += data
                if flight_done:
                    outcome.after_flight += bytes(data)
                incoming.write(bytes(data))
            except ssl.SSLError as exc:
                outcome.result = "alert"
                outcome.reason = exc.reason
                return outcome


def rogue_credentials(directory: Path) -> tuple[Path, Path]:
    """A client certificate from a CA the stand-in does not trust."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue-device")])
    now = time.time()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.fromtimestamp(now - 86400, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(now + 86400, datetime.UTC))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "rogue.pem", directory / "rogue.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_device_with_sni_and_device_certificate_completes_tls12_handshake(
    start_cloud: StartCloud, sim_pki: Pki
) -> None:
    cloud = start_cloud()
    outcome = handshake(cloud.port, sim_pki, cert=sim_pki.device_credentials("hub-sim-0001"))
    assert outcome.result == "ok"
    (record,) = cloud.wait_records(1)
    assert record["handshake"] == "ok"
    assert record["sni"] == ENDPOINT
    assert record["client_cn"] == "hub-sim-0001"
    assert record["alert"] is None


def test_first_flight_is_one_handshake_record_of_about_aws_size(
    start_cloud: StartCloud, sim_pki: Pki
) -> None:
    cloud = start_cloud()
    outcome = handshake(cloud.port, sim_pki, cert=sim_pki.device_credentials("hub-sim-0001"))
    assert outcome.result == "ok"
    data = bytes(outcome.received)
    assert data[0] == 22 and data[1:3] == b"\x03\x03"
    length = int.from_bytes(data[3:5], "big")
    fragment = data[5 : 5 + length]
    kinds, pos = [], 0
    while pos < len(fragment):
        kinds.append(fragment[pos])
        pos += 4 + int.from_bytes(fragment[pos + 1 : pos + 4], "big")
    # ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone — one record.
    assert kinds == [2, 11, 12, 13, 14]
    assert pos == length
    assert data[5 + length] == 20  # the next record is the server's ChangeCipherSpec
    print(f"first flight: one record of {length} bytes ({length + 5} with header); AWS sent 5411 (5416)")
    assert 5300 <= length <= 5500
    (record,) = cloud.wait_records(1)
    assert record["first_flight_bytes"] == length + 5
    assert record["first_flight_records"] == 1
    assert record["openssl_records"] == 5


@pytest.mark.parametrize("sni", [None, "other-ats.iot.eu-west-1.amazonaws.com"], ids=["no-sni", "wrong-sni"])
def test_connection_without_the_endpoint_sni_is_refused_with_unrecognized_name(
    start_cloud: StartCloud, sim_pki: Pki, sni: str | None
) -> None:
    cloud = start_cloud(mode="silent")  # refused at the front door, whatever the mode
    outcome = handshake(cloud.port, sim_pki, cert=sim_pki.device_credentials("hub-sim-0001"), sni=sni)
    assert outcome.result == "alert"
    assert outcome.reason == "TLSV1_UNRECOGNIZED_NAME"
    assert bytes(outcome.received) == bytes.fromhex("15030300020270")
    (record,) = cloud.wait_records(1)
    assert record["handshake"] == "refused"
    assert record["sni"] == sni
    assert record["alert"] == {
        "level": "fatal",
        "code": 112,
        "description": "unrecognized_name",
        "sent": True,
    }


def test_client_without_certificate_is_refused(start_cloud: StartCloud, sim_pki: Pki) -> None:
    cloud = start_cloud(mode="alert")
    outcome = handshake(cloud.port, sim_pki, cert=None)
    assert outcome.result == "alert"
    (record,) = cloud.wait_records(1)
    assert record["handshake"] == "failed"
    assert record["error"] == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    assert record["alert"]["sent"] is True
    assert outcome.reason == f"SSLV3_ALERT_{record['alert']['description'].upper()}"


def test_client_certificate_from_another_ca_is_refused_as_unknown_ca(
    start_cloud: StartCloud, sim_pki: Pki, tmp_path: Path
) -> None:
    cloud = start_cloud(mode="alert")
    outcome = handshake(cloud.port, sim_pki, cert=rogue_credentials(tmp_path))
    assert outcome.result == "alert"
    assert outcome.reason == "TLSV1_ALERT_UNKNOWN_CA"
    (record,) = cloud.wait_records(1)
    assert record["handshake"] == "failed"
    assert record["error"] == "self-signed certificate"
    assert record["alert"] == {"level": "fatal", "code": 48, "description": "unknown_ca", "sent": True}


def corrupted_session_id_handshake(port: int, pki: Pki) -> Outcome:
    """Flip two ServerHello session-id bytes: the client goes on, the server fails CertificateVerify."""
    outcome = handshake(port, pki, cert=pki.device_credentials("hub-sim-0001"), corrupt=SESSION_ID_BYTES)
    assert outcome.received[SESSION_ID_LENGTH_AT] == 32  # the corrupted bytes are inside the session id
    return outcome


def test_silent_mode_withholds_the_alert_and_holds_the_connection_open(
    start_cloud: StartCloud, sim_pki: Pki
) -> None:
    cloud = start_cloud(mode="silent")
    outcome = corrupted_session_id_handshake(cloud.port, sim_pki)
    # The client sent its whole second flight and heard nothing back, the socket still open: the incident.
    assert outcome.result == "silent"
    assert outcome.after_flight == b""
    (record,) = cloud.wait_records(1)
    assert record["mode"] == "silent"
    assert record["handshake"] == "failed"
    assert record["error"] == "BAD_SIGNATURE"
    assert record["alert"] == {"level": "fatal", "code": 51, "description": "decrypt_error", "sent": False}
    assert record["hold_end"] == "client closed"
    assert record["held_s"] >= 1.0
    # Its journal, written at once: the digest of the flight it sent, and why it gave up.
    flight, gave_up = cloud.journal()
    assert (flight["event"], flight["flight"], flight["bytes"]) == (
        "flight sent",
        1,
        record["first_flight_bytes"],
    )
    assert [flight["sha256"]] == [f["sha256"] for f in record["flights"]]
    # The client read the flight with two session-id bytes changed: its digest is not the server's.
    received = bytes(outcome.received[: flight["bytes"]])
    assert hashlib.sha256(received).hexdigest() != flight["sha256"]
    repaired = bytearray(received)
    for offset in SESSION_ID_BYTES:
        repaired[offset] ^= 0xFF
    assert hashlib.sha256(repaired).hexdigest() == flight["sha256"]
    assert gave_up["event"] == "gave up" and gave_up["wall"] >= flight["wall"]
    assert gave_up["message"] == (
        "gave up on the handshake: BAD_SIGNATURE; withholding its fatal alert (decrypt_error) and holding the "
        "connection open and silent for up to 30 s"
    )


def test_silent_mode_closes_after_the_hold_time(start_cloud: StartCloud, sim_pki: Pki) -> None:
    cloud = start_cloud(mode="silent", hold=1.0)
    outcome = handshake(
        cloud.port,
        sim_pki,
        cert=sim_pki.device_credentials("hub-sim-0001"),
        corrupt=SESSION_ID_BYTES,
        quiet_s=5,
    )
    assert outcome.result == "closed"
    assert outcome.after_flight == b""
    (record,) = cloud.wait_records(1)
    assert record["hold_end"] == "hold timeout"


def test_alert_mode_sends_decrypt_error_and_closes(start_cloud: StartCloud, sim_pki: Pki) -> None:
    cloud = start_cloud(mode="alert")
    outcome = corrupted_session_id_handshake(cloud.port, sim_pki)
    assert outcome.result == "alert"
    assert outcome.reason == "TLSV1_ALERT_DECRYPT_ERROR"
    assert outcome.after_flight == DECRYPT_ERROR_ALERT
    (record,) = cloud.wait_records(1)
    assert record["alert"] == {"level": "fatal", "code": 51, "description": "decrypt_error", "sent": True}


def test_close_mode_closes_without_alert(start_cloud: StartCloud, sim_pki: Pki) -> None:
    cloud = start_cloud(mode="close")
    outcome = corrupted_session_id_handshake(cloud.port, sim_pki)
    assert outcome.result == "closed"
    assert outcome.after_flight == b""
    (record,) = cloud.wait_records(1)
    assert record["mode"] == "close"
    assert record["alert"] == {"level": "fatal", "code": 51, "description": "decrypt_error", "sent": False}


def test_mode_file_switches_the_failure_mode_for_the_next_connection(
    start_cloud: StartCloud, sim_pki: Pki
) -> None:
    cloud = start_cloud(mode="silent")
    assert (cloud.directory / "cloud.mode").read_text() == "silent\n"
    write_mode(cloud.directory, "alert")
    first = corrupted_session_id_handshake(cloud.port, sim_pki)
    write_mode(cloud.directory, "close")
    second = corrupted_session_id_handshake(cloud.port, sim_pki)
    assert (first.result, second.result) == ("alert", "closed")
    assert [r["mode"] for r in cloud.wait_records(2)] == ["alert", "close"]


def test_cloud_down_flag_resets_new_connections_until_cleared(start_cloud: StartCloud, sim_pki: Pki) -> None:
    cloud = start_cloud()
    set_down(cloud.directory, True)
    with pytest.raises(ConnectionResetError):
        handshake(cloud.port, sim_pki, cert=sim_pki.device_credentials("hub-sim-0001"))
    set_down(cloud.directory, False)
    assert handshake(cloud.port, sim_pki, cert=sim_pki.device_credentials("hub-sim-0001")).result == "ok"
    down, up = cloud.wait_records(2)
    assert down["handshake"] == "refused"
    assert down["error"] == "cloud down (cloud.down present): connection reset"
    assert up["handshake"] == "ok"


def test_stand_in_serves_several_connections_at_once(start_cloud: StartCloud, sim_pki: Pki) -> None:
    cloud = start_cloud(mode="silent")
    held = socket.create_connection(("127.0.0.1", cloud.port), timeout=5)  # an idle client, mid-handshake
    try:
        assert handshake(cloud.port, sim_pki, cert=sim_pki.device_credentials("hub-sim-0001")).result == "ok"
    finally:
        held.close()
    records = cloud.wait_records(2)
    assert sorted(r["handshake"] for r in records) == ["client closed", "ok"]


def test_client_offering_only_tls13_fails_per_mode_not_as_an_sni_refusal(
    start_cloud: StartCloud, sim_pki: Pki
) -> None:
    cloud = start_cloud(mode="close")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(str(sim_pki.root_pem))
    raw = socket.create_connection(("127.0.0.1", cloud.port), timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionError)), ctx.wrap_socket(raw, server_hostname=ENDPOINT):
        pass
    (record,) = cloud.wait_records(1)
    assert record["handshake"] == "failed"
    assert record["error"] == "UNSUPPORTED_PROTOCOL"
    assert record["alert"]["sent"] is False
