"""`rig sim`: bring the simulated bench up and down, look at it, build its images, break it on purpose.

The group is added to the `rig` command by `rig.cli` (module-level `commands`). Problems are
`RigError`s: bad input exits 2, a part that does not start exits 3. `benches/sim.yaml` runs these
commands as its `provider`, from the bench file's folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from rig.config import DEFAULT_BENCH
from rig.sim.faults import FAULTS, inject
from rig.sim.orchestrate import Sim, UpOptions, default_dir

console = Console(highlight=False, soft_wrap=True)

dir_option = click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="the sim's folder (default: $RIG_SIM_DIR or ./.rig-sim)",
)


def _sim(folder: Path | None) -> Sim:
    return Sim(folder or default_dir())


@click.group()
def sim() -> None:
    """The simulated bench: virtual hub, ipecmd programmer, SSH router, AWS IoT Core stand-in."""


@sim.command()
@dir_option
@click.option(
    "--bench",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=DEFAULT_BENCH,
    show_default=True,
    help="the bench file (link profiles, DUT, programmer, cloud)",
)
@click.option("--uart", type=click.Choice(["pty", "rfc2217", "socket"]), default="pty", show_default=True,
              help="serve the UART as a pty symlink, or through ser2net as rfc2217:// or socket://")  # fmt: skip
@click.option("--reenumerate", is_flag=True, help="a reset removes the UART port and brings it back")
@click.option("--program-seconds", type=float, default=3.0, show_default=True,
              help="how long the programmer takes to program an image")  # fmt: skip
@click.option("--firmware-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="variant files to build images for (default: firmware_configs next to benches/)")  # fmt: skip
@click.option("--name", default=None, help="the bench's name in DIR/bench.yaml (default: the bench file's)")
def up(
    folder: Path | None,
    bench: Path,
    uart: str,
    reenumerate: bool,
    program_seconds: float,
    firmware_dir: Path | None,
    name: str | None,
) -> None:
    """Start every part, build missing or stale images, write DIR/bench.env and DIR/bench.yaml (this sim's
    own bench file); return when all answer."""
    simulation = _sim(folder)
    start = time.monotonic()

    def progress(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - start:6.1f}s[/] {message}")

    options = UpOptions(
        uart=uart, reenumerate=reenumerate, program_s=program_seconds, firmware_dir=firmware_dir, name=name
    )
    simulation.up(bench, options, progress)
    if folder is not None and simulation.dir != default_dir().resolve():
        console.print(f"bench files read it with: export RIG_SIM_DIR={simulation.dir}")


@sim.command()
@dir_option
def down(folder: Path | None) -> None:
    """Stop every part this sim started (also after the controller that started them crashed)."""
    stopped = _sim(folder).down()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@sim.command()
@dir_option
@click.option("--quiet", is_flag=True, help="print nothing; exit 0 when the sim is up, 3 when not")
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON")
def status(folder: Path | None, quiet: bool, as_json: bool) -> None:
    """Each part, the active uplink, the image in the hub, the faults in force; exit 0 when up."""
    simulation = _sim(folder)
    if quiet:
        raise SystemExit(0 if simulation.is_up() else 3)
    report = simulation.status()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        table = Table("part", "state", "pid", "port", box=None)
        ports = report.get("ports", {})
        port_of = {
            "broker": "broker_tls",
            "cloud": "cloud",
            "router": "lan",
            "sshd": "ssh",
            "ser2net": "ser2net",
        }
        for name, part in report["parts"].items():
            state = "[green]running[/]" if part["running"] else "[red]stopped[/]"
            table.add_row(name, state, str(part["pid"] or "-"), str(ports.get(port_of.get(name, ""), "-")))
        console.print(table)
        console.print(f"uplink: {report.get('uplink') or '-'}")
        board = report.get("board") or {}
        console.print(f"hub:    {board.get('state', '-')}, image {report.get('image') or 'none'}")
        if board:
            console.print(f"uart:   {board.get('port')}: {board.get('uart_written', 0)} B sent, "
                          f"{board.get('uart_dropped', 0)} B dropped (nobody reading)")  # fmt: skip
        for problem in board.get("errors", []):
            console.print(f"[red]board:  {problem}[/]")
        console.print(f"faults: {', '.join(report['faults']) or 'none'}")
    raise SystemExit(0 if report["up"] else 3)


@sim.command()
@dir_option
@click.argument(
    "variants", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
def build(folder: Path | None, variants: tuple[Path, ...]) -> None:
    """Build the HEX image of each VARIANT file into the sim bench's images.dir, for this sim's PKI."""
    simulation = _sim(folder)
    for variant in variants:
        sha = simulation.build(variant)
        console.print(f"[green]built[/] {variant}  image sha256 {sha}")


@sim.command()
@dir_option
@click.argument("name", type=click.Choice(FAULTS))
@click.argument("arg", required=False)
@click.option("--clear", is_flag=True, help="undo the fault")
def fault(folder: Path | None, name: str, arg: str | None, clear: bool) -> None:
    """Inject a fault: programmer-no-target, programmer-missing, uart-gone SECONDS, router-ssh-down,
    cloud-down, cloud-mode silent|alert|close, dut-reboot AFTER_S, uplink-down PATH."""
    console.print(inject(_sim(folder), name, arg, clear))


@sim.group()
def pool() -> None:
    """Several simulated benches at once, for a pool run (`pytest -n N --bench DIR/pool.yaml`)."""


@pool.command("up")
@click.argument("count", type=click.IntRange(1, 16))
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path(".rig-sim/pool"),
              show_default=True, help="the pool's folder: one sim in DIR/pool-<i> each, and DIR/pool.yaml")  # fmt: skip
@click.option("--bench", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=DEFAULT_BENCH,
              show_default=True, help="the bench file each sim is made from")  # fmt: skip
@click.option("--program-seconds", type=float, default=3.0, show_default=True,
              help="how long each sim's programmer takes to program an image")  # fmt: skip
def pool_up(count: int, folder: Path, bench: Path, program_seconds: float) -> None:
    """Start COUNT sims (each its own folder, ports and bench file `pool-<i>`) and write DIR/pool.yaml."""
    start = time.monotonic()
    members = []
    for index in range(count):
        name = f"pool-{index}"

        def progress(message: str, name: str = name) -> None:
            console.print(f"[dim]{time.monotonic() - start:6.1f}s[/] {name}: {message}")

        simulation = _sim(folder / name)
        simulation.up(bench, UpOptions(program_s=program_seconds, name=name), progress)
        members.append(simulation.bench_file.relative_to(folder.resolve()))
    for stale in sorted(folder.glob("pool-*")):
        if stale.name not in {m.parts[0] for m in members} and Sim(stale).is_up():
            console.print(f"[yellow]{stale} is up too, but not in this pool of {count}[/]")
    listing = "".join(f"  - {member}\n" for member in members)
    header = f"# Written by `rig sim pool up {count}`: the simulated benches of this folder, as one pool.\n"
    (folder / "pool.yaml").write_text(f"{header}pool:\n{listing}", encoding="utf-8")
    console.print(
        f"pool of {count}: {folder / 'pool.yaml'}  (pytest -n {count} --bench {folder / 'pool.yaml'})"
    )


@pool.command("down")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path(".rig-sim/pool"),
              show_default=True, help="the pool's folder")  # fmt: skip
def pool_down(folder: Path) -> None:
    """Stop every sim of the pool's folder."""
    for member in sorted(folder.glob("pool-*")):
        stopped = Sim(member).down()
        console.print(
            f"{member.name}: " + (f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
        )


commands = [sim]
