"""The wire as a witness: the router's capture of the hub's LAN as TCP segments and TLS records.

Pure (it reads the file or bytes it is given and nothing else) and it imports nothing of the rig
but `rig.errors`, so it can read any capture, anywhere::

    view = read_capture("capture.pcap", stopped=None)   # or read_capture_bytes(data, "name")
    view.main                    # the Connection a verdict is about (the last TLS one)
    view.last_sender             # "client" | "server" | None: whose new data came last
    view.silence_s               # how long the other side had been silent at the capture's end
    view.to_json() / WireView.from_json(d)   # wire.json, `rig wire --json`
    view.render()                # the text of `rig wire`

A `Connection` has `client`/`server` endpoints, `version`, `cipher_suite` (from the ServerHello),
`server_name` (SNI), `closed` (FIN/RST) and one `Direction` per sender (`client_side`,
`server_side`): `segments` (time, seq, stream offset, length, window, flags, retransmission,
out-of-order), `holes` (bytes the capture lacks, and whether the receiver acknowledged them),
`records` (`TlsRecord`: content type, version, length, offset, header and completion times,
content such as "ServerHello, Certificate, …" or "encrypted alert"), `messages` (plaintext
handshake messages and the records that carry them), and `stream`, the reassembled bytes (not in
the JSON) with `record_bytes(record)` for comparing with what the stack logged.

Why dpkt reads the pcap: it is BSD-licensed pure Python without dependencies (a 195 KB wheel),
reads pcap (µs and ns) and pcapng and decodes every link layer a router capture uses (Ethernet
with VLAN tags, Linux cooked v1/v2, raw IP, loopback). Scapy, the best-maintained alternative, is
GPL-2.0-only and a 2.8 MB wheel (24 MB installed); pypcapkit brings four dependencies and
python-pcapng reads pcapng only. `make bench-wire` prints this reader's rate against a bare dpkt
decoding loop, scapy's where it is installed, and both imports' cost. dpkt ships no type
annotations: `rig.wire.capture` is the only module that touches it and hands typed packets on.
Its releases have slowed (1.9.8, fixes merged since): should it stop, that one module is what a
replacement touches.
"""

from __future__ import annotations

from rig.wire.capture import TcpPacket
from rig.wire.tcp import Endpoint, Hole, Segment, Side
from rig.wire.tls import Alert, HandshakeMessage, TlsRecord
from rig.wire.view import (
    END_LAST_PACKET,
    END_STOPPED,
    Connection,
    Direction,
    WireView,
    read_capture,
    read_capture_bytes,
)

__all__ = [
    "END_LAST_PACKET",
    "END_STOPPED",
    "Alert",
    "Connection",
    "Direction",
    "Endpoint",
    "HandshakeMessage",
    "Hole",
    "Segment",
    "Side",
    "TcpPacket",
    "TlsRecord",
    "WireView",
    "read_capture",
    "read_capture_bytes",
]
