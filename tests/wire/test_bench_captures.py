"""The wire view of real captures from the simulated bench: the incident cell and a passing one.

`tcp-rx-1024-satellite.pcap` is the router's LAN capture of the incident cell (the 1024-byte RX
buffer behind the satellite PEP); `tcp-rx-1460-satellite.pcap` the fix's passing cell on the same
path, which also holds the tail of the connection the hub had opened before the attempt's reset.
The `.events.jsonl` beside each is the attempt's event log (its `capture_stopped` time).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rig.wire import WireView, read_capture

DATA = Path(__file__).parent / "data"
INCIDENT = DATA / "tcp-rx-1024-satellite.pcap"
PASSING = DATA / "tcp-rx-1460-satellite.pcap"


def stopped(capture: Path) -> float:
    events = capture.with_suffix(".events.jsonl").read_text().splitlines()
    return next(json.loads(e)["wall"] for e in events if '"capture_stopped"' in e)


@pytest.fixture(scope="module")
def incident() -> WireView:
    return read_capture(INCIDENT, stopped=stopped(INCIDENT))


def test_the_incident_server_first_flight_is_one_5420_byte_handshake_record(incident: WireView) -> None:
    connection = incident.main
    assert connection is not None and len(incident.connections) == 1
    records = connection.server_side.records
    assert [(r.content_type, r.version, r.length, r.offset) for r in records] == [(22, 0x0303, 5420, 0)]
    assert records[0].messages == [
        "ServerHello",
        "Certificate",
        "ServerKeyExchange",
        "CertificateRequest",
        "ServerHelloDone",
    ]
    assert [(m.name, m.length) for m in connection.server_side.messages] == [
        ("ServerHello", 93),
        ("Certificate", 4963),
        ("ServerKeyExchange", 296),
        ("CertificateRequest", 48),
        ("ServerHelloDone", 0),
    ]
    assert connection.cipher_suite_name == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert connection.server_name == "sim-ats.iot.us-east-1.amazonaws.com"


def test_the_incident_flight_arrives_in_pep_segments_the_hub_truncates(incident: WireView) -> None:
    server = incident.main.server_side  # type: ignore[union-attr]
    data = [(s.offset, s.length, s.retransmission) for s in server.data_segments]
    # The PEP sends 1393 bytes into a 1024-byte window; the hub keeps 1024 and the rest comes again.
    assert data == [
        (0, 1393, False),
        (1024, 369, True),
        (1393, 1393, False),
        (2417, 369, True),
        (2786, 1393, False),
        (3810, 369, True),
        (4179, 1246, False),
        (5203, 222, True),
    ]
    record = server.records[0]
    assert round(record.header_time - incident.start, 6) == 0.906774  # type: ignore[operator]
    assert round(record.time - incident.start, 6) == 0.908981  # type: ignore[operator]
    assert round(record.acked_time - incident.start, 6) == 0.912424  # type: ignore[operator]
    assert server.holes == [] and server.length == 5425
    client_windows = [s.window for s in incident.main.client_side.segments[:8]]  # type: ignore[union-attr]
    assert client_windows == [1024, 1024, 1024, 0, 1024, 655, 1024, 0]


def test_the_incident_client_sends_its_second_flight_and_then_the_server_is_silent(
    incident: WireView,
) -> None:
    connection = incident.main
    assert connection is not None
    client = connection.client_side.records
    assert [(r.content, r.length) for r in client] == [
        ("ClientHello", 163),
        ("Certificate", 1199),
        ("ClientKeyExchange", 37),
        ("CertificateVerify", 264),
        ("ChangeCipherSpec", 1),
        ("Finished (encrypted)", 40),
    ]
    assert [round(r.time - incident.start, 3) for r in client] == [0.001, 0.913, 0.913, 1.279, 1.279, 1.279]  # type: ignore[operator]
    assert incident.last_sender == "client"
    assert incident.end_basis == "capture stopped"
    assert incident.silence_s == pytest.approx(10.252201, abs=1e-6)
    assert connection.closed is None  # the server holds the connection open without a byte


def test_without_the_stop_time_the_silence_runs_to_the_last_packet_and_says_so() -> None:
    view = read_capture(INCIDENT)
    assert view.end_basis == "last packet"
    assert view.silence_s == pytest.approx(0.369826, abs=1e-6)
    assert view.render().splitlines()[-1] == (
        "  last sender: client at 1.279 s; server silent for 0.370 s until the last packet"
    )


def test_the_reassembled_server_stream_and_record_boundaries_stay_on_the_api(incident: WireView) -> None:
    server = incident.main.server_side  # type: ignore[union-attr]
    raw = server.record_bytes(server.records[0])
    assert raw is not None and len(raw) == 5425 and raw[:5] == bytes.fromhex("160303152c")
    assert raw[5] == 2  # ServerHello
    assert server.stream == raw


def test_the_view_round_trips_through_json(incident: WireView) -> None:
    document = incident.to_json()
    again = WireView.from_json(json.loads(json.dumps(document)))
    assert again.to_json() == document
    assert again.main is not None and again.main.server_side.stream == b""  # the bytes are not in the JSON
    assert document["last_sender"] == "client" and document["main"] == 1


def test_a_passing_capture_with_the_previous_boot_connection_keeps_both_in_order() -> None:
    view = read_capture(PASSING, stopped=stopped(PASSING))
    first, second = view.connections
    assert (first.joined, second.joined) == (True, False)
    assert first.client == second.client and first.server == second.server  # same port and ISN after reset
    assert view.main is second
    assert [(r.content, r.length) for r in second.server_side.records] == [
        ("ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone", 5420),
        ("ChangeCipherSpec", 1),
        ("Finished (encrypted)", 40),
        ("application data", 28),
    ]
    assert [r.content for r in second.client_side.records][-3:] == [
        "Finished (encrypted)",
        "application data",
        "application data",
    ]
    # The joined connection starts mid-handshake: the hub's first captured record is its Certificate.
    assert [r.content for r in first.client_side.records] == [
        "Certificate",
        "ClientKeyExchange",
        "CertificateVerify",
    ]
    assert second.last_sender == "client"
