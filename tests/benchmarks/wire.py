"""Benchmark: how fast `rig wire` reads a big capture, against a bare dpkt decoding loop (same run).

Builds a capture of at least 20 MB from the incident cell's bench capture, repeated as many
reconnects on the same four-tuple (each copy 20 s after the last, as a rebooting hub would), then
measures on the same bytes, in the same process:

- baseline: dpkt's pcap reader with Ethernet → IP → TCP decoding of every frame, nothing else
  (the floor of any reader built on dpkt);
- rig wire: `read_capture_bytes` (decode, connections, reassembly, TLS records, the view);
- scapy's `PcapReader` decoding the same frames to TCP, when scapy is installed (it is not a
  dependency of the rig; `pip install scapy` to see the comparison);
- `import dpkt` and `import scapy.all` in a fresh interpreter.

Prints MB/s and frames/s for each and the ratios to the baseline. Run: `make bench-wire`.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dpkt

from rig.wire import read_capture_bytes

DATA = Path(__file__).resolve().parent.parent / "wire" / "data"
TARGET_BYTES = 20 * 1024 * 1024


def build_capture() -> tuple[bytes, int]:
    """The big capture's bytes and its frame count."""
    frames = list(dpkt.pcap.Reader(io.BytesIO((DATA / "tcp-rx-1024-satellite.pcap").read_bytes())))
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out)
    copies = 0
    while out.tell() < TARGET_BYTES:
        for stamp, frame in frames:
            writer.writepkt(frame, ts=float(stamp) + 20.0 * copies)
        copies += 1
    return out.getvalue(), copies * len(frames)


def baseline(data: bytes) -> float:
    start = time.perf_counter()
    payload = 0
    for _, frame in dpkt.pcap.Reader(io.BytesIO(data)):
        payload += len(dpkt.ethernet.Ethernet(frame).data.data.data)
    return time.perf_counter() - start


def rig_wire(data: bytes) -> tuple[float, int]:
    start = time.perf_counter()
    view = read_capture_bytes(data, "big.pcap")
    return time.perf_counter() - start, len(view.connections)


def scapy(path: Path) -> float | None:
    if importlib.util.find_spec("scapy") is None:
        return None
    from scapy.all import TCP, PcapReader  # type: ignore[import-not-found, unused-ignore]

    start = time.perf_counter()
    payload = 0
    for packet in PcapReader(str(path)):
        payload += len(bytes(packet[TCP].payload))
    return time.perf_counter() - start


def import_seconds(module: str) -> float | None:
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return None
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, timeout=120)
    return time.perf_counter() - start


def main() -> None:
    data, frames = build_capture()
    mb = len(data) / 1e6
    print(f"capture: {mb:.1f} MB, {frames} frames")
    base = min(baseline(data) for _ in range(3))
    wire_s, connections = min(rig_wire(data) for _ in range(2))
    with tempfile.TemporaryDirectory(prefix="rig-bench-wire-") as tmp:
        path = Path(tmp) / "big.pcap"
        path.write_bytes(data)
        scapy_s = scapy(path)
    print(f"rig wire found {connections} connections")
    print("                                  wall s     MB/s   frames/s   ratio to the dpkt loop")
    rows = [("dpkt decoding loop (baseline)", base), ("rig wire (read_capture_bytes)", wire_s)]
    if scapy_s is not None:
        rows.append(("scapy PcapReader to TCP", scapy_s))
    for name, seconds in rows:
        print(
            f"{name:31s} {seconds:8.2f} {mb / seconds:8.1f} {frames / seconds:10.0f} {seconds / base:10.1f}"
        )
    if scapy_s is None:
        print("scapy is not installed: no comparison with it (pip install scapy)")
    python = import_seconds("sys")
    for module in ("dpkt", "scapy.all"):
        seconds = import_seconds(module)
        if seconds is not None and python is not None:
            print(f"import {module}: {seconds - python:.2f} s over a bare interpreter's start")


if __name__ == "__main__":
    main()
