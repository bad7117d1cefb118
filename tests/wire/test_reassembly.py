"""Crafted captures for what TCP and TLS do at the edges: retransmissions, order, holes, many connections."""

from __future__ import annotations

import dpkt
import pytest

from rig.wire import Connection, WireView, read_capture_bytes
from tests.wire.craft import (
    CCS,
    Flow,
    client_hello,
    first_flight,
    handshake,
    pcap_bytes,
    pcapng_bytes,
    record,
    server_hello,
)


def view_of(*flows: Flow, snaplen: int = 65535) -> WireView:
    return read_capture_bytes(pcap_bytes(*flows, snaplen=snaplen), "crafted.pcap")


def only(view: WireView) -> Connection:
    assert len(view.connections) == 1
    return view.connections[0]


def opened() -> Flow:
    flow = Flow()
    flow.handshake_tcp()
    flow.data(True, record(22, client_hello()))
    return flow


def test_a_retransmitted_segment_is_flagged_and_its_bytes_are_kept_once() -> None:
    flow = opened()
    flight = record(22, first_flight(500))
    seq = flow.data(False, flight)
    flow.tick(0.3)
    flow.packet(False, seq, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, flight)
    server = only(view_of(flow)).server_side
    assert [(s.retransmission, s.overlap, s.differs) for s in server.data_segments] == [
        (False, 0, False),
        (True, len(flight), False),
    ]
    assert server.stream == flight and server.retransmissions == 1
    assert [r.length for r in server.records] == [len(flight) - 5]


def test_out_of_order_segments_are_placed_by_sequence_number() -> None:
    flow = opened()
    flight = record(22, first_flight(1000))
    first, second = flight[:700], flight[700:]
    seq = flow.data(False, first, send=False)
    flow.packet(False, seq + 700, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, second)
    flow.packet(False, seq, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, first)
    flow.cloud_next += len(second)
    server = only(view_of(flow)).server_side
    assert [(s.offset, s.gap_before, s.out_of_order) for s in server.data_segments] == [
        (700, 700, False),
        (0, 0, True),
    ]
    assert server.stream == flight and server.holes == []
    (one,) = server.records
    # The record was complete only when the late first segment arrived.
    assert one.time == server.data_segments[1].time and one.header_time == one.time


def test_a_lost_segment_is_a_hole_and_the_next_record_is_still_found_from_the_header() -> None:
    flow = opened()
    flight = record(22, first_flight(2000))
    seq = flow.data(False, flight[:1000])
    flow.data(False, flight[1000:2000], send=False)  # never captured
    flow.data(False, flight[2000:])
    flow.ack(True)  # the hub acknowledges everything: the capture missed a segment the hub got
    flow.data(False, CCS + record(22, bytes(40)))
    server = only(view_of(flow)).server_side
    assert seq == flow.cloud_isn + 1
    assert [(h.start, h.end, h.reason, h.acked) for h in server.holes] == [(1000, 2000, "not captured", True)]
    handshake_record, ccs, finished = server.records
    assert (handshake_record.length, handshake_record.missing, handshake_record.time) == (
        len(flight) - 5,
        1000,
        None,
    )
    assert handshake_record.content.endswith(f"(1000 of {len(flight) - 5} bytes not captured)")
    assert [ccs.content, finished.content] == ["ChangeCipherSpec", "Finished (encrypted)"]
    assert "…" in handshake_record.messages[-1]  # the Certificate is cut by the hole


def test_a_hole_that_swallows_a_record_header_resynchronises_on_the_next_records() -> None:
    flow = opened()
    hello = record(22, first_flight(200))
    flow.data(False, hello)
    flow.data(False, CCS, send=False)  # the CCS record, header and all, is not in the capture
    flow.data(False, record(22, bytes(40)) + record(23, bytes(28)))
    server = only(view_of(flow)).server_side
    assert [r.offset for r in server.records] == [0, len(hello) + 6, len(hello) + 6 + 45]
    assert server.holes[0].acked is False  # nobody acknowledged the lost bytes
    assert any("lies in a hole; records resume at offset" in note for note in server.notes)


def test_two_connections_on_the_same_port_and_isn_stay_two_in_capture_order() -> None:
    flow = opened()
    flow.data(False, record(22, first_flight(100)))
    flow.rst(True)
    flow.tick(5.0)
    again = Flow(t=flow.t)
    again.handshake_tcp()
    again.data(True, record(22, client_hello()))
    view = view_of(flow, again)
    assert [c.index for c in view.connections] == [1, 2]
    assert view.connections[0].closed == "RST by client" and view.connections[1].closed is None
    assert view.main is view.connections[1]
    assert view.main.client_side.records[0].content == "ClientHello"


def test_a_repeated_syn_is_a_retransmission_not_a_new_connection() -> None:
    flow = Flow()
    flow.packet(True, flow.hub_isn, dpkt.tcp.TH_SYN)
    flow.tick(1.0)
    flow.handshake_tcp()
    connection = only(view_of(flow))
    assert [s.retransmission for s in connection.client_side.segments[:3]] == [False, True, False]


