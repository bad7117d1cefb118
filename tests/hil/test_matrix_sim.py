"""End to end on the simulated bench: the incident's table from `pytest tests_hil`, and the release gate.

One simulated bench (`rig sim up` in a private folder, free ports) serves the module; the HIL suite and
`rig gate` run as the user runs them, in their own processes, against `benches/sim.yaml`.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

import rig

REPO = Path(__file__).resolve().parents[2]
RIG = [sys.executable, "-m", "rig"]
INCIDENT = "tcp-rx-1024,tcp-rx-1460,mbedtls-in-4096"
SIM_GATE = ["--bench", "benches/sim.yaml", "--allow-simulated"]
REAL_BUILD = b":020000041D00DD\n:00000001FF\n# a real firmware build of "


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The simulated bench, up for the module; the environment that points `benches/sim.yaml` at it.

    The variant files are private copies (`$FW`) plus `big-records-rc`: `mbedtls-in-4096` marked as a
    release candidate, for the gate's exit 1. Their `image.hex` names stand-ins for real firmware builds
    (`$REAL_BUILDS`), which the sim and every run must leave alone; the sim programs its own images.
    """
    folder = tmp_path_factory.mktemp("sim")
    firmware = folder / "firmware_configs"
    firmware.mkdir()
    real_builds = folder / "real-build"
    real_builds.mkdir()
    for source in (REPO / "firmware_configs").glob("*.yaml"):
        text = source.read_text().replace("../build/firmware/", str(real_builds) + "/")
        (firmware / source.name).write_text(text)
        (real_builds / f"{source.stem}.hex").write_bytes(REAL_BUILD + source.stem.encode())
    candidate = (firmware / "mbedtls-in-4096.yaml").read_text()
    candidate = candidate.replace("name: mbedtls-in-4096", "name: big-records-rc")
    candidate = candidate.replace("mbedtls-in-4096.hex", "big-records-rc.hex").replace(
        "release: false", "release: true"
    )
    (firmware / "big-records-rc.yaml").write_text(candidate)
    env = {**os.environ, "RIG_SIM_DIR": str(folder), "FW": str(firmware), "REAL_BUILDS": str(real_builds)}
    up = [
        *RIG,
        "sim",
        "up",
        "--dir",
        str(folder),
        "--program-seconds",
        "0.5",
        "--firmware-dir",
        str(firmware),
    ]
    done = subprocess.run(up, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        yield env
    finally:
        subprocess.run(
            [*RIG, "sim", "down", "--dir", str(folder)], cwd=REPO, env=env, timeout=120, check=False
        )


def run(argv: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def hil(sim: dict[str, str], variants: str, results: Path, *extra: str) -> list[str]:
    """`pytest tests_hil` on the module's variant files, as a user runs it, with evidence in `results`."""
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "tests_hil",
        "-p",
        "no:cacheprovider",
        "--firmware-dir",
        sim["FW"],
    ]
    return [*argv, "--variants", variants, "--results", str(results), *extra]


def only_run(results: Path) -> Path:
    runs = [p for p in results.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 1, runs
    return runs[0]


def test_the_matrix_on_the_simulated_bench_gives_the_incidents_table(
    sim: dict[str, str], tmp_path: Path
) -> None:
    results, allure_dir = tmp_path / "results", tmp_path / "allure"
    done = run(hil(sim, INCIDENT, results, "--alluredir", str(allure_dir)), sim)
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed, 3 xfailed" in done.stdout
    folder = only_run(results)
    lines = [json.loads(line) for line in (folder / "cells.jsonl").read_text().splitlines()]
    cells = {(c["variant"], c["path"]): c for c in lines if not c["forensic"]}
    # Each failing cell is rerun once with its forensic image (debug level 4), as evidence only.
    forensic = {(c["variant"], c["path"]): c for c in lines if c["forensic"]}
    assert sorted(forensic) == [
        ("mbedtls-in-4096", "landline"),
        ("mbedtls-in-4096", "satellite"),
        ("tcp-rx-1024", "satellite"),
    ]
    rerun = forensic[("tcp-rx-1024", "satellite")]
    assert (rerun["verdict"], rerun["last_state"], rerun["attempt"]) == (
        "stalled",
        "SERVER_CHANGE_CIPHER_SPEC",
        2,
    )
    compared = json.loads((Path(rerun["evidence"]) / "wire-vs-stack.json").read_text())
    assert [(d["offset"], d["message"]) for d in compared["differences"]] == [
        (4096, "Certificate"),
        (4097, "Certificate"),
    ]
    assert "wire vs stack: 2 of" in rerun["summary"]
    # The UART kept up with the level-4 output: only the library's own dump limit left bytes uncompared.
    assert [n.split(" — ")[1] for n in compared["not_compared"]] == [
        "Mbed TLS dumps at most 4096 bytes of a buffer (debug.c)"
    ]
    # The failing attempt's theories, answered with the rerun's comparison and the cloud's own log.
    answered = (Path(cells[("tcp-rx-1024", "satellite")]["evidence"]) / "theories.txt").read_text()
    # The satellite PEP acknowledged the hub's last flight on the LAN: it left the hub, and TCP says so.
    assert re.search(
        r"^\(1\) The hub's last flight left it: .*, acknowledged by TCP [0-9.]+ s later$", answered, re.M
    )
    assert "the cloud's own log: \"gave up on the handshake: BAD_SIGNATURE" in answered
    assert "Supported: (4): the device changed 2 bytes of the server's flight" in answered
    assert "while the wire was intact" in rerun["summary"]
    assert (
        "the device changed 2 bytes of the server's flight" in cells[("tcp-rx-1024", "satellite")]["summary"]
    )

    stall = cells[("tcp-rx-1024", "satellite")]
    assert (stall["outcome"], stall["verdict"], stall["category"], stall["last_state"]) == (
        "xfailed",
        "stalled",
        "stall_want_read",
        "SERVER_CHANGE_CIPHER_SPEC",
    )
    for cell in ("tcp-rx-1024", "landline"), ("tcp-rx-1460", "landline"), ("tcp-rx-1460", "satellite"):
        assert (cells[cell]["outcome"], cells[cell]["verdict"]) == ("passed", "completed")
        assert cells[cell]["ciphersuite"]
    for path in ("landline", "satellite"):
        big = cells[("mbedtls-in-4096", path)]
        assert (big["outcome"], big["verdict"], big["category"]) == (
            "xfailed",
            "failed",
            "record_or_buffer_size",
        )
    # Each variant programmed once, and mbedtls-in-4096 once more: its second path follows the forensic
    # rerun of its first, which left the forensic image on the DUT.
    assert sum(c["programmed"] for c in cells.values()) == 3 + 1
    assert all(c["programmed"] for c in forensic.values())

    evidence = Path(stall["evidence"])
    for name in ("uart.raw", "uart.jsonl", "diagnosis.json", "events.jsonl", "capture.pcap", "timeline.png"):
        assert (evidence / name).stat().st_size > 0, name
    programmed = Path(cells[("tcp-rx-1024", "landline")]["evidence"])  # its variant's first cell
    assert list((programmed / "programmer").iterdir()), "the programmer's output is kept"
    events = [json.loads(line) for line in (evidence / "events.jsonl").read_text().splitlines()]
    kinds = [event["kind"] for event in events]
    for kind in (
        "attempt_started",
        "path_selected",
        "capture_started",
        "reset",
        "verdict",
        "capture_stopped",
    ):
        assert kind in kinds, kinds
    assert next(e for e in events if e["kind"] == "verdict")["verdict"] == "stalled"
    diff = (evidence / "diff.txt").read_text()
    assert "SERVER_CHANGE_CIPHER_SPEC" in diff
    assert stall["quiet"] == "server"
    assert "On the wire: the server went silent after the hub's" in str(stall["summary"])
    assert "Finished (encrypted) (5 records, 1566 bytes" in str(stall["summary"])
    assert (evidence / "wire.json").is_file()
    diagnosis = json.loads((evidence / "diagnosis.json").read_text())
    assert diagnosis["stall_after_s"] == 6 + 6 * 0.6
    assert diagnosis["diagnosis"]["stall_seconds"] >= diagnosis["stall_after_s"]
    # diagnosis.json is the attempt's record, as cells.jsonl has it, plus the full diagnosis.
    assert {k: v for k, v in diagnosis.items() if k not in ("cell", "diagnosis")} == stall
    print(
        f"incident cell: stalled {stall['seconds']['reset_to_verdict']:.1f} s after the reset (firmware: 60 s)"
    )

    environment = dict(
        line.split("=", 1) for line in (allure_dir / "environment.properties").read_text().splitlines()
    )
    assert (environment["bench_name"], environment["bench_kind"]) == ("sim", "simulated")
    assert environment["image.tcp-rx-1024"] == stall["image_sha256"]
    assert (stall["bench"], stall["simulated"]) == ("sim", True)
    run_info = json.loads((folder / "run.json").read_text())
    assert (run_info["bench_kind"], run_info["simulated"], run_info["rig_version"]) == (
        "simulated",
        True,
        rig.__version__,
    )

    statuses, attached = {}, {}
    for file in allure_dir.glob("*-result.json"):
        result = json.loads(file.read_text())
        name = result["name"].split("[", 1)[1].rstrip("]")
        statuses[name] = (result["status"], len(result.get("attachments", [])))
        attached[name] = {a["name"] for a in result.get("attachments", [])}
    assert {
        "attempt 1: the incident's theories, answered",
        "attempt 1: the cloud's own journal",
        "forensic attempt 2: wire against stack: bytes on the wire vs bytes Mbed TLS read",
        "forensic attempt 2: wire against stack (JSON)",
    } <= attached["tcp-rx-1024-satellite"]
    assert statuses["tcp-rx-1024-satellite"][0] == "failed"  # a known failure, not allure-pytest's skipped
    assert statuses["tcp-rx-1024-landline"][0] == "passed"
    assert statuses["tcp-rx-1024-satellite"][1] >= 6  # diagnosis, diff, timeline, UART, events, pcap

    table = done.stdout[done.stdout.index("HIL matrix on bench `sim`") :]
    assert "stalled at" in table and "SERVER_CHANGE_CIPHER_SPEC" in table

    # The run's own events: the bench brought into use and given back, outside every attempt.
    run_events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    run_kinds = [event["kind"] for event in run_events]
    for kind in ("lease_acquired", "bench_ready", "path_restored", "lease_released"):
        assert kind in run_kinds, run_kinds
    assert {e["part"] for e in run_events if e["kind"] == "preflight"} >= {
        "lease",
        "programmer",
        "uart",
        "router",
    }
    assert "verdict" not in run_kinds and "attempt_started" not in run_kinds

    # The post-mortem prints the same table from the folder.
    again = run([*RIG, "report", str(folder)], {**sim, "COLUMNS": "200"})
    assert again.returncode == 0, again.stderr
    assert f"HIL matrix on bench `sim` (run {folder.name}, SIMULATED bench)" in again.stdout
    assert "did not reach its end" not in again.stdout
    assert "tcp-rx-1024-satellite (xfailed): Stalled in client state 12" in again.stdout


def test_forensic_always_reruns_the_fixs_passing_cell_and_its_level_4_log_reads_every_byte_the_wire_carried(
    sim: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    done = run(hil(sim, "tcp-rx-1460", results, "--paths", "satellite", "--forensic=always"), sim)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
    assert "rig: tcp-rx-1460-satellite passed: rerunning it once with its forensic image" in done.stdout
    lines = [json.loads(line) for line in (only_run(results) / "cells.jsonl").read_text().splitlines()]
    assert [(c["attempt"], c["forensic"], c["verdict"], c["outcome"]) for c in lines] == [
        (2, True, "completed", "passed"),
        (1, False, "completed", "passed"),
    ]
    passing = Path(lines[1]["evidence"])
    assert lines[1]["theories"] == [] and not (passing / "theories.txt").exists()  # a pass answers none
    evidence = Path(lines[0]["evidence"])
    diagnosed = run(
        [*RIG, "diagnose", str(evidence / "uart.raw"), "--capture", str(evidence / "capture.pcap")], sim
    )
    print(diagnosed.stdout)
    assert diagnosed.returncode == 0, diagnosed.stdout + diagnosed.stderr
    equal = re.search(r"^  (\d+) bytes compared, all equal$", diagnosed.stdout, re.M)
    assert equal is not None, diagnosed.stdout
    assert int(equal.group(1)) > 0
    assert f"wire vs stack: all {equal.group(1)} compared bytes equal (4 records)" in diagnosed.stdout
    assert "differ" not in diagnosed.stdout


def test_a_killed_run_is_reported_from_its_folder_and_the_next_run_repairs_the_bench_it_left(
    sim: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    killed = subprocess.Popen(
        hil(sim, "tcp-rx-1024", results),
        cwd=REPO,
        env=sim,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # Killed once the landline cell is written and the satellite cell has selected its path: the
        # router is left off its baseline, the lease held by a process that is gone.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and killed.poll() is None:
            attempt_events = list(results.glob("*/tcp-rx-1024-satellite/1/events.jsonl"))
            if attempt_events and '"path_selected"' in attempt_events[0].read_text():
                break
            time.sleep(0.1)
        assert killed.poll() is None, "the run ended before it could be killed"
    finally:
        killed.kill()
        killed.wait(timeout=30)
    folder = only_run(results)

    report = run([*RIG, "report", str(folder)], {**sim, "COLUMNS": "200"})
    assert report.returncode == 0, report.stderr
    assert "this run did not reach its end (no summary.json" in report.stdout
    assert "the 1 attempt(s) its cells.jsonl holds" in report.stdout
    row = next(line for line in report.stdout.splitlines() if line.startswith("│ tcp-rx-1024"))
    assert "completed" in row
    assert "lease_acquired" in report.stdout and "preflight ×" in report.stdout

    done = run(hil(sim, "tcp-rx-1024", results, "--paths", "landline"), sim)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    (second,) = [p for p in results.iterdir() if p.is_dir() and not p.is_symlink() and p != folder]
    run_events = [json.loads(line) for line in (second / "events.jsonl").read_text().splitlines()]
    (dirty,) = [e for e in run_events if e["kind"] == "bench_left_dirty"]
    assert (dirty["previous"]["path"], dirty["baseline"]) == ("satellite", "landline")
    report = run([*RIG, "report", str(second)], {**sim, "COLUMNS": "200"})
    assert "  bench_left_dirty: the bench was on satellite (left by pid " in report.stdout


def test_gate_exits_0_and_writes_gate_json_for_a_releasable_variant(
    sim: dict[str, str], tmp_path: Path
) -> None:
    argv = [*RIG, "gate", "tcp-rx-1460", *SIM_GATE, "--firmware-dir", sim["FW"], "--repeat", "1"]
    done = run([*argv, "--results", str(tmp_path)], sim)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "simulated bench: this is not a release verdict" in done.stdout
    gate_file = only_run(tmp_path) / "gate.json"
    gate = json.loads(gate_file.read_text())
    image = (Path(sim["RIG_SIM_DIR"]) / "images" / "tcp-rx-1460.hex").read_bytes()
    assert gate["variant"] == "tcp-rx-1460" and gate["bench"] == "sim"
    assert gate["image_sha256"] == hashlib.sha256(image).hexdigest()
    assert gate["verdict"] == "releasable" and gate["exit_code"] == 0
    assert {p: r["completed"] for p, r in gate["paths"].items()} == {"landline": 1, "satellite": 1}
    assert gate["simulated"] is True and gate["release_verdict"] is False
    gate_events = [
        json.loads(line)["kind"] for line in (gate_file.parent / "events.jsonl").read_text().splitlines()
    ]
    assert {"lease_acquired", "preflight", "path_restored", "lease_released"} <= set(gate_events)
    provenance = gate["provenance"]
    assert provenance["bench_kind"] == "simulated" and provenance["rig_version"] == rig.__version__
    assert provenance["image"]["sha256"] == gate["image_sha256"]
    assert provenance["variant_file"]["file"] == str(Path(sim["FW"], "tcp-rx-1460.yaml").resolve())
    assert provenance["started"] <= provenance["ended"]
    assert [(a["path"], a["outcome"]) for a in gate["attempts"]] == [
        ("landline", "passed"),
        ("satellite", "passed"),
    ]
    assert all(Path(a["evidence"], "diagnosis.json").is_file() for a in gate["attempts"])

    verified = run([*RIG, "gate", "--verify", str(gate_file)], sim)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # The same gate.json, pointed at a copy of the image that is then rebuilt: --verify says so, exit 1.
    image_copy = tmp_path / "tcp-rx-1460.hex"
    image_copy.write_bytes(image)
    gate["provenance"]["image"]["file"] = str(image_copy)
    gate_file.write_text(json.dumps(gate))
    assert run([*RIG, "gate", "--verify", str(gate_file)], sim).returncode == 0
    image_copy.write_bytes(image + b":00000001FF\n")
    changed = run([*RIG, "gate", "--verify", str(gate_file)], sim)
    assert changed.returncode == 1
    assert f"CHANGED image {image_copy}: changed" in changed.stdout


def test_gate_needs_a_bench_and_refuses_a_simulated_one_without_allow_simulated(
    sim: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in sim.items() if k != "RIG_BENCH"}
    argv = [*RIG, "gate", "tcp-rx-1460", "--firmware-dir", sim["FW"], "--results", str(tmp_path)]
    done = run(argv, env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: rig gate: no bench — give --bench FILE or set RIG_BENCH; the gate never picks a bench for you"
    ]
    done = run(argv, {**env, "RIG_BENCH": "benches/sim.yaml"})
    assert done.returncode == 2
    assert "bench sim is simulated — its verdict cannot release firmware" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not tmp_path.joinpath("latest").exists()  # refused before anything ran


def test_gate_exits_1_when_the_firmware_fails_a_path(sim: dict[str, str], tmp_path: Path) -> None:
    argv = [*RIG, "gate", "big-records-rc", *SIM_GATE, "--firmware-dir", sim["FW"], "--repeat", "1"]
    done = run([*argv, "--results", str(tmp_path / "results")], sim)
    assert done.returncode == 1, done.stdout + done.stderr
    gate = json.loads((only_run(tmp_path / "results") / "gate.json").read_text())
    assert gate["verdict"] == "not releasable"
    assert gate["reasons"][0] == "landline: the firmware failed 1 of 1 (failed record_or_buffer_size)"


def test_gate_exits_3_when_the_bench_cannot_judge(sim: dict[str, str], tmp_path: Path) -> None:
    fault = run([*RIG, "sim", "fault", "programmer-missing"], sim)
    assert fault.returncode == 0, fault.stdout + fault.stderr
    try:
        argv = [*RIG, "gate", "tcp-rx-1460", *SIM_GATE, "--firmware-dir", sim["FW"], "--repeat", "1"]
        done = run([*argv, "--results", str(tmp_path)], sim)
    finally:
        run([*RIG, "sim", "fault", "programmer-missing", "--clear"], sim)
    assert done.returncode == 3, done.stdout + done.stderr
    gate = json.loads((only_run(tmp_path) / "gate.json").read_text())
    assert gate["verdict"] == "not judged"
    assert any("preflight failed — programmer" in reason for reason in gate["reasons"])


def test_gate_refuses_a_variant_not_marked_for_release(sim: dict[str, str], tmp_path: Path) -> None:
    done = run(
        [*RIG, "gate", "tcp-rx-1024", *SIM_GATE, "--firmware-dir", sim["FW"], "--results", str(tmp_path)], sim
    )
    assert done.returncode == 2
    assert "variant tcp-rx-1024 has `release: false`" in done.stderr
    assert not tmp_path.joinpath("latest").exists()


def test_a_programmer_without_its_target_is_an_outage_exit_3_after_two_attempts(
    sim: dict[str, str], tmp_path: Path
) -> None:
    fault = run([*RIG, "sim", "fault", "programmer-no-target"], sim)
    assert fault.returncode == 0, fault.stdout + fault.stderr
    junit = tmp_path / "junit.xml"
    try:
        done = run(hil(sim, "tcp-rx-1460,tcp-rx-1024", tmp_path, "--junitxml", str(junit)), sim)
    finally:
        run([*RIG, "sim", "fault", "programmer-no-target", "--clear"], sim)
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    assert "rig: the programmer failed 2 attempts in a row, so the remaining cells are not run" in done.stdout
    records = [json.loads(line) for line in (only_run(tmp_path) / "cells.jsonl").read_text().splitlines()]
    tried = [r for r in records if r["verdict"] == "error"]
    assert len(tried) == 2 and all("target" in r["error"].lower() for r in tried)
    assert {(r["outcome"], r["verdict"]) for r in records[2:]} == {("error", "not run")}
    assert len(records) == 2 + 3  # the first cell's two attempts, then the other three cells not run
    suite = ElementTree.parse(junit).getroot()
    cases = suite.iter("testcase")
    assert [len(case.findall("error")) for case in cases] == [1, 1, 1, 1]
    assert list(suite.iter("failure")) == []
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert (props["bench"], props["bench_kind"]) == ("sim", "simulated")


def test_release_builds_without_debug_output_get_their_debug_twins_verdicts_from_the_wire(
    sim: dict[str, str], tmp_path: Path
) -> None:
    done = run(hil(sim, "tcp-rx-1460-release,tcp-rx-1024-release", tmp_path), sim)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "3 passed, 1 xfailed" in done.stdout
    lines = [json.loads(line) for line in (only_run(tmp_path) / "cells.jsonl").read_text().splitlines()]
    cells = {(c["variant"], c["path"]): c for c in lines if not c["forensic"]}
    # The failing release build's forensic rerun is its debug twin at level 4: the UART then speaks.
    assert [(c["variant"], c["path"]) for c in lines if c["forensic"]] == [
        ("tcp-rx-1024-release", "satellite")
    ]
    for cell in (
        ("tcp-rx-1460-release", "landline"),
        ("tcp-rx-1460-release", "satellite"),
        ("tcp-rx-1024-release", "landline"),
    ):
        assert cells[cell]["verdict"] == "completed"
        assert str(cells[cell]["ciphersuite"]).startswith("TLS-ECDHE-")
    stall = cells[("tcp-rx-1024-release", "satellite")]
    assert (stall["outcome"], stall["verdict"], stall["category"], stall["last_state"], stall["quiet"]) == (
        "xfailed",
        "stalled",
        "stall_want_read",
        "SERVER_CHANGE_CIPHER_SPEC",
        "server",
    )
    summary = str(stall["summary"])
    assert "from the wire: no Mbed TLS line on the UART" in summary
    assert (
        "the server went silent after the hub's Certificate, ClientKeyExchange, CertificateVerify, ChangeCipherSpec"
        in summary
    )
    # Judged by the same stall rule as its debug twin: stall_after after the server's last byte.
    assert float(stall["seconds"]["reset_to_verdict"]) >= 9.6  # never before stall_after (6 s + 6 × 0.6 s)


def hil_with_fault_after_landline(
    sim: dict[str, str], results: Path, fault: list[str], delay_s: float = 0.0
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    """`pytest tests_hil` on tcp-rx-1460 (landline, then satellite); `fault` is injected once the
    landline cell's record is written, `delay_s` later: it hits the satellite attempt, not the boot the
    session reads the DUT's banner from."""
    argv = hil(sim, "tcp-rx-1460", results)
    process = subprocess.Popen(
        argv, cwd=REPO, env=sim, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            cells = list(results.glob("*/cells.jsonl"))
            if cells and '"landline"' in cells[0].read_text():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the landline cell never finished")
        time.sleep(delay_s)
        injected = run([*RIG, "sim", "fault", *fault], sim)
        assert injected.returncode == 0, injected.stdout + injected.stderr
        stdout, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    done = subprocess.CompletedProcess(argv, process.returncode, stdout, "")
    records = [json.loads(line) for line in (only_run(results) / "cells.jsonl").read_text().splitlines()]
    return done, records


def test_a_reboot_during_the_handshake_is_an_unexpected_reboot_even_though_the_next_boot_connects(
    sim: dict[str, str], tmp_path: Path
) -> None:
    try:
        done, records = hil_with_fault_after_landline(sim, tmp_path, ["dut-reboot", "1.2"])
    finally:
        run([*RIG, "sim", "fault", "dut-reboot", "--clear"], sim)
    assert done.returncode == 1, done.stdout[-3000:]
    satellite = [r for r in records if r["path"] == "satellite" and not r["forensic"]]
    assert len(satellite) == 1  # a firmware failure: judged, not retried (its forensic rerun is evidence)
    (cell,) = satellite
    assert (cell["outcome"], cell["verdict"], cell["category"]) == ("failed", "failed", "unexpected_reboot")
    assert "(reset cause: WDTO)" in str(cell["summary"]) and cell["error"] == "reset cause WDTO"
    # The hub's second boot did connect: the cloud saw it, and it is still a failure.
    events = [
        json.loads(line) for line in Path(str(cell["evidence"]), "events.jsonl").read_text().splitlines()
    ]
    verdict = next(e for e in events if e["kind"] == "verdict")
    assert [b["reset_cause"] for b in verdict["boots"]] == ["MCLR", "WDTO"]


def test_the_uart_lost_during_the_handshake_is_a_bench_error_never_a_failure(
    sim: dict[str, str], tmp_path: Path
) -> None:
    done, records = hil_with_fault_after_landline(sim, tmp_path, ["uart-gone", "20"], delay_s=1.5)
    assert done.returncode == 3, done.stdout[-3000:]
    satellite = [r for r in records if r["path"] == "satellite"]
    assert satellite and all(r["outcome"] == "error" and r["part"] == "uart" for r in satellite)
    assert "the UART was gone" in str(satellite[0]["error"])
    assert "FAILED" not in done.stdout


def test_a_dead_uplink_stops_its_path_before_any_cell_runs_on_it(sim: dict[str, str], tmp_path: Path) -> None:
    fault = run([*RIG, "sim", "fault", "uplink-down", "satellite"], sim)
    assert fault.returncode == 0, fault.stdout + fault.stderr
    try:
        check = run([*RIG, "bench", "check"], sim)
        done = run(hil(sim, "tcp-rx-1460,tcp-rx-1024", tmp_path / "hil"), sim)
        argv = [*RIG, "gate", "tcp-rx-1460", *SIM_GATE, "--firmware-dir", sim["FW"], "--repeat", "1"]
        gate = run([*argv, "--results", str(tmp_path / "gate")], sim)
    finally:
        run([*RIG, "sim", "fault", "uplink-down", "--clear"], sim)
    assert check.returncode == 3 and "uplink satellite" in check.stdout
    assert done.returncode == 3, done.stdout[-3000:]
    records = [
        json.loads(line) for line in (only_run(tmp_path / "hil") / "cells.jsonl").read_text().splitlines()
    ]
    assert {r["outcome"] for r in records if r["path"] == "landline"} == {"passed"}
    satellite = [r for r in records if r["path"] == "satellite"]
    assert {(r["outcome"], r["part"]) for r in satellite} == {("error", "uplink")}
    assert [r["verdict"] for r in satellite] == ["error", "error", "not run"]  # one retry, then not run
    for record in satellite[:2]:  # probed, and the DUT never reset for a satellite attempt
        kinds = [
            json.loads(line)["kind"]
            for line in Path(str(record["evidence"]), "events.jsonl").read_text().splitlines()
        ]
        assert "path_probe" in kinds and "reset" not in kinds
    assert gate.returncode == 3, gate.stdout + gate.stderr
    verdict = json.loads((only_run(tmp_path / "gate") / "gate.json").read_text())
    assert verdict["verdict"] == "not judged"


def test_the_real_builds_the_variants_name_are_left_byte_for_byte(sim: dict[str, str]) -> None:
    # After `rig sim up`, the matrix and the gates of this module (this test runs last).
    builds = sorted(Path(sim["REAL_BUILDS"]).iterdir())
    assert [p.name for p in builds] == sorted(
        f"{p.stem}.hex" for p in (REPO / "firmware_configs").glob("*.yaml")
    )
    for build in builds:
        assert build.read_bytes() == REAL_BUILD + build.stem.encode()


ALLURE = REPO / "build" / "node_modules" / ".bin" / "allure"


@pytest.fixture(scope="module")
def allure3() -> Path:
    """Allure 3's command line, installed from npm into build/ as `make report` does."""
    if not ALLURE.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed (Debian package npm): Allure 3 cannot be installed")
        install = ["npm", "install", "--prefix", "build", "--no-audit", "--no-fund", "allure@3"]
        done = subprocess.run(install, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return ALLURE


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no headless browser: install Debian's chromium package (make setup does)")
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on a free port (the report loads its data with fetch, not from file:)."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_allure_report_shows_the_incident_as_a_known_failure_with_its_diagnosis_and_history(
    sim: dict[str, str], tmp_path: Path, allure3: Path, chromium: str, served: tuple[Path, str]
) -> None:
    results = tmp_path / "results"
    allure_results = results / "allure-results"
    root, url = served
    env = {**sim, "RESULTS": str(results), "ALLURE_RESULTS": str(allure_results)}
    for night in (1, 2):
        done = run(
            hil(sim, "tcp-rx-1024", results, "--alluredir", str(allure_results), "--clean-alluredir"), sim
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        report = root / f"night-{night}"
        generate = [
            str(allure3),
            "generate",
            str(allure_results),
            "--config",
            "allurerc.mjs",
            "-o",
            str(report),
        ]
        made = run(generate, env)
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]

    by_id = json.loads((report / "test-results.json").read_text())["byId"]
    (incident,) = [tr for tr in by_id.values() if tr["name"].endswith("[tcp-rx-1024-satellite]")]
    data = json.loads((report / "data" / "test-results" / f"{incident['id']}.json").read_text())
    assert (data["status"], data["known"], data["resolution"]) == ("failed", True, "accepted")
    assert [c["name"] for c in data["categories"]] == [
        "Known firmware failures (the variant file expects them)"
    ]
    assert len(data["history"]) == 1, "the second night's report has the first night in its history"
    assert data["attachments"][0]["link"]["name"] == "overview: the matrix and the gate"

    page = f"{url}/night-2/index.html#{incident['id']}"
    browse = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    dom = subprocess.run(
        [*browse, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=False
    ).stdout
    text = " ".join(
        re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)).split()
    )
    assert "test_handshake_completes_and_mqtt_connects[tcp-rx-1024-satellite]" in text
    expectation = f"Known failure: {sim['FW']}/tcp-rx-1024.yaml: expect.satellite = fail stall_want_read at"
    assert f"{expectation} SERVER_CHANGE_CIPHER_SPEC" in text
    assert "Diagnosis: Stalled in client state 12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC)" in text
    assert "Known firmware failures (the variant file expects them)" in text
    assert "attempt 1: handshake timeline" in text
    assert "Skipped" not in text
    screenshot = tmp_path / "incident.png"
    subprocess.run(
        [*browse, "--hide-scrollbars", "--window-size=1400,1100", f"--screenshot={screenshot}", page],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert screenshot.stat().st_size > 10_000
    print(f"the incident cell in the report: {screenshot}")
