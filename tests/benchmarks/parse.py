"""Benchmark: how fast `rig diagnose` reads a big log, against a bare line-reading loop (same run).

Two logs of at least 50 MB each:

- uniform: a real Mbed TLS 2.28 level-4 handshake log (hex dumps and all, every line starting with
  its file name), repeated as many handshake attempts with timestamps, a `[APP]` line between
  attempts and every few thousand lines a UART-garbage line, the last attempt stalled;
- varied: the public-log corpus (tests/mbedtls/corpus: ESP-IDF, Zephyr, RTT, syslog-stamped,
  message-only and application-only logs, 61 prefix styles) concatenated until 50 MB.

For each, on the same file and in the same process:

- baseline: `for line in file: n += 1` in binary mode (the cheapest honest line loop in Python;
  the aims, ratios of 4 (uniform) and 8 (varied) or less, are against this one) and the same loop
  in text mode (decoding);
- rig diagnose: exactly what the command does (read, parse, diagnose) without the process start;
- the `rig diagnose --json` command itself, as a subprocess, once.

Prints MB/s for each and the ratios of `rig diagnose` to both loops, then both binary ratios on
one line. Run: `make bench-parse` (python -m tests.benchmarks.parse from the checkout).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rig.cli.logs import parse_log
from rig.mbedtls import diagnose_parser

HERE = Path(__file__).resolve().parent
LOGS = HERE.parent / "mbedtls" / "logs"
CORPUS = HERE.parent / "mbedtls" / "corpus"
TARGET_BYTES = 50 * 1024 * 1024


def build_log(path: Path) -> int:
    """Write the benchmark log; return its size in bytes."""
    good = (LOGS / "mbedtls-2.28-complete-level4.log").read_bytes().splitlines()
    stall = (LOGS / "mbedtls-2.28-stall-ticket-level2.log").read_bytes().splitlines()
    size = 0
    attempt = 0
    with path.open("wb") as out:
        while size < TARGET_BYTES:
            attempt += 1
            lines = good if size + 2 * len(good) * 90 < TARGET_BYTES else stall
            chunk: list[bytes] = [
                b"06/04 07:51:%02d.%03d I SysLog     [DIAG] IOT TLS attempt %d"
                % (attempt % 60, attempt % 1000, attempt)
            ]
            for i, line in enumerate(lines):
                if i % 4000 == 3999:
                    chunk.append(b"\xff\xfe\x00garbage\x1b[31m on the wire")
                chunk.append(line)
            data = b"\n".join(chunk) + b"\n"
            out.write(data)
            size += len(data)
            if lines is stall:
                break
    return size


def build_varied_log(path: Path) -> int:
    """Write the corpus's excerpts one after the other, over and over, to 50 MB; return the size."""
    excerpts = [log.read_bytes().rstrip(b"\n") + b"\n" for log in sorted(CORPUS.glob("*.log"))]
    once = b"".join(excerpts)
    size = 0
    with path.open("wb") as out:
        while size < TARGET_BYTES:
            out.write(once)
            size += len(once)
    return size


def baseline(path: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the bare loop."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = 0
    with path.open("rb") as stream:
        for _ in stream:
            count += 1
    return time.perf_counter() - wall, time.process_time() - cpu


def baseline_text(path: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the same loop in text mode (UTF-8 decoding, newline translation)."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = 0
    with path.open(encoding="utf-8", errors="replace") as stream:
        for _ in stream:
            count += 1
    return time.perf_counter() - wall, time.process_time() - cpu


def diagnose_in_process(path: Path) -> tuple[float, float, dict[str, object]]:
    """Wall and CPU seconds of read + parse + diagnose, and the diagnosis."""
    wall, cpu = time.perf_counter(), time.process_time()
    diagnosis = diagnose_parser(parse_log(path))
    return time.perf_counter() - wall, time.process_time() - cpu, diagnosis.to_json()


def diagnose_command(path: Path) -> float:
    rig = Path(sys.executable).with_name("rig")
    start = time.perf_counter()
    result = subprocess.run([str(rig), "diagnose", "--json", str(path)], capture_output=True, timeout=600)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"rig diagnose failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
        )
    return elapsed


def measure(name: str, path: Path, size: int) -> float:
    """Print the table of one log; return the CPU ratio of rig diagnose to the binary loop."""
    mb = size / 1e6
    baseline(path)  # warm the page cache
    runs = [baseline(path) for _ in range(3)]
    base_wall, base_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    text_runs = [baseline_text(path) for _ in range(3)]
    text_wall, text_cpu = min(r[0] for r in text_runs), min(r[1] for r in text_runs)
    parse_wall, parse_cpu, verdict = diagnose_in_process(path)
    command_s = diagnose_command(path)
    lines = verdict["lines"]
    print(f"\n{name} log: {mb:.1f} MB, {lines['lines']} lines, {verdict['attempts']} handshake attempts")  # type: ignore[index]
    print("                                 wall s     MB/s  |  CPU s     MB/s | ratio CPU: binary   text")
    rows = [
        ("line loop, binary (baseline)", base_wall, base_cpu),
        ("line loop, text mode", text_wall, text_cpu),
        ("rig diagnose (in process)", parse_wall, parse_cpu),
    ]
    for row, wall, cpu in rows:
        print(
            f"{row:31s} {wall:7.2f} {mb / wall:8.1f}  | {cpu:6.2f} {mb / cpu:8.1f} |"
            f" {cpu / base_cpu:16.1f} {cpu / text_cpu:6.1f}"
        )
    print(
        f"{'rig diagnose --json (command)':31s} {command_s:7.2f} {mb / command_s:8.1f}  |"
        f" (new process; wall ratio: binary {command_s / base_wall:.1f}, text {command_s / text_wall:.1f})"
    )
    print("verdict:", json.dumps({k: verdict[k] for k in ("outcome", "category", "last_state", "attempts")}))
    return parse_cpu / base_cpu


def main() -> None:
    print("ratio: CPU time / CPU time of a line loop, all measured in this run; the aims (uniform <= 4,")
    print("varied <= 8) are against the binary loop, the strictest (the text-mode loop also decodes)")
    with tempfile.TemporaryDirectory(prefix="rig-bench-parse-") as tmp:
        uniform = Path(tmp) / "uniform.log"
        uniform_ratio = measure("uniform", uniform, build_log(uniform))
        uniform.unlink()
        varied = Path(tmp) / "varied.log"
        varied_ratio = measure("varied", varied, build_varied_log(varied))
    print(f"\nratio to the binary line loop: uniform {uniform_ratio:.1f}, varied {varied_ratio:.1f}")


if __name__ == "__main__":
    main()
