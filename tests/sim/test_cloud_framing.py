"""The stand-in's pure framing: TLS record coalescing and alert reading, MQTT packet splitting."""

from __future__ import annotations

import pytest

from rig.sim.cloud_mqtt import (
    MqttProtocolError,
    PacketSplitter,
    connect_client_id,
    connect_packet,
    encode_length,
    lifecycle_event,
    publish_packet,
)
from rig.sim.cloud_tls import Alert, FlightCoalescer, Record, alerts_in


def hs(body: bytes) -> bytes:
    return Record(22, b"\x03\x03", body).encode()


def test_plaintext_handshake_records_of_one_burst_become_one_record() -> None:
    coalescer = FlightCoalescer()
    wire = coalescer.feed(hs(b"A" * 90) + hs(b"B" * 2000) + hs(b"C" * 300) + hs(b"D" * 4))
    assert wire == hs(b"A" * 90 + b"B" * 2000 + b"C" * 300 + b"D" * 4)
    assert (coalescer.records_in, coalescer.records_out) == (4, 1)


def test_a_partial_record_is_held_until_complete() -> None:
    coalescer = FlightCoalescer()
    data = hs(b"x" * 10) + hs(b"y" * 10)
    assert coalescer.feed(data[:12]) == b""
    assert coalescer.feed(data[12:17]) == hs(b"x" * 10)
    assert coalescer.feed(data[17:]) == hs(b"y" * 10)


def test_records_after_the_change_cipher_spec_pass_unchanged() -> None:
    coalescer = FlightCoalescer()
    ccs = Record(20, b"\x03\x03", b"\x01").encode()
    encrypted_finished = hs(b"\x99" * 40)
    wire = coalescer.feed(ccs + encrypted_finished + hs(b"\x98" * 40))
    assert wire == ccs + encrypted_finished + hs(b"\x98" * 40)
    assert coalescer.feed(b"\x17\x03") == b"\x17\x03"  # even a partial record, once encrypted


def test_merged_handshake_larger_than_16k_is_split_at_the_record_limit() -> None:
    wire = FlightCoalescer().feed(hs(b"a" * 10000) + hs(b"b" * 10000))
    assert wire == hs(b"a" * 10000 + b"b" * 6384) + hs(b"b" * 3616)


def test_alerts_are_read_from_pending_output() -> None:
    assert alerts_in(bytes.fromhex("15030300020233")) == [Alert(2, 51)]
    assert Alert(2, 112).to_json() == {"level": "fatal", "code": 112, "description": "unrecognized_name"}


def test_packet_splitter_reassembles_packets_cut_anywhere() -> None:
    packets = [connect_packet("hub-sim-0001"), publish_packet("t", b"p" * 300, 1), b"\xe0\x00"]
    stream = b"".join(packets)
    splitter = PacketSplitter()
    out: list[bytes] = []
    for i in range(0, len(stream), 7):
        out += splitter.feed(stream[i : i + 7])
    assert out == packets


def test_remaining_length_uses_mqtt_varint() -> None:
    assert [encode_length(n) for n in (0, 127, 128, 16383, 16384)] == [
        b"\x00",
        b"\x7f",
        b"\x80\x01",
        b"\xff\x7f",
        b"\x80\x80\x01",
    ]
    with pytest.raises(MqttProtocolError):
        PacketSplitter().feed(b"\x30\xff\xff\xff\xff\x01")


def test_client_id_is_read_from_connect() -> None:
    assert connect_client_id(connect_packet("hub-sim-0001", keepalive_s=60)) == "hub-sim-0001"
    with pytest.raises(MqttProtocolError, match="not CONNECT"):
        connect_client_id(b"\xe0\x00")


def test_disconnected_event_has_aws_fields() -> None:
    topic, doc = lifecycle_event(
        "disconnected",
        "hub-1",
        session="s",
        principal="p",
        ip_address="127.0.0.1",
        version=3,
        client_initiated=False,
        reason="CONNECTION_LOST",
    )
    assert topic == "$aws/events/presence/disconnected/hub-1"
    assert {k: v for k, v in doc.items() if k != "timestamp"} == {
        "clientId": "hub-1",
        "eventType": "disconnected",
        "sessionIdentifier": "s",
        "principalIdentifier": "p",
        "ipAddress": "127.0.0.1",
        "versionNumber": 3,
        "clientInitiatedDisconnect": False,
        "disconnectReason": "CONNECTION_LOST",
    }
