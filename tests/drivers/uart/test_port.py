"""The UART capture against real peers: a pty standing in for the device, ser2net serving it as RFC 2217."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from rig.drivers.uart.port import Uart, UartError, UartLine, UartTimeout, UartUnexpected
from rig.events import Event, EventLog
from tests.peers.drivers import PtyDevice, Ser2net, settle

# 3 Mbit/s for two seconds: 750 kB of Mbed TLS-like debug lines with binary noise mixed in.
FLOOD_BYTES = 3_000_000 // 8 * 2


def flood(size: int) -> bytes:
    """Debug-log-shaped text lines, every 50th one with raw binary bytes (0x00, 0xff, a lone CR)."""
    out = bytearray()
    n = 0
    while len(out) < size:
        out += f"ssl_tls.c:{n % 9000:04d}: |4| 0x2000{n:06x} dumping 'input record' ({n} bytes)\r\n".encode()
        if n % 50 == 0:
            out += bytes(range(256)) + b"\n"
        n += 1
    return bytes(out[:size])


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.01)


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def uart(pty_device: PtyDevice) -> Iterator[Uart]:
    port = Uart(pty_device.url, 115200, events=EventLog(), name="hub")
    port.open(timeout=5)
    yield port
    port.close()


def test_a_flood_over_a_pty_is_captured_byte_for_byte(
    uart: Uart, pty_device: PtyDevice, tmp_path: Path
) -> None:
    uart.record(tmp_path / "attempt")
    sub = uart.subscribe()
    data = flood(FLOOD_BYTES)
    pty_device.write(data)
    wait_for(lambda: uart.bytes_read >= len(data), 20, "reading the flood")
    uart.record(None)

    assert (tmp_path / "attempt" / "uart.raw").read_bytes() == data
    lines = [sub.get(timeout=1) for _ in range(data.count(b"\n"))]
    complete = data[: data.rindex(b"\n") + 1]  # the unterminated rest is not a line yet
    assert b"".join(line.raw for line in lines if line is not None) == complete
    records = read_jsonl(tmp_path / "attempt" / "uart.jsonl")
    assert len(records) == data.count(b"\n")
    assert [r["offset"] for r in records[:2]] == [0, data.index(b"\n") + 1]


@pytest.mark.parametrize(
    ("raw", "scheme"), [(False, "rfc2217://"), (True, "socket://")], ids=["rfc2217", "socket"]
)
def test_a_flood_through_ser2net_is_captured_byte_for_byte(
    pty_device: PtyDevice, ser2net: Callable[..., Ser2net], tmp_path: Path, raw: bool, scheme: str
) -> None:
    server = ser2net(pty_device.url, raw=raw)
    assert server.url.startswith(scheme)
    with Uart(server.url, 115200, name="hub") as port:
        settle(pty_device, port)
        port.record(tmp_path)
        data = flood(FLOOD_BYTES)
        read_before = port.bytes_read
        pty_device.write(data, timeout=30)
        wait_for(
            lambda: port.bytes_read - read_before >= len(data), 30, f"reading the flood through {scheme}"
        )
    assert (tmp_path / "uart.raw").read_bytes() == data


def test_each_line_is_recorded_with_its_offset_in_the_raw_file_and_timestamps(
    uart: Uart, pty_device: PtyDevice, tmp_path: Path
) -> None:
    uart.record(tmp_path)
    before = time.time()
    pty_device.write(b"boot: image sha256=ab\r\nclient state: 12\nno newline yet")
    uart.expect("client state: 12", timeout=5)
    records = read_jsonl(tmp_path / "uart.jsonl")
    assert [(r["offset"], r["text"]) for r in records] == [
        (0, "boot: image sha256=ab"),
        (23, "client state: 12"),
    ]
    assert all(before <= float(str(r["wall"])) <= time.time() for r in records)
    raw = (tmp_path / "uart.raw").read_bytes()
    assert raw[23:].startswith(b"client state: 12\n")
    assert raw.endswith(b"no newline yet")  # raw bytes are written before any line is complete


def test_every_subscriber_sees_every_line_without_taking_it_from_the_others(
    uart: Uart, pty_device: PtyDevice
) -> None:
    first, second = uart.subscribe(), uart.subscribe()
    pty_device.write(b"one\ntwo\nthree\n")
    got = [[s.get(timeout=5) for _ in range(3)] for s in (first, second)]
    for lines in got:
        assert [line.text for line in lines if line is not None] == ["one", "two", "three"]
    assert first.get(timeout=0.05) is None


def test_a_subscriber_that_never_reads_does_not_slow_the_capture(
    uart: Uart, pty_device: PtyDevice, tmp_path: Path
) -> None:
    idle = uart.subscribe()
    uart.record(tmp_path)
    data = flood(200_000)
    pty_device.write(data)
    wait_for(lambda: uart.bytes_read >= len(data), 10, "reading past an idle subscriber")
    assert (tmp_path / "uart.raw").read_bytes() == data
    assert isinstance(idle.get(timeout=0), UartLine)


def test_a_bounded_subscriber_keeps_the_newest_lines_and_counts_the_dropped(
    uart: Uart, pty_device: PtyDevice
) -> None:
    sub = uart.subscribe(limit=2)
    pty_device.write(b"1\n2\n3\n4\n5\n")
    wait_for(lambda: uart.last_lines(1) == ["5"], 5, "the fifth line")
    assert [line.text for line in iter(lambda: sub.get(timeout=0), None)] == ["4", "5"]
    assert sub.dropped == 3


def test_expect_returns_the_match_of_the_first_matching_line(uart: Uart, pty_device: PtyDevice) -> None:
    pty_device.write(b"=> handshake\nclient state: 11\nclient state: 12\n")
    match = uart.expect(r"client state: (\d+)", timeout=5)
    assert match.group(1) == "11"
    assert uart.expect(r"client state: (\d+)", timeout=5).group(1) == "12"


def test_expect_raises_on_a_not_matching_line_with_that_line(uart: Uart, pty_device: PtyDevice) -> None:
    pty_device.write(b"client state: 3\nx509_verify_cert() returned -9984\nHANDSHAKE OK\n")
    with pytest.raises(UartUnexpected) as caught:
        uart.expect("HANDSHAKE OK", timeout=5, not_matching=r"returned -\d+")
    assert caught.value.line.text == "x509_verify_cert() returned -9984"
    assert caught.value.exit_code == 1


def test_expect_timeout_names_the_port_the_log_and_the_last_lines(
    uart: Uart, pty_device: PtyDevice, tmp_path: Path
) -> None:
    uart.record(tmp_path)
    pty_device.write(b"client state: 12\nin_left: 0, nb_want: 5\n")
    uart.expect("nb_want", timeout=5)
    with pytest.raises(UartTimeout) as caught:
        uart.expect("client state: 13", timeout=0.3)
    message = str(caught.value)
    assert message.startswith(f"hub {pty_device.url}: no line matching 'client state: 13' within 0.3 s; ")
    assert f"log: {tmp_path / 'uart.raw'}" in message
    assert message.endswith("last lines:\n  client state: 12\n  in_left: 0, nb_want: 5")
    assert caught.value.tail == ["client state: 12", "in_left: 0, nb_want: 5"]


def test_recording_switches_per_attempt(uart: Uart, pty_device: PtyDevice, tmp_path: Path) -> None:
    uart.record(tmp_path / "a")
    pty_device.write(b"first attempt\n")
    uart.expect("first", timeout=5)
    uart.record(tmp_path / "b")
    pty_device.write(b"second attempt\n")
    uart.expect("second", timeout=5)
    assert (tmp_path / "a" / "uart.raw").read_bytes() == b"first attempt\n"
    assert (tmp_path / "b" / "uart.raw").read_bytes() == b"second attempt\n"
    assert [r["text"] for r in read_jsonl(tmp_path / "b" / "uart.jsonl")] == ["second attempt"]


def test_a_vanishing_port_is_reopened_and_nothing_sent_after_its_return_is_lost(
    pty_device: PtyDevice, tmp_path: Path
) -> None:
    events = EventLog()
    back = threading.Event()
    events.subscribe(lambda e: back.set() if e.kind == "port_back" else None)
    with Uart(pty_device.url, 115200, events=events, name="hub") as port:
        port.record(tmp_path)
        before = flood(100_000)
        pty_device.write(before)
        wait_for(lambda: port.bytes_read >= len(before), 10, "reading before the loss")
        pty_device.vanish()  # the hub resets and its USB console re-enumerates
        time.sleep(0.3)
        pty_device.appear()
        assert back.wait(10), "port_back was not recorded"
        after = flood(FLOOD_BYTES)
        pty_device.write(after)
        wait_for(lambda: port.bytes_read >= len(before) + len(after), 20, "reading after the return")
    assert (tmp_path / "uart.raw").read_bytes() == before + after
    kinds = [e.kind for e in events.history if e.kind.startswith("port_")]
    assert kinds == ["port_lost", "port_back"]
    lost = next(e for e in events.history if e.kind == "port_lost")
    assert lost.fields["url"] == pty_device.url


def test_a_restarted_ser2net_is_reconnected_and_nothing_sent_after_is_lost(
    pty_device: PtyDevice, ser2net: Callable[[str], Ser2net], tmp_path: Path
) -> None:
    server = ser2net(pty_device.url)
    events = EventLog()
    with Uart(server.url, 115200, events=events, name="hub") as port:
        port.record(tmp_path)
        pty_device.write(b"before\n")
        port.expect("before", timeout=5)
        server.stop()  # a ser2net with a session open may take its time to exit: the Uart, polling
        stopped = time.monotonic()  # every 20 ms, can be back on the dying one first; wait for the new
        server.start()
        wait_for(
            lambda: any(e.kind == "port_back" and e.mono > stopped for e in events.history), 15, "port_back"
        )
        pty_device.write(b"after the restart\n")
        port.expect("after the restart", timeout=5)
    assert (tmp_path / "uart.raw").read_bytes() == b"before\nafter the restart\n"


def test_a_dead_reader_is_reported_at_once_with_its_cause(
    uart: Uart, pty_device: PtyDevice, tmp_path: Path
) -> None:
    # A full disk: the raw file cannot take the bytes, so capture cannot go on.
    (tmp_path / "uart.raw").symlink_to("/dev/full")
    uart.record(tmp_path)
    sub = uart.subscribe()
    pty_device.write(b"client state: 1\n")
    with pytest.raises(UartError) as from_get:
        sub.get(timeout=60)  # woken by the death, not by the timeout
    assert "the UART reader stopped: OSError: [Errno 28] No space left on device" in str(from_get.value)
    assert isinstance(from_get.value.__cause__, OSError)
    assert not uart.alive
    with pytest.raises(UartError, match="No space left on device"):
        uart.expect("never", timeout=60)
    with pytest.raises(UartError, match="No space left on device"):
        uart.subscribe()


def test_a_lost_port_without_reconnect_is_a_reader_death(pty_device: PtyDevice) -> None:
    died: list[Event] = []
    events = EventLog()
    events.subscribe(lambda e: died.append(e) if e.kind == "uart_reader_died" else None)
    with Uart(pty_device.url, 115200, events=events, reconnect=False, name="hub") as port:
        pty_device.vanish()
        wait_for(lambda: bool(died), 5, "the reader's death")
        with pytest.raises(UartError, match=r"port lost .*reconnect is off"):
            port.expect("anything", timeout=60)


def test_lend_releases_the_port_to_a_programmer_and_takes_it_back(
    uart: Uart, pty_device: PtyDevice, tmp_path: Path
) -> None:
    uart.record(tmp_path)
    with uart.lend():
        assert not uart.connected
        # The "programmer" uses the same port meanwhile.
        with serial.Serial(pty_device.url, 115200, timeout=1) as other:
            other.write(b"PROG\n")
            assert pty_device.read(timeout=2) == b"PROG\n"
    assert uart.connected
    pty_device.write(b"boot after flashing\n")
    uart.expect("boot after flashing", timeout=5)
    assert (tmp_path / "uart.raw").read_bytes() == b"boot after flashing\n"
    kinds = [e.kind for e in uart.events.history if e.kind.startswith("port_")]
    assert kinds == ["port_lent", "port_returned"]


def test_an_absent_port_is_refused_naming_the_url(tmp_path: Path) -> None:
    missing = tmp_path / "dev" / "serial" / "by-id" / "usb-absent-if00"
    with pytest.raises(UartError) as caught:
        Uart(str(missing), 115200, name="hub").open(timeout=0.2)
    assert str(caught.value).startswith(f"hub: cannot open {missing} at 115200 baud (")
    assert "check the adapter is plugged in" in str(caught.value)
    assert not os.path.exists(missing)


def test_expect_after_record_does_not_match_lines_from_before_the_switch(
    uart: Uart, pty_device: PtyDevice, tmp_path: Path
) -> None:
    pty_device.write(b"image sha256=old\n")
    wait_for(lambda: uart.last_lines(1) == ["image sha256=old"], 5, "the old banner")
    uart.record(tmp_path)  # the next attempt starts
    pty_device.write(b"image sha256=new\n")
    assert uart.expect(r"image sha256=(\w+)", timeout=5).group(1) == "new"


def test_a_closed_uart_can_be_opened_again_and_reads_on(pty_device: PtyDevice) -> None:
    port = Uart(pty_device.url, 115200, name="hub")
    port.open(timeout=5)
    port.close()
    port.open(timeout=5)
    try:
        pty_device.write(b"again\n")
        port.expect("again", timeout=5)
        assert port.alive
    finally:
        port.close()


def test_lines_with_quotes_control_bytes_and_invalid_utf8_are_valid_json_records(
    uart: Uart, pty_device: PtyDevice, tmp_path: Path
) -> None:
    uart.record(tmp_path)
    pty_device.write(b'say "hi" \\ \x01\t\xc3\xa9 \xff end\r\n')
    uart.expect("end", timeout=5)
    (record,) = read_jsonl(tmp_path / "uart.jsonl")
    assert record["text"] == 'say "hi" \\ \x01\t\u00e9 \ufffd end'
    assert sorted(record) == ["mono", "offset", "text", "wall"]
