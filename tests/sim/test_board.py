"""The board on its own: a stand-in firmware behind the pty UART, driven through the control socket.

The firmware here is a tiny script that reads its flash file and prints what the flash tells it to:
the board under test neither knows nor cares what runs on it. The UART is read with pyserial through the
stable symlink, exactly as the harness does.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from rig.sim.board import BoardClient
from rig.sim.procs import Processes

FIRMWARE = """\
import sys, time
flash = open(sys.argv[sys.argv.index("--flash") + 1], "rb").read()
out = sys.stdout.buffer
command, _, rest = flash.partition(b"\\n")
out.write(b"BOOT " + command + b"\\r\\n")
out.flush()
if command.startswith(b"burst "):
    size = int(command.split()[1])
    out.write(bytes(i % 251 for i in range(size)))
    out.flush()
    open(sys.argv[sys.argv.index("--flash") + 1] + ".done", "w").close()
time.sleep(3600)
"""

BoardFactory = Callable[..., tuple[BoardClient, Path]]


@pytest.fixture
def board(tmp_path: Path) -> Iterator[BoardFactory]:
    processes = Processes(tmp_path / "run")
    hub = tmp_path / "hub"
    hub.write_text(f"#!{sys.executable}\n{FIRMWARE}")
    hub.chmod(hub.stat().st_mode | stat.S_IXUSR)

    def start(*extra: str, baud: int = 115200) -> tuple[BoardClient, Path]:
        link = tmp_path / "dev" / "serial" / "by-id" / "usb-rig-sim-hub-if00"
        folder = tmp_path / "board"
        argv = [sys.executable, "-m", "rig.sim.board", "--dir", str(folder), "--hub", str(hub)]
        argv += ["--lan", "127.0.0.1:9", "--port-link", str(link), "--baud", str(baud), *extra]
        processes.start("board", argv, log=tmp_path / "board.log")
        client = BoardClient(folder / "board.sock", timeout=10)
        deadline = time.monotonic() + 10
        while not (folder / "board.sock").exists():
            assert time.monotonic() < deadline, (tmp_path / "board.log").read_text()
            time.sleep(0.02)
        return client, link

    yield start
    processes.stop_all()


def program(client: BoardClient, tmp_path: Path, content: bytes) -> None:
    image = tmp_path / "image.bin"
    image.write_bytes(content)
    client.request("hold")
    client.request("write_flash", file=str(image), source="test.hex")
    client.request("release")


def wait_status(client: BoardClient, check: Callable[[dict], bool], timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.request("status")
        if check(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_a_blank_board_stays_silent_and_reports_no_flash(board: BoardFactory) -> None:
    client, link = board()
    with serial.Serial(str(link), 115200, timeout=0.5) as port:
        assert port.read(100) == b""
    status = client.request("status")
    assert status["flash"] is None
    assert status["state"] == "stopped"
    assert status["hub_pid"] is None


def test_programmed_firmware_boots_and_its_bytes_arrive_raw_on_the_stable_port(
    board: BoardFactory, tmp_path: Path
) -> None:
    client, link = board()
    assert link.is_symlink() and os.readlink(link).startswith("/dev/pts/")
    with serial.Serial(str(link), 115200, timeout=5) as port:
        program(client, tmp_path, b"hello\rworld\n")
        # CR inside the line and the CRLF ending arrive untouched: the pty is raw from its creation.
        assert port.read_until(b"\r\n") == b"BOOT hello\rworld\r\n"
    status = client.request("status")
    assert status["state"] == "running"
    assert status["flash"]["source"] == "test.hex"
    assert status["flash"]["bytes"] == len(b"hello\rworld\n")


def test_held_in_reset_the_firmware_is_stopped_and_silent(board: BoardFactory, tmp_path: Path) -> None:
    client, link = board()
    with serial.Serial(str(link), 115200, timeout=5) as port:
        program(client, tmp_path, b"one\n")
        assert port.read_until(b"\r\n") == b"BOOT one\r\n"
        status = client.request("hold")
        assert status["state"] == "held" and status["hub_pid"] is None
        port.timeout = 0.5
        assert port.read(100) == b""
        client.request("release")
        port.timeout = 5
        assert port.read_until(b"\r\n") == b"BOOT one\r\n"
    assert client.request("status")["boots"] == 2


def test_output_is_paced_to_the_baud_rate(board: BoardFactory, tmp_path: Path) -> None:
    baud, size = 57600, 5760  # one second of line time at 10 bits per byte
    client, link = board(baud=baud)
    with serial.Serial(str(link), baud, timeout=5) as port:
        program(client, tmp_path, f"burst {size}\n".encode())
        port.read_until(b"\r\n")
        first = port.read(1)
        start = time.monotonic()
        rest = port.read(size - 1)
        elapsed = time.monotonic() - start
    assert first + rest == bytes(i % 251 for i in range(size))
    line_time = (size - 1) * 10 / baud
    print(
        f"\n{size} B at {baud} baud: {elapsed:.3f} s measured, {line_time:.3f} s line time, ratio {elapsed / line_time:.2f}"
    )
    # A lower bound only: the bytes cannot arrive faster than the wire carries them.
    assert elapsed >= 0.9 * line_time


def test_output_nobody_reads_is_dropped_and_never_blocks_the_firmware(
    board: BoardFactory, tmp_path: Path
) -> None:
    size = 60_000
    client, _ = board(baud=2_000_000)
    program(client, tmp_path, f"burst {size}\n".encode())
    total = len(f"BOOT burst {size}\r\n") + size
    status = wait_status(client, lambda s: s["uart_written"] + s["uart_dropped"] >= total)
    assert status["uart_written"] + status["uart_dropped"] == total
    assert status["uart_dropped"] > 0
    assert status["uart_written"] < 32_000  # what a pty takes before its receive buffer is full
    assert (tmp_path / "board" / "flash.bin.done").exists()  # the firmware got past its writes


def test_a_reset_reenumerates_the_port_when_configured(board: BoardFactory, tmp_path: Path) -> None:
    client, link = board("--reenumerate", "--gap", "0.2", "--boot-delay", "0.3")
    with serial.Serial(str(link), 115200, timeout=5) as port:
        program(client, tmp_path, b"cdc\n")
        # programming holds the board in reset: the port the reader had open is gone
        with pytest.raises(serial.SerialException):
            port.read(100)
    status = client.request("hold")
    assert not link.exists() and not status["port_present"]
    client.request("release")
    with serial.Serial(str(link), 115200, timeout=5) as port:
        assert port.read_until(b"\r\n") == b"BOOT cdc\r\n"


def test_uart_gone_removes_the_port_for_the_given_time_while_the_firmware_runs(
    board: BoardFactory, tmp_path: Path
) -> None:
    client, link = board()
    program(client, tmp_path, b"on\n")
    wait_status(client, lambda s: s["state"] == "running")
    client.request("uart_gone", seconds=0.5)
    assert not link.exists()
    status = wait_status(client, lambda s: s["port_present"], timeout=5)
    assert status["port_present"] and link.exists()
    assert status["state"] == "running" and status["boots"] == 1
