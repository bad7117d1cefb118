"""UART capture benchmark (`make bench-uart`): sustained rate, reader CPU time and bytes lost.

A pty stands in for the device (and ser2net serves it as rfc2217:// for the remote case). Two loads:
the DUT's rate at 921600 baud (8N1: 92,160 bytes/s, paced) and a flood (the writer as fast as the
pty takes it). For each, the bytes the Uart wrote to uart.raw are compared with what was sent, and the
reader thread's own CPU time is read from its thread clock. The baseline, measured in the same run, is a
bare pyserial read loop that throws the bytes away: the ratio shows what recording, line splitting,
timestamps and fan-out cost on top of reading the port. Through ser2net, the Uart's chunked RFC 2217
client (rig.drivers.uart.rfc2217) is compared with pyserial's own.

    .venv/bin/python tests/benchmarks/uart.py [--seconds 3] [--flood-mb 16] [--pyserial-rfc2217-mb 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import serial

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rig.drivers.uart.port import Uart
from tests.peers.drivers import PtyDevice, Ser2net, settle

BAUD_921600_BYTES_S = 921600 // 10  # 8N1: ten bit times per byte
PYSERIAL_RFC2217 = "rfc2217 bare pyserial client flood"


def payload(size: int) -> bytes:
    """Mbed TLS debug-shaped lines (about 70 bytes each)."""
    out = bytearray()
    n = 0
    while len(out) < size:
        out += f"ssl_msg.c:{n % 6000:04d}: |4| 0x2000{n:06x} dumping 'input record' ({n % 97} bytes)\r\n".encode()
        n += 1
    return bytes(out[:size])


@dataclass
class Figures:
    label: str
    sent: int
    seconds: float
    reader_cpu_s: float
    process_cpu_s: float
    lost: int
    lines: int

    def row(self) -> str:
        rate = self.sent / self.seconds / 1e6
        per_mb = self.reader_cpu_s / (self.sent / 1e6) * 1e3
        util = 100 * self.reader_cpu_s / self.seconds
        return (
            f"{self.label:<34} {self.sent / 1e6:7.2f} MB {rate:8.3f} MB/s {rate * 8:7.2f} Mbit/s "
            f"{self.reader_cpu_s:6.2f} s ({util:5.1f}% of a core, {per_mb:6.1f} ms/MB) "
            f"proc {self.process_cpu_s:6.2f} s  lines {self.lines:>8}  lost {self.lost}"
        )


def thread_cpu(thread: threading.Thread) -> Callable[[], float]:
    """A function reading `thread`'s own CPU clock (Linux: pthread_getcpuclockid)."""
    assert thread.ident is not None
    clock = time.pthread_getcpuclockid(thread.ident)
    return lambda: time.clock_gettime(clock)


def send(device: PtyDevice, data: bytes, rate: float | None) -> float:
    """Write `data` to the device at `rate` bytes/s (None: as fast as it is taken); returns seconds."""
    started = time.monotonic()
    chunk = 4096 if rate is None else max(1, int(rate / 100))  # paced: 100 writes a second
    for offset in range(0, len(data), chunk):
        device.write(data[offset : offset + chunk], timeout=30)
        if rate is not None:
            due = started + (offset + chunk) / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    return time.monotonic() - started


def measure_uart(
    label: str, device: PtyDevice, url: str, data: bytes, rate: float | None, work: Path
) -> Figures:
    uart = Uart(url, 921600, name="bench")
    uart.open(timeout=10)
    try:
        assert uart._thread is not None
        reader_clock = thread_cpu(uart._thread)
        settle(device, uart)
        uart.record(work)
        read_before = uart.bytes_read
        sub = uart.subscribe()  # one consumer, like the live log parser, reading nothing meanwhile
        cpu0, proc0, t0 = reader_clock(), time.process_time(), time.monotonic()
        send(device, data, rate)
        deadline = time.monotonic() + 60
        while uart.bytes_read - read_before < len(data) and time.monotonic() < deadline:
            time.sleep(0.001)
        seconds = time.monotonic() - t0
        cpu, proc = reader_clock() - cpu0, time.process_time() - proc0
        uart.record(None)
        lines = 0
        while sub.get(timeout=0) is not None:
            lines += 1
    finally:
        uart.close()
    raw = (work / "uart.raw").read_bytes()
    lost = len(data) - len(raw) if data.startswith(raw) else len(data)  # anything but a prefix: all lost
    return Figures(label, len(data), seconds, cpu, proc, lost, lines)


