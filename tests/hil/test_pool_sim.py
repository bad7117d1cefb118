"""A pool of two simulated benches, as `make bench BENCHES=2` runs it: one run, cells spread by variant.

Two sims (`rig sim up --dir D --name pool-i`, free ports, each its own folder and bench file) serve the
module; the HIL suite runs in its own process with pytest-xdist, as the user runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RIG = [sys.executable, "-m", "rig"]
VARIANTS = "tcp-rx-1460,tcp-rx-1024"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    """Two simulated benches, up for the module: their bench files."""
    folder = tmp_path_factory.mktemp("pool")
    dirs = [folder / f"pool-{i}" for i in range(2)]
    try:
        for index, sim in enumerate(dirs):
            up = [*RIG, "sim", "up", "--dir", str(sim), "--name", f"pool-{index}", "--program-seconds", "0.5"]
            done = subprocess.run(up, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
        yield [sim / "bench.yaml" for sim in dirs]
    finally:
        for sim in dirs:
            subprocess.run([*RIG, "sim", "down", "--dir", str(sim)], cwd=REPO, timeout=120, check=False)


def hil(benches: list[Path], results: Path, *args: str) -> list[str]:
    argv = [sys.executable, "-m", "pytest", "tests_hil", "-p", "no:cacheprovider", "--results", str(results)]
    for bench in benches:
        argv += ["--bench", str(bench)]
    return [*argv, "--variants", VARIANTS, *args]


def run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def cells(results: Path) -> list[dict[str, object]]:
    (run_dir,) = [p for p in results.iterdir() if p.is_dir() and not p.is_symlink()]
    return [json.loads(line) for line in (run_dir / "cells.jsonl").read_text().splitlines()]


def uplink(bench: Path) -> str:
    """The path the sim's router routes by now: `landline`, `satellite`."""
    done = run([*RIG, "sim", "status", "--dir", str(bench.parent), "--json"], timeout=60)
    return str(json.loads(done.stdout)["uplink"]).split()[0]


def test_a_pool_of_two_benches_runs_one_matrix_each_variant_on_one_bench_programmed_once(
    pool: list[Path], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    done = run(hil(pool, results, "-n", "auto", "--alluredir", str(tmp_path / "allure")))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    # One run folder, one cells.jsonl for both workers; the forensic rerun of the failing cell aside.
    records = [r for r in cells(results) if not r["forensic"]]
    assert [r["variant"] for r in cells(results) if r["forensic"]] == ["tcp-rx-1024"]
    assert sorted((r["variant"], r["path"]) for r in records) == [
        ("tcp-rx-1024", "landline"),
        ("tcp-rx-1024", "satellite"),
        ("tcp-rx-1460", "landline"),
        ("tcp-rx-1460", "satellite"),
    ]
    bench_of = {
        r["variant"]: {r2["bench"] for r2 in records if r2["variant"] == r["variant"]} for r in records
    }
    assert sorted(b for benches in bench_of.values() for b in benches) == ["pool-0", "pool-1"], bench_of
    programmed = [(r["bench"], r["variant"]) for r in records if r["programmed"]]
    assert len(programmed) == len(set(programmed)) <= 2, records
    assert "HIL matrix on benches `pool-0`, `pool-1`" in out
    header = next(line for line in out.splitlines() if "variant" in line and "landline" in line)
    assert "bench" in header
    assert "bench pool-0: 1 variant(s)" in out and "bench pool-1: 1 variant(s)" in out
    results_files = list((tmp_path / "allure").glob("*-result.json"))
    assert len(results_files) == 4
    assert (tmp_path / "allure" / "environment.properties").is_file()


def test_a_bench_failing_its_preflight_drops_out_and_the_run_goes_on_with_the_other(
    pool: list[Path], tmp_path: Path
) -> None:
    fault = [*RIG, "sim", "fault", "--dir", str(pool[1].parent), "programmer-missing"]
    assert run(fault).returncode == 0
    try:
        done = run(hil(pool, tmp_path / "results", "-n", "2"))
    finally:
        run([*fault, "--clear"])
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    dropped = [line for line in out.splitlines() if "drops out of the pool" in line]
    assert len(dropped) == 1 and f"rig: bench {pool[1]} drops out of the pool: preflight failed" in dropped[0]
    assert "1 usable bench(es) for -n 2: running 1 worker(s)" in out
    assert {r["bench"] for r in cells(tmp_path / "results")} == {"pool-0"}


def selected(results: Path, path: str) -> bool:
    """Whether an attempt under `results` has selected `path` on its bench (its `path_selected` event)."""
    for events in results.glob("*/*/*/events.jsonl"):
        if any(
            json.loads(line).get("kind") == "path_selected" for line in events.read_text().splitlines()[:-1]
        ):
            return True
    return False


def test_a_killed_pool_run_leaves_no_lease_and_the_next_run_starts_from_the_baseline(
    pool: list[Path], tmp_path: Path
) -> None:
    results = tmp_path / "killed"
    argv = hil(pool, results, "-n", "2", "--paths", "satellite")
    killed = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while not selected(results, "satellite") and time.monotonic() < deadline:
            assert killed.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(30)
    left = [bench for bench in pool if uplink(bench) == "satellite"]
    assert left, "the killed run should have left a bench on the satellite path"
    for bench in pool:
        status = run([*RIG, "bench", "lock", "status", "--bench", str(bench)])
        assert status.stdout.strip().endswith(": free"), status.stdout + status.stderr

    done = run(hil(pool, tmp_path / "next", "-n", "2", "--paths", "landline"))
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [p for p in (tmp_path / "next").iterdir() if p.is_dir() and not p.is_symlink()]
    run_events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    repaired = [e for e in run_events if e["kind"] == "bench_left_dirty"]
    assert sorted((e["previous"]["bench"], e["previous"]["path"]) for e in repaired) == [
        (bench.parent.name, "satellite") for bench in left
    ], run_events
    assert all(r["outcome"] == "passed" for r in cells(tmp_path / "next"))
    for bench in pool:
        assert uplink(bench) == "landline"
