"""UART capture benchmark (`make bench-uart`): sustained rate, reader CPU time, bytes lost, re-enumeration.

A pty stands in for the device (and ser2net serves it as rfc2217:// for the remote case). Two loads:
the DUT's rate at 921600 baud (8N1: 92,160 bytes/s, paced) and a flood (the writer as fast as the
pty takes it). For each, the bytes the Uart wrote to uart.raw are compared with what was sent, and the
reader thread's own CPU time is read from its thread clock. The baseline, measured in the same run, is a
bare pyserial read loop that throws the bytes away: the ratio shows what recording, line splitting,
timestamps and fan-out cost on top of reading the port. Through ser2net, the Uart's chunked RFC 2217
client (rig.drivers.uart.rfc2217) is compared with pyserial's own.

Re-enumeration: for each URL kind (the pty's path, rfc2217:// and socket:// through ser2net) the device
disappears for `--gap` seconds and comes back `--cycles` times, as a USB CDC console does on a reset.
Half the returns are followed at once by the device printing (the worst case for losing bytes: it
speaks before the Uart can have reopened), half by a second of silence first (a CDC device enumerates
before its firmware prints; for socket:// a silent return is the slow case, see CONFIRM_S). Measured per
return: the gap from the device's return (the moment the benchmark recreated it) to the Uart's
`port_back` event, the Uart's own estimate of it (`return_to_back_s`), the reopen tries, and the bytes
the device sent after its return that did not reach uart.raw.

    .venv/bin/python tests/benchmarks/uart.py [--seconds 3] [--flood-mb 16] [--pyserial-rfc2217-mb 2]
                                              [--cycles 20] [--gap 0.5] [--only-reenumeration]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import serial

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rig.drivers.uart.port import Uart
from rig.events import Event, EventLog
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


@dataclass
class Return:
    """One return of the device: gap to port_back (true and as the Uart estimated it), tries, silence first."""

    gap_s: float
    estimated_s: float
    seen_by: str
    attempts: int
    silent_first: bool


@dataclass
class Reenumeration:
    label: str
    returns: list[Return]
    sent_after_return: int
    lost: int

    def rows(self) -> list[str]:
        out = []
        for silent in (False, True):
            picked = [r for r in self.returns if r.silent_first == silent]
            if not picked:
                continue
            gaps = sorted(r.gap_s * 1e3 for r in picked)
            est = sorted(r.estimated_s * 1e3 for r in picked)
            tries = sorted(r.attempts for r in picked)
            when = "silent 1 s, then prints" if silent else "prints at once       "
            out.append(
                f"{self.label:<8} {when} n={len(picked):>3}  return→port_back ms: "
                f"min {gaps[0]:6.1f} median {statistics.median(gaps):6.1f} "
                f"p90 {gaps[int(0.9 * (len(gaps) - 1))]:6.1f} max {gaps[-1]:6.1f}  "
                f"(Uart's estimate median {statistics.median(est):6.1f}, by {seen_by(picked)}) "
                f"tries median {statistics.median(tries):g} max {tries[-1]}"
            )
        return out


def seen_by(returns: list[Return]) -> str:
    """How the Uart knew of the returns: `device node 7, polling 3`."""
    return ", ".join(f"{how} {count}" for how, count in Counter(r.seen_by for r in returns).most_common())


def measure_reenumeration(
    label: str, device: PtyDevice, url: str, cycles: int, gap: float, work: Path
) -> Reenumeration:
    """`cycles` returns of the device through `url`; what the Uart saw of each (see the docstring)."""
    events = EventLog()
    backs: list[Event] = []
    back = threading.Event()

    def on_event(event: Event) -> None:
        if event.kind == "port_back":
            backs.append(event)
            back.set()

    events.subscribe(on_event)
    uart = Uart(url, 115200, events=events, name="bench")
    uart.open(timeout=10)
    returns: list[Return] = []
    expected = bytearray()
    boots: list[bytes] = []
    try:
        settle(device, uart)
        uart.record(work)
        for cycle in range(cycles):
            before = f"cycle {cycle} before the reset\n".encode()
            device.write(before)
            expected += before
            wait_bytes(uart, work, len(expected))
            back.clear()
            device.vanish()
            time.sleep(gap)
            device.appear()
            returned = time.monotonic()
            silent = cycle % 2 == 1
            if silent:
                back.wait(5)
                time.sleep(max(0.0, returned + 1.0 - time.monotonic()))
            boot = payload(2000).replace(b"ssl_msg.c", f"boot{cycle:03d}".encode())
            device.write(boot)
            expected += boot
            boots.append(boot)
            if not back.wait(10):
                raise RuntimeError(f"{label}: no port_back within 10 s of return {cycle}")
            event = backs[-1]
            returns.append(
                Return(
                    event.mono - returned,
                    float(event.fields["return_to_back_s"]),
                    str(event.fields["return_seen_by"]),
                    int(event.fields["attempts"]),
                    silent,
                )
            )
            wait_bytes(uart, work, len(expected))
        uart.record(None)
    finally:
        uart.close()
    raw = (work / "uart.raw").read_bytes()
    return Reenumeration(label, returns, sum(map(len, boots)), sum(missing(boot, raw) for boot in boots))


def missing(chunk: bytes, raw: bytes) -> int:
    """Bytes of `chunk` (sent after a return) not in `raw`: its length less its longest suffix found there."""
    low, high = 0, len(chunk)  # a suffix of `low` bytes is in raw; find the longest
    while low < high:
        mid = (low + high + 1) // 2
        if chunk[len(chunk) - mid :] in raw:
            low = mid
        else:
            high = mid - 1
    return len(chunk) - low


def wait_bytes(uart: Uart, work: Path, size: int, timeout: float = 10.0) -> None:
    """Wait until uart.raw in `work` holds `size` bytes (what was sent so far)."""
    deadline = time.monotonic() + timeout
    raw = work / "uart.raw"
    while (raw.stat().st_size if raw.exists() else 0) < size and time.monotonic() < deadline:
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of the 921600-baud load")
    parser.add_argument("--flood-mb", type=float, default=16.0, help="size of the flood")
    parser.add_argument(
        "--pyserial-rfc2217-mb", type=float, default=2.0, help="flood size for pyserial's own rfc2217 client"
    )
    parser.add_argument("--cycles", type=int, default=20, help="re-enumerations per URL kind")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds the device is gone each time")
    parser.add_argument("--only-reenumeration", action="store_true", help="skip the rate measurements")
    args = parser.parse_args()
    if args.only_reenumeration:
        sys.exit(reenumeration(args.cycles, args.gap))
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
    sys.exit(1 if reenumeration(args.cycles, args.gap) or lost else 0)


def reenumeration(cycles: int, gap: float) -> int:
    """Run and print the re-enumeration figures for each URL kind; 1 when any byte was lost."""
    results: list[Reenumeration] = []
    with tempfile.TemporaryDirectory(prefix="rig-bench-reenum-") as tmp:
        work = Path(tmp)
        device = PtyDevice(work / "dev" / "serial" / "by-id" / "usb-rig-bench-if00")
        try:
            results.append(measure_reenumeration("pty", device, device.url, cycles, gap, work / "pty"))
            for raw in (False, True):
                server = Ser2net(device.url, work / f"ser2net-{raw}", raw=raw)
                server.start()
                try:
                    label = server.url.split(":")[0]
                    results.append(
                        measure_reenumeration(label, device, server.url, cycles, gap, work / label)
                    )
                finally:
                    server.stop()
        finally:
            device.close()
    print(f"UART re-enumeration: the device gone {gap:g} s and back, {cycles} times per URL kind")
    for result in results:
        for row in result.rows():
            print("  " + row)
    for result in results:
        print(
            f"  {result.label:<8} bytes sent after the returns {result.sent_after_return:>7}, "
            f"lost {result.lost}"
        )
    return 1 if any(r.lost for r in results) else 0


if __name__ == "__main__":
    main()
