"""`rig sim up | down | status | build`: one simulated bench in one folder, started from real parts.

`up` reads the bench file (`benches/sim.yaml`), picks free ports, generates the PKI and the SSH keys,
builds the hub binary and every variant image whose HEX is missing or stale, then starts the parts in
dependency order and waits until each answers: mosquitto (`rig.sim.broker`), the AWS IoT Core stand-in
(`rig.sim.cloud`), the bench router (`rig.sim.router`), its sshd (`rig.sim.sshd`), the board with the
hub (`rig.sim.board`) and, with `uart="rfc2217"` or `"socket"`, ser2net serving the UART (telnet RFC 2217,
or its raw `tcp` accepter). Last it writes
`DIR/bench.env`, the values the bench file references as `${RIG_SIM_*}`. Everything the harness uses is an
endpoint: the UART path or URL, the `ipecmd` executable, the router's port, key and pinned host key,
the broker and its certificates.

Every started process is recorded in `DIR/run/` (`rig.sim.procs`); `down` stops what is recorded, also
after the controller that started it died. `up` on a folder left dirty by a killed `up` cleans it first.

Folder layout: run/ logs/ broker/ cloud/ router/ ssh/ bin/ board/ hub/ dev/ faults/ sim.json bench.env;
the PKI and the images are shared by the sims of a user (`rig.sim.builds`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rig.config import BenchConfig, load_bench
from rig.errors import ConfigError, InfrastructureError
from rig.sim import programmer, sshd
from rig.sim.board import BoardClient
from rig.sim.procs import Processes, free_port, sweep, wait_listening

Progress = Callable[[str], None]
PORT_LINK = Path("dev/serial/by-id/usb-rig-sim-hub-if00")
PART_ORDER = ("broker", "cloud", "router", "sshd", "board", "ser2net")
START_TIMEOUT_S = 20.0


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class UpOptions:
    """Choices for `rig sim up` that are not in the bench file."""

    uart: str = "pty"  # or "rfc2217" / "socket": ser2net serves the UART as rfc2217:// or socket://
    reenumerate: bool = False
    program_s: float = programmer.DEFAULT_PROGRAM_S
    tool_serial: str = "BURSIM000001"
    firmware_dir: Path | None = None
    name: str | None = None  # the bench's name in DIR/bench.yaml (default: the bench file's)


class Sim:
    """One simulated bench living in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder.resolve()
        self.processes = Processes(self.dir / "run")
        self.logs = self.dir / "logs"

    # ------------------------------------------------------------------ state files

    @property
    def state_file(self) -> Path:
        return self.dir / "sim.json"

    def state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise InfrastructureError(f"{self.state_file}: damaged ({exc}); run `rig sim down`") from None
        return data

    def _save_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def board(self) -> BoardClient:
        return BoardClient(self.dir / "board" / "board.sock", timeout=30)

    # ------------------------------------------------------------------ up

    def up(self, bench_path: Path, options: UpOptions = UpOptions(), progress: Progress = _quiet) -> None:
        """Start every part; returns when all answer. Raises InfrastructureError naming the part."""
        from rig.sim.builds import locked

        bench = simulated_bench(bench_path, self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        with locked(self.dir / ".lock"):  # one `up` or `down` at a time per folder
            if self.is_up():
                progress(f"sim in {self.dir} is already up")
                self._build_stale(bench_path.resolve(), bench, options, progress)
                return
            if self.processes.names():
                progress("cleaning up a sim left behind by an earlier run")
                self._down(progress)
            try:
                self._up(bench_path.resolve(), bench, options, progress)
            except BaseException:
                progress("start failed: stopping what was started")
                self._down(_quiet)
                raise

    def _up(self, bench_path: Path, bench: BenchConfig, options: UpOptions, progress: Progress) -> None:
        from rig.sim.broker import Broker
        from rig.sim.builds import ensure_pki, shared_pki_dir
        from rig.sim.hubbuild import build_hub

        python = sys.executable
        endpoint = bench.cloud.endpoint
        ports = {
            name: free_port() for name in ("ssh", "lan", "cloud", "broker_tls", "broker_plain", "ser2net")
        }
        state: dict[str, Any] = {
            "bench": str(bench_path),
            "ports": ports,
            "endpoint": endpoint,
            "client_id": bench.dut.client_id,
            "uart": options.uart,
            "reenumerate": options.reenumerate,
            "pki": str(shared_pki_dir()),
            "started": time.time(),
        }
        self._save_state(state)

        progress(f"PKI in {state['pki']}")
        pki = ensure_pki(endpoint, Path(state["pki"]))
        progress("building the hub binary")
        hub = build_hub(self.dir / "hub")
        self._build_stale(bench_path, bench, options, progress)

        progress(f"starting mosquitto on 127.0.0.1:{ports['broker_tls']} (TLS) / {ports['broker_plain']}")
        broker = Broker(self.dir / "broker", pki, ports["broker_tls"], ports["broker_plain"])
        broker.start(timeout=START_TIMEOUT_S)
        assert broker.pid is not None
        self.processes.adopt("broker", broker.pid, ["mosquitto"], self.dir / "broker" / "mosquitto.log")

        progress(f"starting the AWS IoT Core stand-in on 127.0.0.1:{ports['cloud']}")
        self.start_part(
            "cloud",
            [python, "-m", "rig.sim.cloud", "--dir", str(self.dir / "cloud"), "--port", str(ports["cloud"]),
             "--pki", str(pki.directory), "--broker-port", str(ports["broker_plain"]), "--endpoint", endpoint],
            ports["cloud"],
        )  # fmt: skip
        progress(f"starting the bench router (LAN side 127.0.0.1:{ports['lan']})")
        self.start_part(
            "router",
            [python, "-m", "rig.sim.router", "--dir", str(self.dir / "router"), "--bench", str(bench_path),
             "--lan-port", str(ports["lan"]), "--cloud-port", str(ports["cloud"])],
            ports["lan"],
        )  # fmt: skip
        progress(f"starting the router's sshd on 127.0.0.1:{ports['ssh']}")
        sshd.install_simrouter(self.dir / "bin", self.dir / "router", python)
        setup = sshd.prepare(self.dir / "ssh", ports["ssh"], self.dir / "bin")
        self.start_part("sshd", setup.argv(), ports["ssh"])

        progress("installing the programmer (ipecmd)")
        ipecmd = programmer.install(self.dir, python)
        programmer.write_settings(
            self.dir,
            tool=bench.programmer.tool or "ICD4",
            serial=options.tool_serial,
            part=bench.dut.part,
            board_socket=self.dir / "board" / "board.sock",
            program_s=options.program_s,
        )
        progress("powering the board")
        link = self.dir / PORT_LINK
        board_argv = [python, "-m", "rig.sim.board", "--dir", str(self.dir / "board"), "--hub", str(hub),
                      "--lan", f"127.0.0.1:{ports['lan']}", "--port-link", str(link),
                      "--baud", str(bench.dut.uart.baud)]  # fmt: skip
        if options.reenumerate:
            board_argv.append("--reenumerate")
        self.processes.start("board", board_argv, log=self.logs / "board.log")
        self._wait_board()
        uart_url = str(link)
        if options.uart in ("rfc2217", "socket"):
            from rig.sim.ser2net import start_ser2net

            progress(f"serving the UART as {options.uart}://127.0.0.1:{ports['ser2net']} (ser2net)")
            uart_url = start_ser2net(
                self,
                self.dir / "ser2net",
                link,
                ports["ser2net"],
                bench.dut.uart.baud,
                raw=options.uart == "socket",
            )

        env = {
            "RIG_SIM_DIR": str(self.dir),
            "RIG_SIM_UART_URL": uart_url,
            "RIG_SIM_REENUMERATES": "true" if options.reenumerate else "false",
            "RIG_SIM_TOOL_SERIAL": options.tool_serial,
            "RIG_SIM_IPECMD": str(ipecmd),
            "RIG_SIM_ROUTER_PORT": str(ports["ssh"]),
            "RIG_SIM_ROUTER_USER": setup.user,
            "RIG_SIM_ROUTER_KEY": str(setup.bench_key),
            "RIG_SIM_ROUTER_HOST_KEY": setup.host_key_line,
            "RIG_SIM_ENDPOINT": endpoint,
            "RIG_SIM_BROKER_PORT": str(ports["broker_tls"]),
            "RIG_SIM_EVENTS_CA": str(pki.root_pem),
            "RIG_SIM_EVENTS_CERT": str(pki.observer_pem),
            "RIG_SIM_EVENTS_KEY": str(pki.observer_key),
        }
        lines = ["# Written by `rig sim up`: the endpoints of this simulated bench.", ""]
        lines += [f"{key}={value}" for key, value in env.items()]
        tmp = self.dir / "bench.env.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.dir / "bench.env")
        state["env"] = env
        state["up"] = True
        self._save_state(state)
        self.write_bench_file(bench_path, options)
        progress(f"sim up in {self.dir} (its own bench file: {self.bench_file})")

    @property
    def bench_file(self) -> Path:
        return self.dir / "bench.yaml"

    def write_bench_file(self, bench_path: Path, options: UpOptions) -> Path:
        """DIR/bench.yaml: the bench file with this sim's folder in it, so that it names this sim alone.

        `benches/sim.yaml` finds its sim through `$RIG_SIM_DIR`; a pool of sims in one run needs one
        bench file each, with its own name (its lease and state), folder and provider commands.
        """
        text = _SIM_DIR_REF.sub(str(self.dir), bench_path.read_text(encoding="utf-8"))
        data = yaml.safe_load(text)
        if options.name:
            data["name"] = options.name
        firmware_dir = (options.firmware_dir or bench_path.parent.parent / "firmware_configs").resolve()
        sim = ["{python}", "-m", "rig", "sim"]
        up = [*sim, "up", "--bench", "{bench}", "--dir", str(self.dir), "--firmware-dir", str(firmware_dir)]
        up += [
            "--name",
            str(data["name"]),
            "--uart",
            options.uart,
            "--program-seconds",
            f"{options.program_s:g}",
        ]
        data["provider"] = {
            "up": [*up, "--reenumerate"] if options.reenumerate else up,
            "down": [*sim, "down", "--dir", str(self.dir)],
            "status": [*sim, "status", "--dir", str(self.dir), "--quiet"],
            "env_file": str(self.dir / "bench.env"),
        }
        header = f"# Written by `rig sim up` from {bench_path.resolve()}: the bench file of the sim in {self.dir}.\n"
        tmp = self.bench_file.with_suffix(".tmp")
        tmp.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        tmp.replace(self.bench_file)
        return self.bench_file

    def _build_stale(
        self, bench_path: Path, bench: BenchConfig, options: UpOptions, progress: Progress
    ) -> None:
        """Build the image of every variant whose HEX is missing or was not built for this sim."""
        from rig.sim.builds import NotWrittenBySim

        firmware_dir = options.firmware_dir or bench_path.parent.parent / "firmware_configs"
        if firmware_dir.is_dir():
            for variant_file in sorted(firmware_dir.glob("*.yaml")):
                try:
                    self.build(variant_file, progress, only_if_stale=True, bench=bench)
                except NotWrittenBySim as exc:
                    progress(str(exc))

    def start_part(self, name: str, argv: list[str], port: int) -> None:
        """Start part `name` (its output in `logs/<name>.log`) and return once it listens on `port`."""
        log = self.logs / f"{name}.log"
        self.processes.start(name, argv, log=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                wait_listening(port, 0.2, what=name, log=log)
                return
            except InfrastructureError:
                if not self.processes.alive(name):
                    tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
                    raise InfrastructureError(
                        f"sim part {name} exited at start — see {log}: {' | '.join(tail)}"
                    ) from None
                if time.monotonic() > deadline:
                    raise

    def _wait_board(self) -> None:
        sock = self.dir / "board" / "board.sock"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not sock.exists():
            if not self.processes.alive("board") or time.monotonic() > deadline:
                raise InfrastructureError(f"the board did not start — see {self.logs / 'board.log'}")
            time.sleep(0.05)
        self.board().request("status")

    # ------------------------------------------------------------------ images

    def build(
        self,
        variant_file: Path,
        progress: Progress = _quiet,
        *,
        only_if_stale: bool = False,
        bench: BenchConfig | None = None,
    ) -> str | None:
        """Build a variant's HEX into the bench's `images.dir` with the sims' PKI; its sha256, None if fresh."""
        from rig.sim.builds import build_variant, ensure_pki

        if bench is None:
            bench_file = self.state().get("bench")
            if not bench_file:
                raise ConfigError(f"{self.dir}: no sim here yet — run `rig sim up` (it also builds images)")
            bench = simulated_bench(Path(bench_file), self.dir)
        assert bench.images is not None  # simulated_bench() checked it
        endpoint, client_id = bench.cloud.endpoint, bench.dut.client_id
        pki_dir = self.state().get("pki")
        pki = ensure_pki(endpoint, Path(pki_dir) if pki_dir else None)
        hex_path, sha = build_variant(
            variant_file, pki, client_id, endpoint, bench.images.dir, only_if_stale=only_if_stale
        )
        if sha is not None:
            progress(f"built image {variant_file.stem} → {hex_path}")
        return sha

    # ------------------------------------------------------------------ down and status

    def down(self, progress: Progress = _quiet) -> list[str]:
        """Stop every recorded part (also the broker by its own pid file); the names stopped."""
        from rig.sim.builds import locked

        if not self.dir.is_dir():
            return []
        with locked(self.dir / ".lock"):
            return self._down(progress)

    def _down(self, progress: Progress) -> list[str]:
        stopped = self.processes.stop_all()
        broker_pid = self.dir / "broker" / "mosquitto.pid"
        if broker_pid.is_file():
            pid = int(broker_pid.read_text().split()[0])
            try:
                self.processes.adopt("broker", pid, ["mosquitto"], broker_pid)
            except ProcessLookupError:
                pass
            else:
                if self.processes.stop("broker"):
                    stopped.append("broker")
            broker_pid.unlink(missing_ok=True)
        left = sweep(self.dir)
        if left:
            progress(f"processes {left} naming {self.dir} survived SIGKILL")
        (self.dir / PORT_LINK).unlink(missing_ok=True)
        (self.dir / "bench.env").unlink(missing_ok=True)
        state = self.state()
        if state:
            state["up"] = False
            self._save_state(state)
        for name in stopped:
            progress(f"stopped {name}")
        return stopped

    def is_up(self) -> bool:
        state = self.state()
        if not state.get("up"):
            return False
        # A part stopped on purpose by a fault (`router-ssh-down`) does not make the sim down.
        faulted = {"sshd"} if (self.dir / "faults" / "router-ssh-down").exists() else set()
        return all(self.processes.alive(n) for n in self._expected_parts(state) if n not in faulted)

    def _expected_parts(self, state: dict[str, Any]) -> list[str]:
        parts = ["broker", "cloud", "router", "sshd", "board"]
        return [*parts, "ser2net"] if state.get("uart") in ("rfc2217", "socket") else parts

    def status(self) -> dict[str, Any]:
        """Each part (running or not, pid), the active uplink, the image in the hub, active faults."""
        from rig.sim.faults import active_faults

        state = self.state()
        parts = {}
        for name in self._expected_parts(state):
            record = self.processes.record(name)
            parts[name] = {"running": self.processes.alive(name), "pid": record.pid if record else None}
        result: dict[str, Any] = {"dir": str(self.dir), "up": self.is_up(), "parts": parts,
                                  "ports": state.get("ports", {})}  # fmt: skip
        result["uplink"] = self._uplink() if parts.get("router", {}).get("running") else None
        if parts.get("board", {}).get("running"):
            try:
                board = self.board().request("status")
            except InfrastructureError as exc:
                board = {"error": str(exc)}
            flash = board.get("flash") or {}
            result["board"] = board
            result["image"] = self._image_name(flash.get("source"))
        result["faults"] = active_faults(self.dir)
        return result

    def _uplink(self) -> str:
        argv = [sys.executable, "-m", "rig.sim.simrouter", "--dir", str(self.dir / "router"), "status"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return "unknown (simrouter status timed out)"
        return done.stdout.strip() if done.returncode == 0 else f"unknown ({done.stderr.strip()})"

    def _image_name(self, source: str | None) -> str | None:
        from rig.sim.builds import variant_of

        if source is None:
            return None
        name = variant_of(source)
        return f"{name} ({Path(source).name})" if name else Path(source).name


_SIM_DIR_REF = re.compile(r"\$\{RIG_SIM_DIR(?::-[^}]*)?\}")


def simulated_bench(path: Path, sim_dir: Path | None = None) -> BenchConfig:
    """The bench file at `path`, which must declare itself simulated and say where its images go.

    `sim_dir`: the sim the file is read for; its `${RIG_SIM_DIR}`s name that folder (`rig sim up --dir D`
    builds D's images into D, whatever $RIG_SIM_DIR says)."""
    env = None if sim_dir is None else {**os.environ, "RIG_SIM_DIR": str(sim_dir)}
    loaded = load_bench(path, env)
    bench = loaded.model
    if not bench.simulated:
        raise ConfigError(
            loaded.source.problem(
                ("kind",), f"`{bench.kind}`: the simulated bench only runs a bench file of `kind: simulated`"
            )
        )
    if bench.images is None:
        raise ConfigError(
            f"{loaded.source.display}: no `images.dir` — the simulated bench builds its images into a folder "
            "of its own and never into the variants' image.hex (the real firmware build's output)"
        )
    return bench


def default_dir() -> Path:
    """`$RIG_SIM_DIR`, else `.rig-sim` in the current folder (what benches/sim.yaml points at)."""
    return Path(os.environ.get("RIG_SIM_DIR") or ".rig-sim")
