"""`rig sim up | status | fault | down` as a user runs them: every part answers, nothing is left behind.

Each test works on a copy of the bench file and the variant files in its own folder, and each sim builds
its images into its own folder, so several sims run side by side without touching the checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
import serial
from click.testing import CliRunner

from rig.cli import main
from rig.config import load_bench, read_env_file
from rig.sim.image import flash_from_hex
from rig.sim.procs import Processes, group_members

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class SimFolder:
    repo: Path
    dir: Path

    @property
    def bench(self) -> Path:
        return self.repo / "benches" / "sim.yaml"

    def rig(self, *args: str) -> Result:
        """`rig sim ARGS --dir DIR`, run in this process (the parts it starts are detached anyway)."""
        result = CliRunner().invoke(
            main, ["sim", *args, "--dir", str(self.dir)], env={"RIG_SIM_DIR": str(self.dir)}
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Result(result.exit_code, result.stdout, result.stderr)

    def up(self, *extra: str) -> Result:
        return self.rig("up", "--bench", str(self.bench), "--program-seconds", "0.3", *extra)

    def env(self) -> dict[str, str]:
        return {**os.environ, "RIG_SIM_DIR": str(self.dir)}


def make_folder(base: Path) -> SimFolder:
    repo = base / "repo"
    (repo / "benches").mkdir(parents=True)
    shutil.copy(ROOT / "benches" / "sim.yaml", repo / "benches" / "sim.yaml")
    shutil.copytree(ROOT / "firmware_configs", repo / "firmware_configs")
    return SimFolder(repo, base / "sim")


def processes_mentioning(text: str) -> list[str]:
    """Command lines of living processes that mention `text` (a sim's folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def router_session(env: dict[str, str]) -> paramiko.SSHClient:
    """An SSH connection to a sim's router, as the bench file describes it (pinned key, bench key)."""
    ssh = paramiko.SSHClient()
    entry = paramiko.hostkeys.HostKeyEntry.from_line(env["RIG_SIM_ROUTER_HOST_KEY"])
    assert entry is not None
    ssh.get_host_keys().add(entry.hostnames[0], entry.key.get_name(), entry.key)
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.connect("127.0.0.1", port=int(env["RIG_SIM_ROUTER_PORT"]), username=env["RIG_SIM_ROUTER_USER"],
                key_filename=env["RIG_SIM_ROUTER_KEY"], allow_agent=False, look_for_keys=False, timeout=5,
                banner_timeout=5, auth_timeout=5)  # fmt: skip
    return ssh


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFolder]:
    sim = make_folder(tmp_path_factory.mktemp("orchestrate"))
    result = sim.up()
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield sim
    finally:
        sim.rig("down")
        Processes(sim.dir / "run").stop_all()


def test_up_writes_bench_env_with_every_value_the_bench_file_references(running: SimFolder) -> None:
    env = read_env_file(running.dir / "bench.env")
    assert sorted(env) == sorted([
        "RIG_SIM_DIR", "RIG_SIM_UART_URL", "RIG_SIM_REENUMERATES", "RIG_SIM_TOOL_SERIAL", "RIG_SIM_IPECMD",
        "RIG_SIM_ROUTER_PORT", "RIG_SIM_ROUTER_USER", "RIG_SIM_ROUTER_KEY", "RIG_SIM_ROUTER_HOST_KEY",
        "RIG_SIM_ENDPOINT", "RIG_SIM_BROKER_PORT", "RIG_SIM_EVENTS_CA", "RIG_SIM_EVENTS_CERT", "RIG_SIM_EVENTS_KEY",
    ])  # fmt: skip
    old = os.environ.get("RIG_SIM_DIR")
    os.environ["RIG_SIM_DIR"] = str(running.dir)
    try:
        bench = load_bench(running.bench).model
    finally:
        if old is None:
            del os.environ["RIG_SIM_DIR"]
        else:
            os.environ["RIG_SIM_DIR"] = old
    assert Path(bench.dut.uart.url).resolve().as_posix().startswith("/dev/pts/")
    assert os.access(bench.programmer.executable, os.X_OK)
    router = bench.ssh_hosts["router"]
    assert router.port == int(env["RIG_SIM_ROUTER_PORT"])
    assert router.host_keys == [env["RIG_SIM_ROUTER_HOST_KEY"]]
    assert bench.cloud.events is not None and bench.cloud.events.cert.is_file()


