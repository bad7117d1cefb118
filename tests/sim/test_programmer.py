"""The simulated `ipecmd` on its own, called as the harness calls it: markers, exit codes, faults.

Behind it a real board process runs a stand-in firmware that prints the sha256 of its flash, so the
test sees on the UART what the programmer put into the board. The image is a real variant's HEX.
"""

from __future__ import annotations

import hashlib
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import serial

from rig.config import ProgrammerConfig, load_variant
from rig.drivers.programmers.ipecmd import Ipecmd
from rig.errors import InfrastructureError
from rig.sim import programmer
from rig.sim.board import BoardClient
from rig.sim.image import build_image, flash_from_hex
from rig.sim.pki import generate_pki
from rig.sim.procs import Processes

ROOT = Path(__file__).resolve().parents[2]
PART = "32MZ2048EFM100"
SERIAL = "BURSIM000001"

FIRMWARE = """\
import hashlib, sys, time
flash = open(sys.argv[sys.argv.index("--flash") + 1], "rb").read()
sys.stdout.buffer.write(b"BOOT flash sha256 " + hashlib.sha256(flash).hexdigest().encode() + b"\\r\\n")
sys.stdout.flush()
time.sleep(3600)
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("image")
    variant = load_variant(ROOT / "firmware_configs" / "tcp-rx-1460.yaml").model
    pki = generate_pki(folder / "pki", "sim-ats.iot.us-east-1.amazonaws.com")
    out = folder / "tcp-rx-1460.hex"
    build_image(variant, pki, "hub-sim-0001", "sim-ats.iot.us-east-1.amazonaws.com", out)
    return out


@dataclass
class Bench:
    dir: Path
    ipecmd: Path
    board: BoardClient
    port: Path

    def run(self, *args: str) -> tuple[int, list[str]]:
        done = subprocess.run(
            [str(self.ipecmd), *args], capture_output=True, text=True, timeout=30, check=False
        )
        return done.returncode, done.stdout.splitlines()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    processes = Processes(tmp_path / "run")
    hub = tmp_path / "hub"
    hub.write_text(f"#!{sys.executable}\n{FIRMWARE}")
    hub.chmod(hub.stat().st_mode | stat.S_IXUSR)
    link = tmp_path / "dev" / "ttyHUB"
    argv = [sys.executable, "-m", "rig.sim.board", "--dir", str(tmp_path / "board"), "--hub", str(hub)]
    argv += ["--lan", "127.0.0.1:9", "--port-link", str(link)]
    processes.start("board", argv, log=tmp_path / "board.log")
    sock = tmp_path / "board" / "board.sock"
    programmer.write_settings(
        tmp_path, tool="ICD4", serial=SERIAL, part=PART, board_socket=sock, program_s=0.2
    )
    ipecmd = programmer.install(tmp_path)
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert time.monotonic() < deadline, (tmp_path / "board.log").read_text()
        time.sleep(0.02)
    try:
        yield Bench(tmp_path, ipecmd, BoardClient(sock, timeout=10), link)
    finally:
        processes.stop_all()


def program_args(image: Path, *extra: str) -> list[str]:
    return ["-TPICD4", f"-TS{SERIAL}", f"-P{PART}", f"-F{image}", "-M", *extra]


def flash_sha(image: Path) -> str:
    return hashlib.sha256(flash_from_hex(image)).hexdigest()


def test_programming_prints_the_real_tools_markers_and_boots_the_image(bench: Bench, image: Path) -> None:
    with serial.Serial(str(bench.port), 115200, timeout=10) as uart:
        code, lines = bench.run(*program_args(image, "-OL"))
        boot = uart.read_until(b"\r\n")
    assert code == 0
    for marker in ("Connecting to MPLAB ICD 4...", f"Target device PIC{PART} found.",
                   "Programming/Verify complete", "Program Succeeded.", "Operation Succeeded"):  # fmt: skip
        assert marker in lines
    assert lines[-1] == "Operation Succeeded"
    assert any(line.startswith("program memory: start address = 0x") for line in lines)
    assert boot == f"BOOT flash sha256 {flash_sha(image)}\r\n".encode()
    assert bench.board.request("status")["flash"]["source"] == str(image)


def test_without_ol_the_board_stays_held_in_reset_and_silent(bench: Bench, image: Path) -> None:
    with serial.Serial(str(bench.port), 115200, timeout=1) as uart:
        code, lines = bench.run(*program_args(image))
        assert uart.read(100) == b""
    assert (code, lines[-1]) == (0, "Operation Succeeded")
    assert bench.board.request("status")["state"] == "held"


def test_a_reset_command_releases_the_board_and_boots_it_again(bench: Bench, image: Path) -> None:
    bench.run(*program_args(image, "-OL"))
    code, lines = bench.run("-TPICD4", f"-TS{SERIAL}", f"-P{PART}", "-OL")
    assert (code, lines[-1]) == (0, "Operation Succeeded")
    status = bench.board.request("status")
    assert (status["state"], status["boots"]) == ("running", 2)


def test_verify_reports_verify_succeeded(bench: Bench, image: Path) -> None:
    code, lines = bench.run(*program_args(image, "-Y", "-OL"))
    assert code == 0 and "Verify Succeeded." in lines


def test_no_target_prints_the_failure_text_and_still_exits_zero(bench: Bench, image: Path) -> None:
    (bench.dir / "faults").mkdir()
    (bench.dir / "faults" / "programmer-no-target").write_text("on\n")
    code, lines = bench.run(*program_args(image, "-OL"))
    assert code == 0
    assert "Target device was not found (could not detect target voltage VDD). " in lines
    assert lines[-1] == "Operation Succeeded"
    assert "Program Succeeded." not in lines
    assert bench.board.request("status")["flash"] is None


def test_a_tool_serial_that_is_not_attached_gives_programmer_not_found_exit_9(
    bench: Bench, image: Path
) -> None:
    code, lines = bench.run("-TPICD4", "-TSBUR000000000", f"-P{PART}", f"-F{image}", "-M")
    assert (code, lines[-2:]) == (9, ["Programmer not found", "Operation Failed"])


def test_a_wrong_part_fails_with_exit_1(bench: Bench, image: Path) -> None:
    code, lines = bench.run("-TPICD4", f"-TS{SERIAL}", "-P32MX795F512H", f"-F{image}", "-M")
    assert (code, lines[-1]) == (1, "Operation Failed")
    assert any("does not match expected Device ID" in line for line in lines)


def test_an_unreadable_hex_file_fails_with_exit_1(bench: Bench, tmp_path: Path) -> None:
    code, lines = bench.run(*program_args(tmp_path / "missing.hex"))
    assert (code, lines[-2:]) == (1, ["Hex File could not be read.", "Operation Failed"])


def test_missing_device_or_tool_is_a_usage_error_exit_36(bench: Bench) -> None:
    code, lines = bench.run("-M")
    assert code == 36 and lines[0] == "Device and Tool are mandatory"


def test_the_harness_ipecmd_driver_programs_the_sim_and_reads_no_target_as_a_bench_problem(
    bench: Bench, image: Path, tmp_path: Path
) -> None:
    config = ProgrammerConfig(
        kind="ipecmd", tool="ICD4", serial=SERIAL, executable=str(bench.ipecmd), timeout_s=30
    )
    driver = Ipecmd(config, PART)
    result = driver.program(image, out_dir=tmp_path / "attempt")
    assert result.ok and result.attempts == 1
    (bench.dir / "faults").mkdir()
    (bench.dir / "faults" / "programmer-no-target").write_text("on\n")
    with pytest.raises(InfrastructureError, match="found no target"):
        driver.program(image, out_dir=tmp_path / "attempt2")


def test_erase_leaves_a_blank_board_that_stays_silent(bench: Bench, image: Path) -> None:
    bench.run(*program_args(image, "-OL"))
    code, lines = bench.run("-TPICD4", f"-TS{SERIAL}", f"-P{PART}", "-E", "-OL")
    assert (code, lines[-2:]) == (0, ["Erase successful", "Operation Succeeded"])
    status = bench.board.request("status")
    assert status["flash"] is None and status["hub_pid"] is None
