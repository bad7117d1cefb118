"""Wire against stack on crafted captures: differences named by stream offset, record and handshake message."""

from __future__ import annotations

import json
from pathlib import Path

import dpkt

from rig.report import wire_vs_stack
from rig.wire import read_capture_bytes
from tests.wire.craft import (
    CCS,
    Flow,
    client_hello,
    first_flight,
    handshake,
    pcap_bytes,
    record,
    server_hello,
)


def dump(prefix: str, data: bytes, title: str = "input record from network") -> list[str]:
    lines = [f"{prefix}dumping '{title}' ({len(data)} bytes)"]
    for at in range(0, len(data), 16):
        row = data[at : at + 16]
        lines.append(f"{prefix}{at:04x}:  " + " ".join(f"{b:02x}" for b in row))
    return lines


def log_of(records: list[bytes], prefix: str = "ssl_msg.c:2095: 0x55d0c2a0: ") -> list[str]:
    lines = ["ssl_cli.c:4261: client state: 0"]
    for one in records:
        lines += dump(prefix, one[:5], "input record header") + dump(prefix, one)
    return lines


def retransmitted_and_reordered() -> tuple[Flow, bytes]:
    """A first flight in one record sent as three segments: the second overtakes the first, the third twice."""
    flow = Flow()
    flow.handshake_tcp()
    flow.data(True, record(22, client_hello()))
    flight = record(22, first_flight(2000))
    a, b, c = flight[:1000], flight[1000:2000], flight[2000:]
    seq = flow.data(False, a, send=False)
    flow.packet(False, seq + 1000, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, b)
    flow.packet(False, seq, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, a)
    flow.cloud_next += len(b)
    again = flow.data(False, c)
    flow.tick(0.4)
    flow.packet(False, again, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, c)
    flow.data(False, CCS)
    return flow, flight


def test_two_changed_bytes_are_found_in_the_certificate_despite_retransmission_and_reordering(
    tmp_path: Path,
) -> None:
    flow, flight = retransmitted_and_reordered()
    view = read_capture_bytes(pcap_bytes(flow), "crafted.pcap")
    assert view.main is not None and view.main.server_side.retransmissions == 1
    read = bytearray(flight)
    # ServerHello is 4 + 72 bytes after the 5-byte header: 81 onwards is the Certificate message.
    read[1500] ^= 0xFF
    read[1501] ^= 0x01
    result = wire_vs_stack.check(log_of([bytes(read), CCS]), view, log="uart.raw")
    assert result is not None
    assert [(d.offset, d.wire, d.stack) for d in result.comparison.differences] == [
        (1500, 0x00, 0xFF),
        (1501, 0x00, 0x01),
    ]
    assert [p.message for p in result.places] == ["Certificate", "Certificate"]
    assert (
        result.places[0].describe()
        == f"record #0 (handshake, stream bytes 0–{len(flight) - 1}), in Certificate"
    )
    assert result.comparison.compared == len(flight) + len(CCS)
    assert result.summary() == (
        f"wire vs stack: 2 of {len(flight) + len(CCS)} compared bytes differ — first at stream offset 1500, "
        f"record #0 (handshake, stream bytes 0–{len(flight) - 1}), in Certificate: wire 00, Mbed TLS read ff "
        "(messages: Certificate)"
    )
    text, document = wire_vs_stack.write(tmp_path, result)
    assert "    1500    00     ff" in text.read_text()
    saved = json.loads(document.read_text())
    assert saved["differences"][1]["offset"] == 1501 and saved["differences"][1]["message"] == "Certificate"
    assert saved["differences"][1]["record"] == {
        "index": 0,
        "content_type": 22,
        "type_name": "handshake",
        "offset": 0,
        "end": len(flight),
    }


def test_equal_bytes_in_esp_idf_style_say_how_many_were_compared() -> None:
    flow, flight = retransmitted_and_reordered()
    view = read_capture_bytes(pcap_bytes(flow), "crafted.pcap")
    result = wire_vs_stack.check(log_of([flight, CCS], prefix="V (14650) mbedtls: ssl_tls.c:3916 "), view)
    assert result is not None and not result.differs
    assert result.summary() == f"wire vs stack: all {len(flight) + 6} compared bytes equal (2 records)"
    assert f"{len(flight) + 6} bytes compared, all equal" in result.render()


def test_only_the_last_handshake_of_a_log_is_laid_on_the_capture() -> None:
    flow, flight = retransmitted_and_reordered()
    view = read_capture_bytes(pcap_bytes(flow), "crafted.pcap")
    earlier_boot = log_of([bytes(reversed(flight))])
    result = wire_vs_stack.check(earlier_boot + log_of([flight, CCS]), view)
    assert result is not None and result.dumps == 2 and not result.differs


def test_an_overrun_dump_says_which_bytes_it_could_not_compare() -> None:
    flow, flight = retransmitted_and_reordered()
    view = read_capture_bytes(pcap_bytes(flow), "crafted.pcap")
    lines = log_of([flight, CCS])
    header = next(i for i, line in enumerate(lines) if f"({len(flight)} bytes)" in line)
    del lines[header + 40 : header + 45]  # five rows lost to a UART overrun: the dump stops at row 39
    result = wire_vs_stack.check(lines, view)
    assert result is not None and not result.differs
    assert result.comparison.compared == 39 * 16 + len(CCS)
    assert result.comparison.not_compared == [
        f"record 1 (log line {header + 1}): dump incomplete, {len(flight) - 39 * 16} of {len(flight)} bytes "
        "not in the log (UART overrun?)"
    ]
    assert "not compared: record 1" in result.summary()


def test_a_hole_in_the_capture_is_not_compared_but_said() -> None:
    flow = Flow()
    flow.handshake_tcp()
    flow.data(True, record(22, client_hello()))
    flight = record(22, first_flight(2000))
    flow.data(False, flight[:1000])
    flow.data(False, flight[1000:1400], send=False)  # never captured
    flow.data(False, flight[1400:])
    flow.ack(True)
    view = read_capture_bytes(pcap_bytes(flow), "crafted.pcap")
    result = wire_vs_stack.check(log_of([flight]), view)
    assert result is not None and not result.differs
    assert result.comparison.compared == len(flight) - 400
    assert result.comparison.not_compared == ["record 1 (log line 4): 400 bytes lie in holes of the capture"]


def test_a_byte_in_a_certificate_message_split_over_two_records_names_its_certificate() -> None:
    chain = [bytes(range(256)) * 2, bytes(700)]
    entries = b"".join(len(der).to_bytes(3, "big") + der for der in chain)
    message = handshake(11, len(entries).to_bytes(3, "big") + entries)
    first, second = record(22, server_hello() + message[:600]), record(22, message[600:])
    flow = Flow()
    flow.handshake_tcp()
    flow.data(True, record(22, client_hello()))
    flow.data(False, first + second)
    view = read_capture_bytes(pcap_bytes(flow), "crafted.pcap")
    # The second certificate's DER starts after 4 + 3 + 3 + 512 + 3 message bytes; its byte 100:
    in_message = 4 + 3 + 3 + 512 + 3 + 100
    offset = len(first) + 5 + (in_message - 600)
    read = bytearray(second)
    read[offset - len(first)] ^= 0x80
    result = wire_vs_stack.check(log_of([first, bytes(read)]), view)
    assert result is not None
    ((place),) = result.places
    assert (result.comparison.differences[0].offset, place.message) == (offset, "Certificate")
    assert place.detail == "certificate 2 of 2, byte 100 of its DER"
    assert place.describe().startswith("record #1 (handshake, stream bytes ")
