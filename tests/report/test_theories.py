"""The incident's theories answered from crafted captures, the cloud's own log and wire against stack."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dpkt

from rig.report import theories, wire_vs_stack
from rig.wire import read_capture_bytes
from tests.report.test_wire_vs_stack import log_of
from tests.wire.craft import CCS, Flow, client_hello, first_flight, handshake, pcap_bytes, record

FLIGHT = record(22, first_flight(2000))
LAST_FLIGHT = [record(22, handshake(11, bytes(900))), record(22, handshake(16, bytes(70))), CCS]


def incident(*, acked: bool = True, answer: bytes = b"", fin: bool = False) -> Flow:
    """ClientHello, the server's first flight, the hub's last flight; then the server's answer or silence."""
    flow = Flow()
    flow.handshake_tcp()
    flow.data(True, record(22, client_hello()))
    flow.data(False, FLIGHT)
    flow.ack(True)
    flow.tick(0.5)
    for one in LAST_FLIGHT:
        flow.data(True, one)
    if acked:
        flow.ack(False)
    flow.tick(2.0)
    if answer:
        flow.data(False, answer)
    if fin:
        flow.fin(False)
    flow.tick(10.0)
    flow.ack(True)  # the capture runs on: the server's silence is measured until here
    return flow


def cloud_log(flow: Flow, sent: bytes = FLIGHT) -> list[dict[str, object]]:
    return [
        {"event": "flight sent", "flight": 1, "bytes": len(sent), "sha256": hashlib.sha256(sent).hexdigest(),
         "wall": flow.frames[3][0] - 0.3},
        {"event": "gave up", "wall": flow.frames[-1][0] - 10.0,
         "message": "gave up on the handshake: BAD_SIGNATURE; withholding its fatal alert (decrypt_error)"},
    ]  # fmt: skip


def corrupted_check(flow: Flow) -> wire_vs_stack.WireVsStack:
    read = bytearray(FLIGHT)
    read[1500] ^= 0xFF
    read[1501] ^= 0xFF
    check = wire_vs_stack.check(log_of([bytes(read)]), read_capture_bytes(pcap_bytes(flow), "lan.pcap"))
    assert check is not None
    return check


def test_changed_bytes_with_an_intact_wire_are_the_devices_and_explain_the_silence(tmp_path: Path) -> None:
    flow = incident()
    view = read_capture_bytes(pcap_bytes(flow), "lan.pcap")
    answered = theories.answer(view, corrupted_check(flow), cloud_log(flow), check_from="forensic attempt 2")
    one, two, three, four = answered.answers
    assert one.startswith(
        "(1) The hub's last flight left it: Certificate, ClientKeyExchange, ChangeCipherSpec (3 records, 994 bytes)"
    )
    assert "acknowledged by TCP 0.001 s later" in one
    assert two.startswith(
        "(2) The server went silent after it: no byte for 12.0 s until the last packet, no alert, no FIN or RST"
    )
    assert two.endswith(
        'the cloud\'s own log: "gave up on the handshake: BAD_SIGNATURE; withholding its fatal alert (decrypt_error)"'
    )
    assert three.startswith("(3) No answer of the server reached the hub's LAN")
    assert four == (
        "(4) Bytes differ between the wire and the stack (forensic attempt 2): 2 bytes at stream offset 1500–1501 in "
        "Certificate; the wire carried the flight as the server sent it (sha256 equal to the cloud's own digest), so "
        "the device changed them between its LAN port and Mbed TLS"
    )
    assert answered.supported.startswith("(4): the device changed 2 bytes of the server's flight")
    assert answered.supported.endswith(
        "the server's silence (2) is its answer to a transcript that no longer matched"
    )
    assert (
        theories.write(tmp_path, answered).read_text().splitlines()[-1] == f"Supported: {answered.supported}"
    )


def test_a_flight_on_the_wire_that_is_not_the_servers_says_the_path_changed_it() -> None:
    flow = incident()
    view = read_capture_bytes(pcap_bytes(flow), "lan.pcap")
    other = FLIGHT[:100] + b"\x01" + FLIGHT[101:]
    answered = theories.answer(view, corrupted_check(flow), cloud_log(flow, sent=other))
    assert answered.answers[3].endswith(
        "the flight on the wire is not the one the server sent (its sha256 differs from the cloud's own digest)"
    )
    assert answered.supported.startswith(
        "(4): the path changed bytes of the server's flight before the hub's LAN;"
    )


def test_without_level_4_dumps_the_silent_server_is_theory_2_and_the_forensic_rerun_is_named() -> None:
    flow = incident()
    answered = theories.answer(read_capture_bytes(pcap_bytes(flow), "lan.pcap"), None)
    assert answered.answers[3] == (
        "(4) Wire against stack not compared: the log holds no Mbed TLS input dump (debug level 4), and no "
        "forensic rerun has one"
    )
    assert answered.supported == (
        "(2): the server received the hub's flight and went silent; wire against stack needs the forensic rerun "
        "(debug level 4) to say whether bytes changed"
    )


def test_an_unacknowledged_flight_the_cloud_never_saw_supports_theory_1() -> None:
    flow = incident(acked=False)
    answered = theories.answer(read_capture_bytes(pcap_bytes(flow), "lan.pcap"), None)
    assert answered.answers[0].endswith("never acknowledged by TCP — it may not have reached the server")
    assert answered.supported == "(1): the hub's last flight was never acknowledged on the LAN"


def test_an_answer_on_the_lan_is_said_with_its_records_and_theory_3_is_refuted() -> None:
    alert = record(21, b"\x02\x33")
    flow = incident(answer=alert, fin=True)
    answered = theories.answer(read_capture_bytes(pcap_bytes(flow), "lan.pcap"), None)
    assert answered.answers[1].startswith(
        "(2) The server did not go silent after it: it sent alert fatal decrypt_error at "
    )
    assert ", a FIN at " in answered.answers[1]
    assert answered.answers[2].startswith(
        "(3) The server's answer reached the hub's LAN: 1 records (7 bytes), the first at "
    )
    assert answered.supported.startswith("none of (1)–(3): the server's answer reached the hub's LAN")


def test_retransmitted_segments_do_not_count_as_an_answer() -> None:
    flow = incident()
    seq = flow.cloud_next - len(FLIGHT)
    flow.packet(False, seq, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, FLIGHT)  # the first flight again, later
    answered = theories.answer(read_capture_bytes(pcap_bytes(flow), "lan.pcap"), None)
    assert answered.answers[2].startswith("(3) No answer of the server reached the hub's LAN")