def test_status_shows_every_part_running_and_exits_zero(running: SimFolder) -> None:
    assert running.rig("status", "--quiet").returncode == 0
    result = running.rig("status")
    assert result.returncode == 0, result.stderr
    for part in ("broker", "cloud", "router", "sshd", "board"):
        assert any(line.split()[:2] == [part, "running"] for line in result.stdout.splitlines()), (
            result.stdout
        )
    assert "uplink:" in result.stdout and "hub:" in result.stdout
    report = json.loads(running.rig("status", "--json").stdout)
    assert report["up"] is True and report["faults"] == []
    assert all(part["running"] for part in report["parts"].values())
    assert report["uplink"].startswith(("landline", "satellite"))
    assert report["board"]["port"] == read_env_file(running.dir / "bench.env")["RIG_SIM_UART_URL"]


def test_the_router_answers_on_its_pinned_key_and_router_ssh_down_takes_it_away(running: SimFolder) -> None:
    env = read_env_file(running.dir / "bench.env")
    port = int(env["RIG_SIM_ROUTER_PORT"])

    def login() -> str:
        with router_session(env) as ssh:
            _, out, _ = ssh.exec_command("command -v simrouter", timeout=10)
            return out.read().decode().strip()

    assert login() == str(running.dir / "bin" / "simrouter")
    assert running.rig("fault", "router-ssh-down").returncode == 0
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert "router-ssh-down" in running.rig("status").stdout
    assert running.rig("status", "--quiet").returncode == 0  # a fault, not a sim that is down
    assert running.rig("fault", "router-ssh-down", "--clear").returncode == 0
    assert login() == str(running.dir / "bin" / "simrouter")  # same port, same pinned host key


def test_programmer_missing_removes_the_executable_until_cleared(running: SimFolder) -> None:
    ipecmd = Path(read_env_file(running.dir / "bench.env")["RIG_SIM_IPECMD"])
    assert running.rig("fault", "programmer-missing").returncode == 0
    assert not ipecmd.exists()
    assert running.rig("fault", "programmer-missing", "--clear").returncode == 0
    assert os.access(ipecmd, os.X_OK)


def test_uart_gone_removes_the_port_and_it_comes_back(running: SimFolder) -> None:
    port = Path(read_env_file(running.dir / "bench.env")["RIG_SIM_UART_URL"])
    assert running.rig("fault", "uart-gone", "1").returncode == 0
    assert not port.exists()
    deadline = time.monotonic() + 10
    while not port.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert port.exists()


def test_cloud_faults_show_in_status_and_clear(running: SimFolder) -> None:
    assert running.rig("fault", "cloud-mode", "alert").returncode == 0
    assert running.rig("fault", "cloud-down").returncode == 0
    faults = next(line for line in running.rig("status").stdout.splitlines() if line.startswith("faults:"))
    assert faults == "faults: cloud-down, cloud-mode alert"
    running.rig("fault", "cloud-down", "--clear")
    running.rig("fault", "cloud-mode", "--clear")
    assert running.rig("status").stdout.splitlines()[-1] == "faults: none"


def test_an_unknown_fault_is_bad_input(running: SimFolder) -> None:
    result = running.rig("fault", "power-cut")
    assert result.returncode == 2 and "power-cut" in result.stderr


