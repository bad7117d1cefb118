"""The chunked RFC 2217 client against ser2net serving a pty: settings, escaping, pyserial's read contract."""

from __future__ import annotations

import termios
from collections.abc import Callable
from pathlib import Path

from rig.drivers.uart.port import Uart
from rig.drivers.uart.rfc2217 import open_rfc2217
from tests.peers.drivers import PtyDevice, Ser2net, settle

from .test_port import wait_for


def test_the_baud_rate_is_set_on_the_device_behind_ser2net(
    pty_device: PtyDevice, ser2net: Callable[[str], Ser2net]
) -> None:
    server = ser2net(pty_device.url)
    with Uart(server.url, 57600, name="hub") as port:
        settle(pty_device, port)
        assert termios.tcgetattr(pty_device.slave)[5] == termios.B57600


def test_every_byte_value_comes_through_including_the_telnet_escape_0xff(
    pty_device: PtyDevice, ser2net: Callable[[str], Ser2net], tmp_path: Path
) -> None:
    server = ser2net(pty_device.url)
    data = bytes(range(256)) * 64 + b"\xff\xff\xff\xf0\xfa\n"  # IAC runs, SE and SB values as data
    with Uart(server.url, 115200, name="hub") as port:
        settle(pty_device, port)
        port.record(tmp_path)
        before = port.bytes_read
        pty_device.write(data)
        wait_for(lambda: port.bytes_read - before >= len(data), 10, "all byte values")
    assert (tmp_path / "uart.raw").read_bytes() == data


def test_read_keeps_pyserials_contract_of_at_most_size_bytes_and_keeps_the_rest(
    pty_device: PtyDevice, ser2net: Callable[[str], Ser2net]
) -> None:
    server = ser2net(pty_device.url)
    port = open_rfc2217(server.url + "?ign_set_control", 115200, timeout=1.0)
    try:
        for _ in range(50):  # ser2net opens the device when we connect; wait until bytes pass
            pty_device.write(b"s")
            if port.read(1) == b"s":
                break
        port.reset_input_buffer()
        pty_device.write(b"0123456789abcdefghijklmno")
        assert port.read(10) == b"0123456789"
        assert port.read(100) == b"abcdefghijklmno"  # what there is, after the timeout
        assert port.read(5) == b""
    finally:
        port.close()
