"""The incident and its fix, end to end on the simulated bench, driven only through its endpoints.

`rig sim up` brings the bench up; then, as a harness would: the router is switched over SSH with
`simrouter`, the image is programmed with the `ipecmd` executable, and the hub's UART is read with
pyserial on the port symlink. The verdict comes from the Mbed TLS debug lines (`rig.mbedtls`), and must
be what each variant file expects on that path — out of the mechanisms (FIFO, PEP, stand-in), not
written into the sim.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
import serial

from rig.config import BenchConfig, load_bench, load_variant, read_env_file
from rig.mbedtls import LogParser, diagnose_parser
from rig.sim.procs import Processes

ROOT = Path(__file__).resolve().parents[2]
CELL_DEADLINE_S = 120


@dataclass
class Bench:
    dir: Path
    repo: Path
    config: BenchConfig
    env: dict[str, str]
    ssh: paramiko.SSHClient

    def router(self, command: str) -> str:
        _, out, err = self.ssh.exec_command(command, timeout=20)
        text = out.read().decode()
        assert out.channel.recv_exit_status() == 0, err.read().decode()
        return text

    def select(self, path: str) -> None:
        self.router(f"simrouter select {path}")
        assert re.search(self.config.paths[path].verify.expect, self.router("simrouter route"))

    def program(self, hex_path: Path) -> list[str]:
        argv = [self.env["RIG_SIM_IPECMD"], "-TPICD4", f"-TS{self.env['RIG_SIM_TOOL_SERIAL']}",
                f"-P{self.config.dut.part}", f"-F{hex_path}", "-M", "-OL"]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert "Program Succeeded." in done.stdout, done.stdout
        return done.stdout.splitlines()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    base = tmp_path_factory.mktemp("e2e")
    repo, folder = base / "repo", base / "sim"
    (repo / "benches").mkdir(parents=True)
    shutil.copy(ROOT / "benches" / "sim.yaml", repo / "benches" / "sim.yaml")
    shutil.copytree(ROOT / "firmware_configs", repo / "firmware_configs")
    env = {**os.environ, "RIG_SIM_DIR": str(folder)}
    up = subprocess.run(
        [sys.executable, "-m", "rig", "sim", "up", "--dir", str(folder), "--bench", str(repo / "benches" / "sim.yaml"),
         "--program-seconds", "0.2"],
        capture_output=True, text=True, timeout=300, check=False, cwd=repo, env=env,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        values = read_env_file(folder / "bench.env")
        os.environ["RIG_SIM_DIR"] = str(folder)
        try:
            config = load_bench(repo / "benches" / "sim.yaml").model
        finally:
            del os.environ["RIG_SIM_DIR"]
        router = config.ssh_hosts["router"]
        ssh = paramiko.SSHClient()
        entry = paramiko.hostkeys.HostKeyEntry.from_line(router.host_keys[0])
        assert entry is not None
        ssh.get_host_keys().add(entry.hostnames[0], entry.key.get_name(), entry.key)
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        ssh.connect(router.host, port=router.port, username=router.user, key_filename=str(router.key_file),
                    allow_agent=False, look_for_keys=False, timeout=5, banner_timeout=5, auth_timeout=5)  # fmt: skip
        with ssh:
            yield Bench(folder, repo, config, values, ssh)
    finally:
        subprocess.run([sys.executable, "-m", "rig", "sim", "down", "--dir", str(folder)],
                       capture_output=True, timeout=60, check=False, env=env)  # fmt: skip
        Processes(folder / "run").stop_all()


@dataclass
class Outcome:
    category: str
    last_state: int | None
    summary: str
    lines: list[str]
    mqtt_up: bool
    seconds: float


def run_cell(bench: Bench, variant_name: str, path: str) -> Outcome:
    variant = load_variant(bench.repo / "firmware_configs" / f"{variant_name}.yaml").model
    bench.select(path)
    stall = bench.config.timeouts.stall
    stall_after = stall.floor_s + stall.rtt_multiple * bench.config.paths[path].rtt_ms / 1000
    mqtt = re.compile(bench.config.dut.mqtt_connected)
    parser = LogParser()
    lines: list[str] = []
    with serial.Serial(bench.env["RIG_SIM_UART_URL"], bench.config.dut.uart.baud, timeout=0.5) as uart:
        bench.program(bench.config.image_for(variant))
        start = time.monotonic()
        verdict = None
        buffer = b""
        while time.monotonic() - start < CELL_DEADLINE_S:
            buffer += uart.read(4096)
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace").rstrip("\r")
                lines.append(line)
                parser.feed(line, host_time=time.time())
                if mqtt.search(line):
                    verdict = diagnose_parser(parser)
                    print(
                        f"\n{variant_name} over {path}: MQTT up {time.monotonic() - start:.2f} s after programming"
                    )
                    return Outcome(verdict.category, verdict.last_state["number"], verdict.summary, lines, True,
                                   time.monotonic() - start)  # fmt: skip
            verdict = diagnose_parser(parser, now=time.time(), stall_after=stall_after)
            if verdict.outcome in ("failed", "stalled"):
                break
        assert verdict is not None, "no line from the hub"
        return Outcome(verdict.category, verdict.last_state["number"], verdict.summary, lines, False,
                       time.monotonic() - start)  # fmt: skip


def report(variant: str, path: str, outcome: Outcome) -> str:
    tail = "\n".join(outcome.lines[-25:])
    return f"{variant} over {path}: {outcome.category} in {outcome.seconds:.1f} s — {outcome.summary}\n{tail}"


def test_tcp_rx_1024_over_satellite_stalls_in_client_state_12_with_the_server_silent(bench: Bench) -> None:
    outcome = run_cell(bench, "tcp-rx-1024", "satellite")
    print(report("tcp-rx-1024", "satellite", outcome))
    assert (outcome.category, outcome.last_state) == ("stall_want_read", 12), report(
        "tcp-rx-1024", "satellite", outcome
    )
    after_12 = outcome.lines[
        max(i for i, line in enumerate(outcome.lines) if "client state: 12" in line) - 1 :
    ]
    assert not any("f_recv" in line and "returned" in line for line in after_12)  # not a byte, not an alert
    assert not outcome.mqtt_up


def test_tcp_rx_1024_over_landline_completes(bench: Bench) -> None:
    outcome = run_cell(bench, "tcp-rx-1024", "landline")
    assert (outcome.category, outcome.mqtt_up) == ("completed", True), report(
        "tcp-rx-1024", "landline", outcome
    )


@pytest.mark.parametrize("path", ["landline", "satellite"])
def test_tcp_rx_1460_completes(bench: Bench, path: str) -> None:
    outcome = run_cell(bench, "tcp-rx-1460", path)
    assert (outcome.category, outcome.mqtt_up) == ("completed", True), report("tcp-rx-1460", path, outcome)


@pytest.mark.parametrize("path", ["landline", "satellite"])
def test_mbedtls_in_4096_fails_with_a_record_or_buffer_size_error(bench: Bench, path: str) -> None:
    outcome = run_cell(bench, "mbedtls-in-4096", path)
    assert outcome.category == "record_or_buffer_size", report("mbedtls-in-4096", path, outcome)
    assert not outcome.mqtt_up
