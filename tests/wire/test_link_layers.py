"""The incident capture re-framed as `tcpdump -i any` (Linux cooked v1, v2) and raw IP writes it reads the same."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import dpkt
import pytest

from rig.wire import read_capture_bytes

INCIDENT = Path(__file__).parent / "data" / "tcp-rx-1024-satellite.pcap"


def reframed(linktype: int, frame_of: Callable[[bytes], bytes]) -> bytes:
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, linktype=linktype)
    for stamp, frame in dpkt.pcap.Reader(io.BytesIO(INCIDENT.read_bytes())):
        writer.writepkt(frame_of(bytes(dpkt.ethernet.Ethernet(frame).data)), ts=stamp)
    return out.getvalue()


FRAMINGS = {
    "linux cooked (sll)": (113, lambda ip: bytes(dpkt.sll.SLL(hdr=bytes(8))) + ip),
    "linux cooked v2 (sll2)": (276, lambda ip: bytes(dpkt.sll2.SLL2(hdr=bytes(8))) + ip),
    "raw ip": (101, lambda ip: ip),
}


@pytest.mark.parametrize("link", FRAMINGS)
def test_every_framing_gives_the_view_ethernet_gives(link: str) -> None:
    linktype, frame_of = FRAMINGS[link]
    view = read_capture_bytes(reframed(linktype, frame_of), "reframed.pcap")
    ethernet = read_capture_bytes(INCIDENT.read_bytes(), "reframed.pcap")
    assert view.link == link and view.frames == 34
    assert view.to_json()["connections"] == ethernet.to_json()["connections"]
