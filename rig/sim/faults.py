"""`rig sim fault NAME [ARG] [--clear]`: break one part of a running sim the way hardware breaks.

Each fault acts on a part's real endpoint, so the harness meets it through its ordinary drivers:

- `programmer-no-target`: the programmer finds no target voltage, prints its failure text and still
  exits 0 (the real tool does, bench.md §1.1). A flag file the programmer reads, `DIR/faults/…`.
- `programmer-missing`: the `ipecmd` executable is gone (moved aside; `--clear` puts it back).
- `uart-gone SECONDS`: the UART port disappears for SECONDS while the firmware runs on (unplugged
  USB-UART bridge); it comes back by itself.
- `router-ssh-down`: the router's sshd is stopped; `--clear` starts it again on the same port and keys.
- `cloud-down`: the AWS IoT Core stand-in resets every new connection (`DIR/cloud/cloud.down`).
- `cloud-mode silent|alert|close`: how the stand-in answers a failed handshake; `--clear` = `silent`.
- `dut-reboot AFTER_S`: the hub's next boot resets itself AFTER_S seconds after it started (a watchdog
  reset, cause WDTO in its boot banner), once; `--clear` disarms it.
- `uplink-down PATH`: the router's uplink PATH is cut (nothing crosses it; a split-TCP terminal still
  answers the hub's SYN); `--clear` restores it (every cut uplink without PATH).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from rig.errors import ConfigError, InfrastructureError
from rig.sim import sshd
from rig.sim.board import BoardClient
from rig.sim.procs import Processes


class RunningSim(Protocol):
    """What a fault acts on: a running sim's folder, processes, board and state (`rig.sim.orchestrate.Sim`)."""

    dir: Path
    processes: Processes

    def is_up(self) -> bool: ...

    def board(self) -> BoardClient: ...

    def state(self) -> dict[str, Any]: ...

    def start_part(self, name: str, argv: list[str], port: int) -> None: ...


FAULTS = (
    "programmer-no-target",
    "programmer-missing",
    "uart-gone",
    "router-ssh-down",
    "cloud-down",
    "cloud-mode",
    "dut-reboot",
    "uplink-down",
)


def inject(sim: RunningSim, name: str, arg: str | None, clear: bool) -> str:
    """Apply (or clear) fault `name`; returns one line saying what now holds."""
    if name not in FAULTS:
        raise ConfigError(f"unknown fault {name!r}; one of: {', '.join(FAULTS)}")
    if not sim.is_up():
        raise InfrastructureError(f"no sim is up in {sim.dir} — run `rig sim up` first")
    flags = sim.dir / "faults"
    flags.mkdir(exist_ok=True)
    if name == "programmer-no-target":
        flag = flags / name
        if clear:
            flag.unlink(missing_ok=True)
            return "programmer finds the target again"
        flag.write_text("on\n")
        return "programmer: target not found (exit 0 with failure text)"
    if name == "programmer-missing":
        ipecmd, aside = sim.dir / "bin" / "ipecmd", sim.dir / "bin" / ".ipecmd.missing"
        if clear:
            if aside.exists():
                aside.replace(ipecmd)
            return f"programmer executable back at {ipecmd}"
        if ipecmd.exists():
            ipecmd.replace(aside)
        return f"programmer executable {ipecmd} is gone"
    if name == "uart-gone":
        if clear:
            return "uart-gone clears by itself when its time is over"
        seconds = _number(arg, "uart-gone SECONDS")
        sim.board().request("uart_gone", seconds=seconds)
        return f"UART port gone for {seconds:g} s"
    if name == "router-ssh-down":
        return _router_ssh(sim, up=clear)
    if name == "dut-reboot":
        if clear:
            sim.board().request("reboot_after", seconds=0)
            return "the hub boots without resetting itself"
        seconds = _number(arg, "dut-reboot AFTER_S")
        sim.board().request("reboot_after", seconds=seconds)
        return f"the hub's next boot resets itself {seconds:g} s after it starts (reset cause WDTO)"
    if name == "uplink-down":
        return _uplink(sim, arg, up=clear)
    from rig.sim.cloud import set_down, write_mode

    if name == "cloud-down":
        set_down(sim.dir / "cloud", not clear)
        return "cloud endpoint serves again" if clear else "cloud endpoint resets every new connection"
    mode = "silent" if clear else (arg or "")
    write_mode(sim.dir / "cloud", mode)
    return f"cloud answers a failed handshake: {mode}"


def _number(arg: str | None, usage: str) -> float:
    try:
        value = float(arg or "")
    except ValueError:
        raise ConfigError(f"fault {usage}: expected a number of seconds, got {arg!r}") from None
    if value <= 0:
        raise ConfigError(f"fault {usage}: SECONDS must be positive")
    return value


def _router_ssh(sim: RunningSim, *, up: bool) -> str:
    if not up:
        sim.processes.stop("sshd")
        (sim.dir / "faults" / "router-ssh-down").write_text("on\n")
        return "router sshd stopped"
    (sim.dir / "faults" / "router-ssh-down").unlink(missing_ok=True)
    if sim.processes.alive("sshd"):
        return "router sshd already running"
    port = int(sim.state()["ports"]["ssh"])
    setup = sshd.prepare(sim.dir / "ssh", port, sim.dir / "bin")
    sim.start_part("sshd", setup.argv(), port)
    return f"router sshd back on 127.0.0.1:{port}"


def _uplink(sim: RunningSim, path: str | None, *, up: bool) -> str:
    from rig.sim.simrouter import RouterDown, request

    folder = sim.dir / "router"
    try:
        status = request(folder, {"cmd": "status"})
        paths = list(status.get("paths", {}))
        if not up and not path:
            raise ConfigError(f"fault uplink-down PATH: which path? one of: {', '.join(paths)}")
        targets = [path] if path else list(status.get("down", []))
        for target in targets:
            answer = request(folder, {"cmd": "uplink", "path": target, "up": up})
            if not answer.get("ok"):
                raise ConfigError(f"fault uplink-down: unknown path {target!r}; one of: {', '.join(paths)}")
    except RouterDown as exc:
        raise InfrastructureError(f"the sim's router: {exc}") from None
    if up:
        return f"uplink {', '.join(targets)} restored" if targets else "no uplink was down"
    return f"uplink {path} is cut: nothing crosses it"


def active_faults(folder: Path) -> list[str]:
    """The faults in force in the sim living in `folder`, for `rig sim status`."""
    active = []
    flags = folder / "faults"
    if (flags / "programmer-no-target").exists():
        active.append("programmer-no-target")
    if (folder / "bin" / ".ipecmd.missing").exists():
        active.append("programmer-missing")
    if (flags / "router-ssh-down").exists():
        active.append("router-ssh-down")
    if (folder / "cloud" / "cloud.down").exists():
        active.append("cloud-down")
    down_file = folder / "router" / "uplinks_down"
    if down_file.is_file():
        active += [f"uplink-down {name}" for name in down_file.read_text().split()]
    mode_file = folder / "cloud" / "cloud.mode"
    if mode_file.exists():
        mode = mode_file.read_text().strip()
        if mode != "silent":
            active.append(f"cloud-mode {mode}")
    return active
