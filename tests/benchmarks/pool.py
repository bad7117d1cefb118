"""Benchmark: the same matrix on 1, 2 and 3 simulated benches — wall times and speed-ups, one run.

Starts three sims (`rig sim pool up 3`, before any clock starts), then runs the whole shipped matrix
(every variant, both paths, `--repeat 2`) three times, as a user would: on one bench (plain pytest, no
workers), on a pool of two (`-n 2`) and of three (`-n 3`). Each configuration is timed from the pytest
process's start to its exit, and compared with the one-bench run measured here, in the same run.

Besides the wall times it prints what bounds a pool:
- the longest variant: cells go to benches by whole variants (each image programmed once per bench),
  so no pool finishes before its longest variant's attempts, end to end;
- the busiest bench: the sum of the attempts one bench ran; the wall time beyond it is the harness's;
- the CPU: the machine's CPU seconds (all processes: sims, workers, pytest) per wall second, against
  the number of cores — the simulated parts mostly wait on their link delays, until they do not.

Run: `make bench-pool` (about ten minutes on two cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rig.report.records import AttemptRecord, read_cells

REPO = Path(__file__).resolve().parents[2]
RIG = [sys.executable, "-m", "rig"]


def cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (user + nice + system), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system = (int(v) for v in fields[:3])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def attempt_seconds(record: AttemptRecord) -> float:
    s = record.seconds
    return s.program + s.path + s.reset_to_verdict + s.settle


def run_matrix(
    benches: list[Path], results: Path, repeat: int, timeout: float
) -> tuple[float, float, list[AttemptRecord], int]:
    argv = [sys.executable, "-m", "pytest", str(REPO / "tests_hil"), "-q", "-p", "no:cacheprovider"]
    argv += ["--results", str(results), "--repeat", str(repeat)]
    for bench in benches:
        argv += ["--bench", str(bench)]
    if len(benches) > 1:
        argv += ["-n", str(len(benches))]
    cpu, begin = cpu_seconds(), time.monotonic()
    done = subprocess.run(argv, cwd=REPO, timeout=timeout, capture_output=True, text=True, check=False)
    wall = time.monotonic() - begin
    busy = cpu_seconds() - cpu
    runs = [p for p in results.iterdir() if p.is_dir() and not p.is_symlink()]
    records = read_cells(runs[0] / "cells.jsonl") if runs else []
    if done.returncode not in (0, 1) or not records:
        print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
    return wall, busy, records, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-benches", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--program-seconds", type=float, default=3.0, help="each sim's programming time")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for one matrix")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="rig-bench-pool-") as tmp:
        folder = Path(tmp) / "pool"
        up = [*RIG, "sim", "pool", "up", str(args.max_benches), "--dir", str(folder)]
        up += ["--program-seconds", f"{args.program_seconds:g}"]
        print(f"starting {args.max_benches} simulated benches in {folder} …", flush=True)
        started = subprocess.run(up, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
        if started.returncode != 0:
            print(started.stdout + started.stderr, file=sys.stderr)
            return 3
        benches = [folder / f"pool-{i}" / "bench.yaml" for i in range(args.max_benches)]
        rows = []
        try:
            for count in range(1, args.max_benches + 1):
                print(f"matrix on {count} bench(es) …", flush=True)
                wall, busy, records, code = run_matrix(
                    benches[:count], Path(tmp) / f"results-{count}", args.repeat, args.timeout
                )
                rows.append((count, wall, busy, records, code))
        finally:
            subprocess.run([*RIG, "sim", "pool", "down", "--dir", str(folder)], cwd=REPO, timeout=300,
                           capture_output=True, check=False)  # fmt: skip
    one = rows[0][1]
    print()
    print(
        f"{'benches':>7} {'attempts':>8} {'exit':>4} {'wall s':>8} {'speed-up':>8} {'CPU s/s':>8} "
        f"{'busiest bench s':>15}  longest variant s"
    )
    for count, wall, busy, records, code in rows:
        per_variant: dict[str, float] = {}
        per_bench: dict[str, float] = {}
        for record in records:
            per_variant[record.variant] = per_variant.get(record.variant, 0.0) + attempt_seconds(record)
            per_bench[record.bench or "?"] = per_bench.get(record.bench or "?", 0.0) + attempt_seconds(record)
        longest = max(per_variant.items(), key=lambda item: item[1]) if per_variant else ("-", 0.0)
        busiest = max(per_bench.values()) if per_bench else 0.0
        print(
            f"{count:>7} {len(records):>8} {code:>4} {wall:>8.1f} {one / wall:>7.2f}× {busy / wall:>8.2f} "
            f"{busiest:>15.1f}  {longest[1]:.1f} ({longest[0]})"
        )
    print()
    print(f"CPU s/s: busy CPU seconds of the whole machine per wall second ({cores} cores here).")
    print("longest variant: the sum of its attempts' program + path + settle + reset-to-verdict seconds;")
    print("cells go to benches by whole variants, so no pool's wall time can be below it.")
    print("busiest bench: the same sum over the attempts of the bench that worked longest; the wall time")
    print("beyond it is the run's own: start-up, the pool's checks, each attempt's evidence and reports.")
    return 0 if all(code in (0,) for *_, code in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