def measure_bare(label: str, device: PtyDevice, url: str, data: bytes, rate: float | None) -> Figures:
    """The baseline: pyserial reading the port and discarding the bytes."""
    port = serial.serial_for_url(url, baudrate=921600, timeout=0.05)
    for _ in range(100):  # the same settling as the Uart gets (see settle())
        device.write(b"settle\n")
        if port.read(7) == b"settle\n":
            break
    port.reset_input_buffer()
    got = 0
    stop = threading.Event()
    clock: list[Callable[[], float]] = []

    def reader() -> None:
        nonlocal got
        while not stop.is_set():
            got += len(port.read(port.in_waiting or 1))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    clock.append(thread_cpu(thread))
    cpu0, proc0, t0 = clock[0](), time.process_time(), time.monotonic()
    send(device, data, rate)
    deadline = time.monotonic() + 60
    while got < len(data) and time.monotonic() < deadline:
        time.sleep(0.001)
    seconds = time.monotonic() - t0
    cpu, proc = clock[0]() - cpu0, time.process_time() - proc0
    stop.set()
    thread.join(5)
    port.close()
    return Figures(label, len(data), seconds, cpu, proc, len(data) - got, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of the 921600-baud load")
    parser.add_argument("--flood-mb", type=float, default=16.0, help="size of the flood")
    parser.add_argument(
        "--pyserial-rfc2217-mb", type=float, default=2.0, help="flood size for pyserial's own rfc2217 client"
    )
    args = parser.parse_args()
    paced = payload(int(BAUD_921600_BYTES_S * args.seconds))
    flood = payload(int(args.flood_mb * 1e6))
    small = payload(int(args.pyserial_rfc2217_mb * 1e6))
    pace = BAUD_921600_BYTES_S
    rows: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory(prefix="rig-bench-uart-") as tmp:
        work = Path(tmp)
        device = PtyDevice(work / "dev" / "serial" / "by-id" / "usb-rig-bench-if00")

        def uart(label: str, url: str, data: bytes, rate: float | None) -> None:
            rows[label] = measure_uart(label, device, url, data, rate, work / label.replace(" ", "-"))

        def bare(label: str, url: str, data: bytes, rate: float | None) -> None:
            rows[label] = measure_bare(label, device, url, data, rate)

        try:
            bare("pty bare pyserial @921600", device.url, paced, pace)
            uart("pty Uart @921600", device.url, paced, pace)
            bare("pty bare pyserial flood", device.url, flood, None)
            uart("pty Uart flood", device.url, flood, None)
            for raw in (False, True):
                server = Ser2net(device.url, work / f"ser2net-{raw}", raw=raw)
                scheme = server.url.split(":")[0]
                server.start()
                try:
                    uart(f"{scheme} Uart @921600", server.url, paced, pace)
                    uart(f"{scheme} Uart flood", server.url, flood, None)
                    if not raw:
                        bare(PYSERIAL_RFC2217, server.url + "?ign_set_control", small, None)
                finally:
                    server.stop()
        finally:
            device.close()
    print("UART capture (sent, sustained rate, reader-thread CPU, process CPU, lines, bytes lost)")
    for figures in rows.values():
        print("  " + figures.row())

    def rate(label: str) -> float:
        return rows[label].sent / rows[label].seconds

    def cpu_per_byte(label: str) -> float:
        return rows[label].reader_cpu_s / rows[label].sent

    print(
        "  flood over a pty: Uart rate / bare pyserial rate = "
        f"{rate('pty Uart flood') / rate('pty bare pyserial flood'):.2f}; reader CPU per MB, Uart / bare = "
        f"{cpu_per_byte('pty Uart flood') / max(cpu_per_byte('pty bare pyserial flood'), 1e-12):.1f}"
    )
    print(
        "  flood through ser2net: Uart (chunked rfc2217 client) rate / pyserial's rfc2217 client rate = "
        f"{rate('rfc2217 Uart flood') / rate(PYSERIAL_RFC2217):.1f}"
    )
    lost = sum(f.lost for f in rows.values() if "Uart" in f.label)
    print(f"  bytes lost by the Uart over all loads: {lost}")
    if lost:
        sys.exit(1)


if __name__ == "__main__":
    main()
