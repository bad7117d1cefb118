"""Benchmark: where the HIL matrix's wall time goes — programming, path switching, the DUT, the harness.

Runs the whole matrix (`pytest tests_hil`) on a bench once, as a user would, and reads the run's
`cells.jsonl`. A provided bench (the simulated one) is brought up before the clock starts and down
after, if this script started it, so its start-up is reported apart. Prints:

- the matrix's wall time (the pytest process, start to exit);
- the sums over all attempts of `seconds.program`, `seconds.path`, `seconds.reset_to_verdict`
  (waiting on the DUT: boot, handshake, the stall detector's wait) and `seconds.settle` (the UART
  falling quiet before each reset);
- the harness's own overhead: wall time minus those four, as a share of the wall time — pytest and
  plugin start, collection, bench lease and preflight, capture start/stop, evidence, charts, reports,
  restore.

Run: `make bench-matrix` (BENCH=benches/<yours>.yaml for a real bench).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rig.config import load_bench
from rig.hil.provider import ensure_provider_up, provider_down
from rig.report.records import read_cells

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default=str(REPO / "benches" / "sim.yaml"))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole matrix")
    args = parser.parse_args()
    bench = Path(args.bench)
    provided = load_bench(bench).model.provider is not None
    started = False
    up_seconds = 0.0
    if provided:
        begin = time.monotonic()
        started = ensure_provider_up(bench)
        up_seconds = time.monotonic() - begin
    try:
        with tempfile.TemporaryDirectory(prefix="rig-bench-matrix-") as tmp:
            results = Path(tmp)
            argv = [sys.executable, "-m", "pytest", str(REPO / "tests_hil"), "-q", "-p", "no:cacheprovider"]
            argv += ["--bench", str(bench), "--results", str(results)]
            begin = time.monotonic()
            done = subprocess.run(argv, cwd=REPO, timeout=args.timeout, env=os.environ.copy(), check=False)
            wall = time.monotonic() - begin
            runs = [p for p in results.iterdir() if p.is_dir() and not p.is_symlink()]
            if not runs:
                print(f"the matrix wrote no results (pytest exit {done.returncode})", file=sys.stderr)
                return 3
            records = read_cells(runs[0] / "cells.jsonl")
    finally:
        if started:
            provider_down(bench)
    program = sum(r.seconds.program for r in records)
    path = sum(r.seconds.path for r in records)
    dut = sum(r.seconds.reset_to_verdict for r in records)
    settle = sum(r.seconds.settle for r in records)
    overhead = wall - program - path - dut - settle
    programmed = sum(r.programmed for r in records)
    print(
        f"bench {bench.name}: {len(records)} attempts ({sum(r.forensic for r in records)} forensic reruns), "
        f"{programmed} programmings, pytest exit {done.returncode}"
    )
    if provided:
        print(f"  bench start-up (provider, not in the wall time)  {up_seconds:7.1f} s")
    print(f"  matrix wall time                                 {wall:7.1f} s   100.0 %")
    for label, seconds in (
        ("programming", program),
        ("path switching", path),
        ("waiting on the DUT (reset to verdict)", dut),
        ("letting the UART fall quiet before each reset", settle),
        ("harness overhead (the rest)", overhead),
    ):
        print(f"  {label:<48} {seconds:7.1f} s  {100 * seconds / wall:6.1f} %")
    print(f"  harness overhead per attempt                     {overhead / max(1, len(records)):7.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
