"""What is not a readable capture is one line naming the file and what is wrong with it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from rig.errors import ConfigError
from rig.wire import read_capture, read_capture_bytes
from tests.wire.craft import Flow, client_hello, pcap_bytes, pcapng_bytes, record

INCIDENT = Path(__file__).parent / "data" / "tcp-rx-1024-satellite.pcap"


def message(data: bytes, partial: bool = False) -> str:
    with pytest.raises(ConfigError) as caught:
        read_capture_bytes(data, "x.pcap", partial=partial)
    assert len(caught.value.lines()) == 1
    return str(caught.value)


def test_a_missing_file_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^/nowhere/capture\.pcap: no such capture file$"):
        read_capture("/nowhere/capture.pcap")


def test_a_text_file_is_not_a_capture() -> None:
    assert message(b"# rig\nhello\n") == (
        "x.pcap: not a pcap or pcapng capture (it starts with 23 20 72 69 67 0a 68 65); "
        "give the file that tcpdump -w or the bench's capture wrote"
    )


def test_an_empty_file_says_so() -> None:
    assert (
        message(b"") == "x.pcap: the capture is empty (0 bytes); the capture never started or wrote nothing"
    )


def test_a_file_header_cut_short_is_truncated() -> None:
    assert message(INCIDENT.read_bytes()[:10]) == "x.pcap: truncated: the file header is cut short (10 bytes)"


def test_a_packet_cut_short_is_refused_unless_partial_reads_up_to_it() -> None:
    data = INCIDENT.read_bytes()[:5000]
    assert message(data) == (
        "x.pcap: truncated: frame 16 at byte 4774 of 5000 is cut short: it needs 1447 bytes there, the file "
        "holds 210; the packets before it are readable (rig wire --partial)"
    )
    view = read_capture_bytes(data, "x.pcap", partial=True)
    assert (
        view.frames == 15
        and view.truncated is not None
        and view.truncated.startswith("frame 16 at byte 4774")
    )
    assert view.main is not None and view.main.client_side.records[0].content == "ClientHello"


def test_a_record_header_cut_short_is_truncated() -> None:
    data = INCIDENT.read_bytes()
    assert "frame 35 at byte 10900 of 10908 is cut short" in message(data + bytes(8))


def test_a_pcapng_cut_inside_a_block_is_truncated() -> None:
    flow = Flow()
    flow.handshake_tcp()
    flow.data(True, record(22, client_hello()))
    data = pcapng_bytes(flow)
    assert "is cut short" in message(data[:-30])


def test_a_link_layer_without_ip_is_refused_with_what_to_do() -> None:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 105)  # IEEE 802.11
    assert message(header) == (
        "x.pcap: link type 105 carries no IP this reader knows; capture on an Ethernet port, a bridge or "
        "'any' (tcpdump -i)"
    )


def test_a_capture_with_only_its_header_has_no_connection() -> None:
    view = read_capture_bytes(pcap_bytes(), "x.pcap")
    assert (view.frames, view.connections, view.main, view.last_sender) == (0, [], None, None)
    assert view.render().splitlines()[-1] == "  no TCP segment in the capture"