def test_a_second_sim_runs_side_by_side_and_down_leaves_no_process_even_after_the_controller_was_killed(
    running: SimFolder, tmp_path: Path
) -> None:
    other = make_folder(tmp_path)
    controller = subprocess.Popen(
        [sys.executable, "-m", "rig", "sim", "up", "--dir", str(other.dir), "--bench", str(other.bench)],
        cwd=other.repo, env=other.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (other.dir / "run" / "router.json").exists():
            assert controller.poll() is None and time.monotonic() < deadline, (
                "up ended before the router started"
            )
            time.sleep(0.05)
        controller.send_signal(signal.SIGKILL)  # the controller dies in the middle of `up`
        controller.wait(timeout=10)
        assert processes_mentioning(str(other.dir))  # parts it started live on
        again = other.up()  # finds the leftovers, cleans them, starts afresh
        assert again.returncode == 0, again.stdout + again.stderr
        assert "cleaning up" in again.stdout
        mine = read_env_file(running.dir / "bench.env")
        theirs = read_env_file(other.dir / "bench.env")
        assert mine["RIG_SIM_ROUTER_PORT"] != theirs["RIG_SIM_ROUTER_PORT"]
        assert running.rig("status", "--quiet").returncode == 0
        assert other.rig("status", "--quiet").returncode == 0
        capture = router_session(theirs)  # a pcap stream still open when the sim goes down
        _, stream, _ = capture.exec_command("simrouter capture", timeout=10)
        assert stream.read(24)[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")  # pcap header
        started = Processes(other.dir / "run")
        records = [started.record(name) for name in started.names()]
        assert other.rig("down").returncode == 0
        assert processes_mentioning(str(other.dir)) == []
        assert [r.name for r in records if r is not None and group_members(r.pgid)] == []
        assert other.rig("status", "--quiet").returncode == 3
        assert not (other.dir / "bench.env").exists()
        capture.close()
    finally:
        if controller.poll() is None:
            controller.kill()
        other.rig("down")


@pytest.mark.parametrize(("kind", "suffix"), [("rfc2217", "?ign_set_control"), ("socket", "")])
def test_the_uart_can_be_served_through_ser2net_as_rfc2217_or_raw_tcp(
    tmp_path: Path, kind: str, suffix: str
) -> None:
    sim = make_folder(tmp_path)
    try:
        assert sim.up("--uart", kind).returncode == 0
        env = read_env_file(sim.dir / "bench.env")
        url = env["RIG_SIM_UART_URL"]
        assert url.startswith(f"{kind}://127.0.0.1:") and url.endswith(suffix)
        assert url.split(":")[2].removesuffix(suffix).isdigit()
        hex_path = sim.dir / "images" / "tcp-rx-512.hex"
        with serial.serial_for_url(url, baudrate=115200, timeout=0.5) as uart:
            done = subprocess.run(
                [env["RIG_SIM_IPECMD"], "-TPICD4", f"-TS{env['RIG_SIM_TOOL_SERIAL']}", "-P32MZ2048EFM100",
                 f"-F{hex_path}", "-M", "-OL"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert "Program Succeeded." in done.stdout
            received, deadline = b"", time.monotonic() + 15
            while b"image sha256" not in received and time.monotonic() < deadline:
                received += uart.read(4096)
        assert b"image sha256" in received
        assert "ser2net" in sim.rig("down").stdout
    finally:
        sim.rig("down")
    assert processes_mentioning(str(sim.dir)) == []


def test_up_on_a_running_sim_rebuilds_only_the_images_whose_variant_changed(running: SimFolder) -> None:
    again = running.up()
    assert again.returncode == 0
    assert "already up" in again.stdout and "built image" not in again.stdout
    variant = running.repo / "firmware_configs" / "tcp-rx-512.yaml"
    variant.write_text(variant.read_text() + "# edited\n")
    rebuilt = running.up()
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert [line.split()[-3] for line in rebuilt.stdout.splitlines() if "built image" in line] == [
        "tcp-rx-512"
    ]


def test_build_writes_the_variant_hex_with_a_stamp_naming_its_inputs(running: SimFolder) -> None:
    variant = running.repo / "firmware_configs" / "tcp-rx-1460.yaml"
    result = running.rig("build", str(variant))
    assert result.returncode == 0, result.stderr
    hex_path = running.dir / "images" / "tcp-rx-1460.hex"
    sha = hashlib.sha256(hex_path.read_bytes()).hexdigest()
    assert result.stdout.split() == ["built", str(variant), "image", "sha256", sha]
    stamp = json.loads((hex_path.parent / "tcp-rx-1460.hex.build.json").read_text())
    assert (stamp["variant"], stamp["hex_sha256"], stamp["client_id"]) == ("tcp-rx-1460", sha, "hub-sim-0001")
    # Its forensic image beside it: the same build at Mbed TLS debug level 4.
    forensic = running.dir / "images" / "tcp-rx-1460.forensic.hex"
    stamp = json.loads((hex_path.parent / "tcp-rx-1460.forensic.hex.build.json").read_text())
    assert (stamp["variant"], stamp["forensic"]) == ("tcp-rx-1460", True)
    assert stamp["hex_sha256"] == hashlib.sha256(forensic.read_bytes()).hexdigest() != sha
    level = bytes([15]) + b"debug_threshold" + (1).to_bytes(2, "little")
    assert level + b"4" in flash_from_hex(forensic) and level + b"2" in flash_from_hex(hex_path)


def test_up_never_writes_a_hex_it_did_not_build_and_says_so(running: SimFolder) -> None:
    # The variants' own image.hex is the real firmware build's output: the sim never writes there.
    assert not (running.repo / "build").exists()
    real = running.repo / "build" / "firmware" / "tcp-rx-1024.hex"
    real.parent.mkdir(parents=True)
    real.write_bytes(b":020000041D00DD\n:00000001FF\n")
    # A HEX in the sim's own images folder that the sim did not write is left alone too.
    foreign = running.dir / "images" / "tcp-rx-512.hex"
    (running.dir / "images" / "tcp-rx-512.hex.build.json").unlink()
    foreign.write_bytes(b"a HEX put here by hand\n")
    variant = running.repo / "firmware_configs" / "tcp-rx-512.yaml"
    variant.write_text(variant.read_text() + "# edited: stale, the sim would rebuild it\n")
    again = running.up()
    assert again.returncode == 0, again.stderr
    assert f"{foreign}: left alone — this HEX was not written by the simulated bench" in again.stdout
    assert foreign.read_bytes() == b"a HEX put here by hand\n"
    assert real.read_bytes() == b":020000041D00DD\n:00000001FF\n"
    built = running.rig("build", str(variant))
    assert built.returncode == 2 and "left alone" in built.stderr
    foreign.unlink()  # the module's later tests use the sim's own image again
    assert running.rig("build", str(variant)).returncode == 0


def test_up_refuses_a_bench_file_that_is_not_simulated(tmp_path: Path) -> None:
    sim = make_folder(tmp_path)
    text = sim.bench.read_text().replace("kind: simulated", "kind: real")
    sim.bench.write_text(text)
    result = sim.up()
    assert result.returncode == 2
    assert "kind: `real`: the simulated bench only runs a bench file of `kind: simulated`" in result.stderr
    assert not (sim.dir / "sim.json").exists()


def test_up_writes_a_bench_file_of_its_own_that_names_this_sim_alone(running: SimFolder) -> None:
    own = running.dir / "bench.yaml"
    saved = os.environ.pop("RIG_SIM_DIR", None)
    try:  # no $RIG_SIM_DIR: the file alone finds its sim
        bench = load_bench(own).model
    finally:
        if saved is not None:
            os.environ["RIG_SIM_DIR"] = saved
    assert bench.kind == "simulated" and bench.state_dir == running.dir / "state"
    assert bench.images is not None and bench.images.dir == running.dir / "images"
    assert bench.provider is not None and bench.provider.env_file == running.dir / "bench.env"
    assert bench.provider.up[bench.provider.up.index("--dir") + 1] == str(running.dir)
    assert bench.dut.uart.url == read_env_file(running.dir / "bench.env")["RIG_SIM_UART_URL"]
    assert "RIG_SIM_DIR" not in own.read_text()
