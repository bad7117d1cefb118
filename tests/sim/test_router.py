"""The bench router: uplink selection through `simrouter`, new connections only, the pcap it streams,
and how each path's last hop segments the server's bytes toward a hub (scripted LAN peer, real router
process, a plain TCP server standing in for the cloud).
"""

from __future__ import annotations

import re
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_hub_support import ENDPOINT, RouterProcess, ScriptedLan, StartRouter, scripted_lan, start_router

from rig.sim import lan
from rig.sim.pep import SegmentSender
from rig.wire import read_capture_bytes

__all__ = ["scripted_lan", "start_router"]  # fixtures used below


class FlightServer:
    """A plain TCP server in place of the cloud: sends `flight` bytes to each client, records what it got."""

    def __init__(self, flight: bytes) -> None:
        self.flight = flight
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port: int = self.server.getsockname()[1]
        self._stop = threading.Event()
        self.received: list[tuple[float, int]] = []
        self.accepted_at: list[float] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        clients: list[socket.socket] = []
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self.accepted_at.append(time.monotonic())
            conn.settimeout(10)
            conn.sendall(self.flight)
            clients.append(conn)  # held open, silent, until the server closes
            threading.Thread(target=self._receive, args=(conn,), daemon=True).start()
        for conn in clients:
            conn.close()

    def _receive(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                self.received.append((time.monotonic(), len(data)))
        except OSError:
            return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()


@pytest.fixture
def flight_server() -> Iterator[FlightServer]:
    server = FlightServer(bytes(i & 0xFF for i in range(5425)))
    try:
        yield server
    finally:
        server.close()


def _hub_connect(peer: ScriptedLan, router: RouterProcess, conn: int, window: int) -> None:
    if peer.conn is None:
        peer.conn = socket.create_connection(("127.0.0.1", router.lan_port), timeout=10)
    body = struct.pack(">HHHI", 8883, window, 1460, 1000 * conn) + ENDPOINT.encode()
    peer.send(lan.Frame(lan.OPEN, conn, body))


def _receive_flight(peer: ScriptedLan, conn: int, fifo: int, total: int) -> list[tuple[int, int, float]]:
    """Play a hub with an RX FIFO of `fifo` bytes that reads everything at once; (offset, size, t) per segment."""
    irs = struct.unpack(">I", peer.expect(lan.OPENED).body)[0]
    got, segments = 0, []
    while got < total:
        frame = peer.expect(lan.SEG)
        seq = struct.unpack_from(">I", frame.body)[0]
        payload = frame.body[4:]
        offset = seq - irs - 1
        segments.append((offset, len(payload), time.monotonic()))
        taken = min(len(payload), fifo) if offset == got else 0
        got += taken
        peer.send(lan.Frame(lan.ACK, conn, struct.pack(">IHB", irs + 1 + got, fifo - taken, 1)))
        if taken == fifo:  # the application drains the FIFO: window update
            peer.send(lan.Frame(lan.ACK, conn, struct.pack(">IHB", irs + 1 + got, fifo, 0)))
    return segments


def test_route_names_the_active_uplink_and_select_switches_it(
    flight_server: FlightServer, start_router: StartRouter
) -> None:
    router = start_router(flight_server.port)
    before = router.simrouter("route")
    assert before.returncode == 0
    assert before.stdout.splitlines()[0] == "default via 10.64.0.1 dev landline proto static metric 10"
    chosen = router.simrouter("select", "satellite")
    assert (chosen.returncode, chosen.stdout) == (0, "uplink satellite selected for new connections\n")
    after = router.simrouter("route").stdout.splitlines()
    assert after[0] == "default via 10.64.1.1 dev satellite proto static metric 10"
    assert "192.168.8.0/24 dev lan proto kernel scope link src 192.168.8.1" in after


def test_select_of_an_unknown_path_exits_2_and_lists_the_paths(
    flight_server: FlightServer, start_router: StartRouter
) -> None:
    router = start_router(flight_server.port)
    result = router.simrouter("select", "lte")
    assert result.returncode == 2
    assert result.stderr == "simrouter: unknown path 'lte'; this router has: landline, satellite\n"
    assert router.simrouter("route").stdout.startswith("default via 10.64.0.1 dev landline ")


def test_the_active_uplink_survives_a_router_restart(
    flight_server: FlightServer, start_router: StartRouter, tmp_path: Path
) -> None:
    folder = tmp_path / "kept"
    first = start_router(flight_server.port, folder=folder)
    assert first.simrouter("select", "satellite").returncode == 0
    first.stop()
    second = start_router(flight_server.port, folder=folder)
    assert second.simrouter("status").stdout.startswith("satellite (rtt 600 ms, mss 1393, full_segments")


def test_simrouter_says_the_router_is_not_running_and_exits_3(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "rig.sim.simrouter", "--dir", str(tmp_path), "route"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    assert result.returncode == 3
    assert result.stderr.startswith(
        f"simrouter: the bench router is not running (control socket {tmp_path}/router.sock"
    )


def test_a_switch_moves_new_connections_only(
    flight_server: FlightServer, start_router: StartRouter, scripted_lan: ScriptedLan
) -> None:
    router = start_router(flight_server.port, path="landline")
    _hub_connect(scripted_lan, router, 1, 4096)
    scripted_lan.expect(lan.OPENED)
    assert router.simrouter("select", "satellite").returncode == 0
    _hub_connect(scripted_lan, router, 2, 4096)
    scripted_lan.expect(lan.OPENED)
    status = router.simrouter("status").stdout
    assert status.endswith("connections: 1:landline, 2:satellite\n")


def test_the_satellite_pep_sends_whole_1393_byte_segments_then_the_rest_a_1024_fifo_missed(
    flight_server: FlightServer, start_router: StartRouter, scripted_lan: ScriptedLan
) -> None:
    router = start_router(flight_server.port, path="satellite")
    _hub_connect(scripted_lan, router, 1, 1024)
    segments = _receive_flight(scripted_lan, 1, 1024, 5425)
    assert [(offset, size) for offset, size, _ in segments] == [
        (0, 1393), (1024, 369), (1393, 1393), (2417, 369), (2786, 1393), (3810, 369), (4179, 1246), (5203, 222),
    ]  # fmt: skip


def test_the_landline_never_sends_more_than_the_advertised_window(
    flight_server: FlightServer, start_router: StartRouter, scripted_lan: ScriptedLan
) -> None:
    router = start_router(flight_server.port, path="landline")
    _hub_connect(scripted_lan, router, 1, 1024)
    segments = _receive_flight(scripted_lan, 1, 1024, 5425)
    assert [size for _, size, _ in segments] == [1024, 1024, 1024, 1024, 1024, 305]


def _captured(router: RouterProcess, play: Callable[[], None]) -> bytes:
    """The pcap `simrouter capture` streams while `play` drives the LAN, and a moment after it."""
    argv = [sys.executable, "-m", "rig.sim.simrouter", "--dir", str(router.folder), "capture"]
    capture = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        assert capture.stdout is not None
        with selectors.DefaultSelector() as sel:  # the pcap header: the capture is subscribed
            sel.register(capture.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=15), "simrouter capture wrote nothing within 15 s"
        header = capture.stdout.read(24)
        play()
        time.sleep(0.3)
    finally:
        capture.terminate()
        rest, _ = capture.communicate(timeout=10)
    return header + rest


def _tcp_of(data: bytes) -> list[tuple[bytes, bytes]]:
    """(source address, TCP segment) of each IPv4 TCP packet of a pcap."""
    packets, pos = [], 24
    while pos + 16 <= len(data):
        length = struct.unpack_from("<I", data, pos + 8)[0]
        packets.append(data[pos + 16 : pos + 16 + length])
        pos += 16 + length
    return [(p[26:30], p[34:]) for p in packets if p[12:14] == b"\x08\x00" and p[23] == 6]


def test_the_capture_is_a_pcap_with_the_lan_sides_sequence_numbers_and_windows(
    flight_server: FlightServer, start_router: StartRouter, scripted_lan: ScriptedLan
) -> None:
    router = start_router(flight_server.port, path="landline")

    def play() -> None:
        _hub_connect(scripted_lan, router, 1, 1024)
        _receive_flight(scripted_lan, 1, 1024, 5425)

    data = _captured(router, play)
    magic, major, minor, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1)
    tcp = _tcp_of(data)
    syn_src, syn = tcp[0]
    assert syn_src == bytes([192, 168, 8, 50]) and syn[13] == 0x02  # the hub's SYN
    assert struct.unpack_from(">H", syn, 14)[0] == 1024  # its window: the FIFO size
    from_cloud = [t for src, t in tcp if src == bytes([203, 0, 113, 10]) and len(t) > (t[12] >> 4) * 4]
    irs = 0x5EED0000 + 0x1000
    assert [struct.unpack_from(">I", t, 4)[0] - irs - 1 for t in from_cloud] == [
        0,
        1024,
        2048,
        3072,
        4096,
        5120,
    ]
    assert b"".join(t[(t[12] >> 4) * 4 :] for t in from_cloud) == flight_server.flight


@pytest.mark.parametrize("path", ["satellite", "landline"])
def test_the_capture_holds_the_router_sides_ack_of_each_of_the_hubs_segments(
    path: str, flight_server: FlightServer, start_router: StartRouter, scripted_lan: ScriptedLan
) -> None:
    """The PEP acknowledges what it took, the landline's cloud what reached it: the wire sees both."""
    router = start_router(flight_server.port, path=path)
    flight = [
        b"\x16\x03\x03\x00\x40" + bytes(64),
        b"\x14\x03\x03\x00\x01\x01",
        b"\x16\x03\x03\x00\x28" + bytes(40),
    ]
    iss = 1000  # _hub_connect's for connection 1

    def play() -> None:
        _hub_connect(scripted_lan, router, 1, 4096)
        _receive_flight(scripted_lan, 1, 4096, 5425)
        seq = iss + 1
        for payload in flight:
            scripted_lan.send(lan.Frame(lan.DATA, 1, struct.pack(">I", seq) + payload))
            seq += len(payload)
        deadline = time.monotonic() + 10
        while sum(n for _, n in flight_server.received) < seq - iss - 1 and time.monotonic() < deadline:
            time.sleep(0.02)

    data = _captured(router, play)
    assert sum(n for _, n in flight_server.received) == sum(map(len, flight))
    tcp = _tcp_of(data)
    pure_acks = [
        struct.unpack_from(">I", t, 8)[0]
        for src, t in tcp
        if src == bytes([203, 0, 113, 10]) and t[13] == 0x10 and len(t) == (t[12] >> 4) * 4
    ]
    ends = [iss + 1 + sum(map(len, flight[: n + 1])) for n in range(len(flight))]
    assert pure_acks == ends
    view = read_capture_bytes(data, "lan.pcap")
    assert view.main is not None
    records = view.main.client_side.records
    assert [r.content_type for r in records] == [22, 20, 22]
    assert all(r.acked_time is not None and r.when is not None and r.acked_time >= r.when for r in records)


def test_pep_sender_trims_a_truncated_segment_and_resends_only_the_rest() -> None:
    sender = SegmentSender(irs=99, mss=1393, segmentation="full_segments", window=1024)
    sender.push(bytes(3000))
    first = sender.next_segment(flush=False)
    assert first is not None and (first.offset, len(first.payload), first.is_rest) == (0, 1393, False)
    sender.on_ack(100 + 1024, 0, True)
    assert sender.next_segment(flush=True) is None  # window closed
    sender.on_ack(100 + 1024, 1024, False)
    rest = sender.next_segment(flush=False)
    assert rest is not None and (rest.offset, len(rest.payload), rest.is_rest) == (1024, 369, True)
    assert sender.truncations == [(0, 1393, 1024)]


def test_satellite_and_landline_delays_measured(
    flight_server: FlightServer, start_router: StartRouter, scripted_lan: ScriptedLan
) -> None:
    """Figures (run with -s): time from the hub's SYN to the first byte of the flight, per path."""
    figures = {}
    for path in ("landline", "satellite"):
        router = start_router(flight_server.port, path=path)
        peer = ScriptedLan()
        try:
            start = time.monotonic()
            _hub_connect(peer, router, 1, 65535)
            segments = _receive_flight(peer, 1, 65535, 5425)
            figures[path] = (segments[0][2] - start, segments[-1][2] - segments[0][2])
        finally:
            peer.close()
            router.stop()
    for path, (first, spread) in figures.items():
        print(f"{path}: SYN -> first flight byte {first * 1000:.0f} ms, flight over {spread * 1000:.1f} ms")
    ratio = figures["satellite"][0] / figures["landline"][0]
    print(f"satellite/landline first-byte ratio {ratio:.1f} (profiles: 600/30 ms RTT)")
    assert figures["satellite"][0] > figures["landline"][0]


def test_uplink_rates_measured(start_router: StartRouter) -> None:
    """Figures (run with -s): satellite down and up rates against the profile's 25/3 Mbit/s."""
    server = FlightServer(bytes(400_000))
    router = start_router(server.port, path="satellite")
    peer = ScriptedLan()
    try:
        _hub_connect(peer, router, 1, 65535)
        segments = _receive_flight(peer, 1, 65535, len(server.flight))
        down = len(server.flight) * 8 / (segments[-1][2] - segments[0][2]) / 1000
        for offset in range(0, 150_000, 1460):  # the hub sends 150 kB up
            peer.send(lan.Frame(lan.DATA, 1, struct.pack(">I", 1001 + offset) + bytes(1460)))
        deadline = time.monotonic() + 10
        while sum(n for _, n in server.received) < 150_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        arrivals = server.received
        up = sum(n for _, n in arrivals) * 8 / (arrivals[-1][0] - arrivals[0][0]) / 1000
    finally:
        peer.close()
        server.close()
    print(f"satellite down {down:.0f} kbit/s (profile 25000, ratio {down / 25000:.2f}); "
          f"up {up:.0f} kbit/s (profile 3000, ratio {up / 3000:.2f})")  # fmt: skip
    assert [size for _, size, _ in segments[:3]] == [1393, 1393, 1393]


def test_a_malformed_lan_frame_closes_the_link_and_status_shows_the_error(
    flight_server: FlightServer, start_router: StartRouter
) -> None:
    router = start_router(flight_server.port)
    with socket.create_connection(("127.0.0.1", router.lan_port), timeout=10) as link:
        link.sendall(lan.Frame(lan.OPEN, 1, b"\x01").encode())  # an OPEN far too short
        assert link.recv(100) == b""  # the router closes the link
    status = router.simrouter("status").stdout
    assert re.search(
        r"; 1 error\(s\), last: malformed LAN frame from the hub \(.+\); link closed \(see router\.log\)$",
        status,
    )