def test_fin_and_rst_say_who_closed() -> None:
    flow = opened()
    flow.fin(True)
    flow.tick(0.1)
    flow.rst(False)
    assert only(view_of(flow)).closed == "FIN by client, RST by server"


def test_a_plaintext_alert_gives_level_and_description_and_one_after_ccs_is_encrypted() -> None:
    flow = opened()
    flow.data(False, record(21, bytes([2, 40])))  # fatal handshake_failure
    flow.data(True, CCS + record(21, bytes(26)))
    connection = only(view_of(flow))
    alert = connection.server_side.records[0].alert
    assert alert is not None and (alert.level_name, alert.description_name) == ("fatal", "handshake_failure")
    assert connection.server_side.records[0].content == "alert fatal handshake_failure"
    assert [r.content for r in connection.client_side.records] == [
        "ClientHello",
        "ChangeCipherSpec",
        "encrypted alert",
    ]


def test_a_record_split_over_many_segments_is_timed_by_its_header_and_its_last_segment() -> None:
    flow = opened()
    flight = record(22, first_flight(4000))
    for start in range(0, len(flight), 100):
        flow.data(False, flight[start : start + 100])
        flow.tick(0.01)
    server = only(view_of(flow)).server_side
    (one,) = server.records
    assert len(server.data_segments) == -(-len(flight) // 100)
    assert one.header_time == server.data_segments[0].time
    assert one.time == server.data_segments[-1].time
    assert one.messages == [
        "ServerHello",
        "Certificate",
        "ServerKeyExchange",
        "CertificateRequest",
        "ServerHelloDone",
    ]


def test_a_segment_holding_many_records_lists_each_and_a_message_may_span_records() -> None:
    flow = opened()
    certificate = handshake(11, bytes(3000))
    flow.data(False, record(22, server_hello() + certificate[:1000]) + record(22, certificate[1000:]))
    flow.data(False, CCS + record(22, bytes(40)) + record(23, bytes(28)) + record(23, bytes(28)))
    server = only(view_of(flow)).server_side
    assert [r.messages for r in server.records[:2]] == [["ServerHello", "Certificate…"], ["…Certificate"]]
    assert [(m.name, m.records, m.complete) for m in server.messages] == [
        ("ServerHello", [0], True),
        ("Certificate", [0, 1], True),
    ]
    assert [r.content for r in server.records[2:]] == [
        "ChangeCipherSpec",
        "Finished (encrypted)",
        "application data",
        "application data",
    ]
    assert len({r.time for r in server.records[2:]}) == 1  # all from one segment


def test_bytes_repeated_with_other_content_are_flagged_and_the_first_copy_wins() -> None:
    flow = opened()
    flight = record(22, first_flight(300))
    seq = flow.data(False, flight)
    changed = bytearray(flight)
    changed[100:102] = b"\xff\xff"
    flow.packet(False, seq, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, bytes(changed))
    server = only(view_of(flow)).server_side
    assert [s.differs for s in server.data_segments] == [False, True]
    assert server.stream == flight


def test_a_snap_length_cut_is_a_hole_of_its_own_kind() -> None:
    flow = opened()
    flow.data(False, record(22, first_flight(1500)))
    server = only(view_of(flow, snaplen=400)).server_side
    (hole,) = server.holes
    assert (hole.start, hole.reason) == (400 - 54, "snap length")
    assert server.records[0].missing == server.length - hole.start


def test_a_capture_joined_mid_record_finds_the_first_whole_record() -> None:
    flow = opened()
    flight = record(22, first_flight(600))
    flow.data(False, flight[:300])
    flow.data(False, flight[300:])
    flow.data(False, CCS + record(22, bytes(40)))
    late = Flow(frames=flow.frames[-2:])  # from the flight's second segment on
    connection = only(view_of(late))
    assert connection.joined is True
    assert [r.content for r in connection.server_side.records] == ["ChangeCipherSpec", "Finished (encrypted)"]


def test_window_scaling_applies_when_both_syns_carry_it() -> None:
    flow = Flow(window_scale=7)
    flow.handshake_tcp()
    flow.data(True, record(22, client_hello()), window=512)
    segments = only(view_of(flow)).client_side.segments
    assert [s.window for s in segments] == [1024, 1024 << 7, 512 << 7]
    assert only(view_of(flow)).client_side.window_scale == 7


def test_pcapng_reads_as_pcap_does() -> None:
    flow = opened()
    flow.data(False, record(22, first_flight(100)))
    pcapng = read_capture_bytes(pcapng_bytes(flow), "crafted.pcapng")
    assert pcapng.format == "pcapng"
    assert pcapng.to_json()["connections"] == view_of(flow).to_json()["connections"]


@pytest.mark.parametrize("suite", [0xC030, 0xC02F])
def test_the_negotiated_suite_comes_from_the_server_hello(suite: int) -> None:
    flow = opened()
    flow.data(False, record(22, server_hello(suite)))
    assert only(view_of(flow)).cipher_suite == suite
