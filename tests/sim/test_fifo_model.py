"""The hub's TCP receive path through the real binary: RX FIFO window, truncation, the modelled defect.

A scripted LAN peer plays the router and sends the segments a satellite PEP would send; the hub's
ACKs carry what its Microchip-like socket advertises.
"""

from __future__ import annotations

import struct
from pathlib import Path

from test_hub_support import ENDPOINT, ScriptedLan, StartHub, hub_binary, make_flash, scripted_lan, start_hub

from rig.sim import lan
from rig.sim.pki import Pki

__all__ = ["hub_binary", "scripted_lan", "start_hub"]  # fixtures used below

IRS = 0x10000000
# A 16 KB handshake record header then filler: Mbed TLS keeps reading it, so the FIFO keeps draining.
STREAM = bytes([22, 3, 3, 0x3F, 0xFF]) + bytes((i * 7) & 0xFF for i in range(6000))


def _open(peer: ScriptedLan) -> lan.Open:
    peer.accept()
    request = lan.parse_open(peer.expect(lan.OPEN))
    peer.send(lan.opened(request.conn, IRS))
    hello = lan.parse_data(peer.expect(lan.DATA))
    assert hello.payload[0] == 22 and ENDPOINT.encode() in hello.payload  # ClientHello with SNI
    return request


def _segment(peer: ScriptedLan, conn: int, offset: int, size: int) -> tuple[lan.Ack, lan.Ack | None]:
    """Send STREAM[offset:offset+size]; the hub's ACK, then its window update if the FIFO drained."""
    peer.send(lan.segment(conn, IRS + 1 + offset, STREAM[offset : offset + size]))
    answer = lan.parse_ack(peer.expect(lan.ACK))
    assert answer.answers_segment
    update = None
    if answer.window < 1024:
        update = lan.parse_ack(peer.expect(lan.ACK))
        assert not update.answers_segment
    return answer, update


def test_the_hub_opens_with_its_fifo_size_as_window_and_mss_1460(
    sim_pki: Pki, tmp_path: Path, scripted_lan: ScriptedLan, start_hub: StartHub
) -> None:
    flash, _ = make_flash(sim_pki, tmp_path, "tcp-rx-1024")
    start_hub(flash, scripted_lan.port)
    request = _open(scripted_lan)
    assert (request.host, request.port, request.window, request.mss) == (ENDPOINT, 8883, 1024, 1460)


def test_a_segment_larger_than_the_free_space_is_truncated_and_the_rest_asked_again(
    sim_pki: Pki, tmp_path: Path, scripted_lan: ScriptedLan, start_hub: StartHub
) -> None:
    flash, _ = make_flash(sim_pki, tmp_path, "tcp-rx-1024")
    start_hub(flash, scripted_lan.port)
    request = _open(scripted_lan)
    answer, update = _segment(scripted_lan, request.conn, 0, 1393)
    assert (answer.ack - IRS - 1, answer.window) == (1024, 0)  # took 1024 of 1393, FIFO full
    assert update is not None and (update.ack - IRS - 1, update.window) == (
        1024,
        1024,
    )  # read, all free again


def test_a_fifo_of_1460_takes_a_1393_byte_segment_whole(
    sim_pki: Pki, tmp_path: Path, scripted_lan: ScriptedLan, start_hub: StartHub
) -> None:
    flash, _ = make_flash(sim_pki, tmp_path, "tcp-rx-1460")
    start_hub(flash, scripted_lan.port)
    request = _open(scripted_lan)
    peer = scripted_lan
    peer.send(lan.segment(request.conn, IRS + 1, STREAM[:1393]))
    answer = lan.parse_ack(peer.expect(lan.ACK))
    assert (answer.ack - IRS - 1, answer.window) == (1393, 1460 - 1393)


def test_the_rest_of_a_truncated_segment_that_wraps_the_ring_leaves_two_stale_bytes(
    sim_pki: Pki, tmp_path: Path, scripted_lan: ScriptedLan, start_hub: StartHub
) -> None:
    flash, _ = make_flash(sim_pki, tmp_path, "tcp-rx-1024")
    hub = start_hub(flash, scripted_lan.port)
    request = _open(scripted_lan)
    # What the satellite PEP sends: 1393-byte segments, each followed by the 369-byte rest the hub missed.
    sent = []
    offset = 0
    for segment_start in (0, 1393, 2786, 4179):
        for size in (1393, 369):
            answer, _ = _segment(scripted_lan, request.conn, offset, size)
            sent.append((offset, size, answer.ack - IRS - 1 - offset))
            offset = answer.ack - IRS - 1
        assert offset == segment_start + 1393
    assert [taken for _, _, taken in sent] == [1024, 369] * 4
    trace = hub.stderr.read_text()
    assert trace.splitlines() == [
        "rx-fifo: re-sent rest at stream offset 3810 wrapped the 1024-byte ring: "
        "stream bytes 4096-4097 keep stale data"
    ]


def test_ack_frames_carry_ack_window_and_kind_in_network_order() -> None:
    frame = lan.Frame(lan.ACK, 7, struct.pack(">IHB", 0xDEADBEEF, 1024, 1))
    assert lan.parse_ack(lan.FrameReader().feed(frame.encode())[0]) == lan.Ack(7, 0xDEADBEEF, 1024, True)
