"""`rig bench check|lock`, `rig flash`, `rig path`, `rig uart`, `rig reset`: the bench by hand.

Thin commands over `rig.hil.bench.Bench`: each loads the bench file (`--bench`, default the simulated
bench), takes the lease for what it changes, and prints what happened. A bench problem exits 3 with
a line naming the part and what to check (the root command prints `RigError`s).
"""

from __future__ import annotations

import re
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rig.config import DEFAULT_BENCH, BenchConfig, Loaded, VariantConfig, load_bench, load_variant
from rig.drivers.lease import describe
from rig.errors import ConfigError, InfrastructureError
from rig.hil.bench import Bench, Lease, make_lease

out = Console(highlight=False, soft_wrap=True)

bench_option = click.option(
    "--bench",
    "bench_file",
    type=click.Path(path_type=Path),
    default=DEFAULT_BENCH,
    show_default=True,
    help="bench file",
)


def _load(bench_file: Path) -> Loaded[BenchConfig]:
    return load_bench(bench_file)


# ------------------------------------------------------------------------------------------ bench


@click.group("bench")
def bench() -> None:
    """Check the bench's parts; show or break its lease."""


@bench.command("check")
@bench_option
def bench_check(bench_file: Path) -> None:
    """Preflight: every part answering, router on its baseline, each path's uplink reaching the cloud,
    lease free (exit 0 or 3)."""
    loaded = _load(bench_file)
    results = Bench(loaded).preflight(probes=True)
    table = Table(title=f"bench {loaded.model.name} ({loaded.source.display})", title_justify="left")
    table.add_column("part")
    table.add_column("")
    table.add_column("detail", overflow="fold")
    table.add_column("s", justify="right")
    for result in results:
        mark = "[dim]skip[/]" if result.skipped else "[green]ok[/]" if result.ok else "[bold red]FAIL[/]"
        table.add_row(result.part, mark, Text(result.detail), f"{result.seconds:.2f}")
    out.print(table)
    failed = [r for r in results if not r.ok]
    if failed:
        parts = ", ".join(r.part for r in failed)
        raise InfrastructureError(
            f"bench {loaded.model.name}: {len(failed)} of {len(results)} checks failed: {parts} — see the table"
        )


@bench.group("lock")
def lock() -> None:
    """The bench lease: who holds it; break it when its run is gone."""


def _lease(bench_file: Path) -> Lease:
    loaded = _load(bench_file)
    return make_lease(loaded.model, loaded.path.resolve().parent, "manual")


@lock.command("status")
@bench_option
def lock_status(bench_file: Path) -> None:
    """Who holds the bench's lease (or `free`)."""
    lease = _lease(bench_file)
    owner = lease.owner()
    out.print(f"bench {lease.bench_name}: " + (f"held by {describe(owner)}" if owner else "free"))


@lock.command("break")
@bench_option
def lock_break(bench_file: Path) -> None:
    """Remove the bench's lease, whoever holds it (for a run that is known to be gone)."""
    lease = _lease(bench_file)
    removed = lease.break_()
    if removed is None:
        out.print(f"bench {lease.bench_name}: no lease to break")
    else:
        out.print(f"bench {lease.bench_name}: broke the lease of {describe(removed)}")


# ------------------------------------------------------------------------------------------ flash


def _variant(name: str, firmware_dir: Path) -> VariantConfig:
    path = Path(name)
    if not path.suffix:
        path = firmware_dir / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in firmware_dir.glob("*.yaml"))) or "none"
        raise ConfigError(f"variant {name!r}: no file {path} (variants in {firmware_dir}: {known})")
    return load_variant(path).model


@click.command("flash")
@click.argument("variant")
@bench_option
@click.option(
    "--firmware-dir", type=click.Path(path_type=Path), default=Path("firmware_configs"), show_default=True
)
@click.option("--force", is_flag=True, help="program even when the DUT already runs this image")
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=None, help="folder for the tool's output"
)
def flash(variant: str, bench_file: Path, firmware_dir: Path, force: bool, out_dir: Path | None) -> None:
    """Program VARIANT (a name in --firmware-dir or a variant file) into the DUT, unless it runs it already."""
    chosen = _variant(variant, firmware_dir)
    out_dir = out_dir or Path("results") / "flash" / f"{chosen.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with Bench(_load(bench_file)).hold(uart=not force, router=False, cloud=False) as held:
        result = held.ensure_image(chosen, out_dir, force=force)
    if result.skipped:
        out.print(f"[green]already there[/]: the DUT runs {chosen.name} (sha256 {result.image_sha256[:12]}…)")
    else:
        tries = "1 attempt" if result.attempts == 1 else f"{result.attempts} attempts"
        out.print(
            f"[green]programmed[/] {chosen.name} (sha256 {result.image_sha256[:12]}…) in {result.seconds:.1f} s, "
            f"{tries}; the tool's output: {result.transcript}"
        )


# ------------------------------------------------------------------------------------------- path


@click.command("path")
@click.argument("name", required=False)
@bench_option
def path(name: str | None, bench_file: Path) -> None:
    """Show the active path, or select NAME and verify it (the next run restores the baseline)."""
    loaded = _load(bench_file)
    held = Bench(loaded)
    if name is None:
        with held.router:
            current = held.router.current()
        baseline = loaded.model.baseline
        note = "" if current == baseline else f" (baseline: {baseline})"
        out.print(f"{current or 'unknown: no path verify command matches'}{note}")
        return
    with held.hold(uart=False, session=False, cloud=False):
        seconds = held.select_path(name)
    out.print(f"[green]{name}[/] selected and verified in {seconds:.2f} s")


# ------------------------------------------------------------------------------------------- uart

# Handshake landmarks in Mbed TLS debug output and the firmware's own lines (mbedtls-logs.md).
_STYLES = (
    (re.compile(r"client state: *\S+|handshake state: .*|server state: *\S+"), "bold cyan"),
    (re.compile(r"[=<]= *handshake\b.*"), "bold green"),
    (
        re.compile(r"returned -0x[0-9a-fA-F]+.*|\balert\b.*|\b(error|failed|fatal)\b.*", re.IGNORECASE),
        "bold red",
    ),
    (re.compile(r"in_left: *\d+, nb_want: *\d+"), "yellow"),
)


def styled(line: str, extra: tuple[tuple[re.Pattern[str], str], ...] = ()) -> Text:
    """A UART line with its handshake landmarks highlighted."""
    text = Text(line)
    for pattern, style in (*_STYLES, *extra):
        text.highlight_regex(pattern, style)
    return text


class _Stop(Exception):
    pass


@click.command("uart")
@bench_option
@click.option(
    "--out", "out_file", type=click.Path(path_type=Path), default=None, help="record the raw bytes to FILE"
)
@click.option("--seconds", type=float, default=None, help="stop after N seconds (default: Ctrl-C)")
@click.option(
    "--reset", "reset_first", is_flag=True, help="reset the DUT once the view is open (watch it boot)"
)
def uart(bench_file: Path, out_file: Path | None, seconds: float | None, reset_first: bool) -> None:
    """Live view of the DUT's UART with handshake states highlighted; --out records the raw bytes."""
    loaded = _load(bench_file)
    extra = (
        (re.compile(loaded.model.dut.banner_sha256), "bold magenta"),
        (re.compile(loaded.model.dut.mqtt_connected), "bold green"),
    )
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
    recording = Path(tempfile.mkdtemp(prefix=".uart-", dir=out_file.parent)) if out_file else None
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, on_term)
    lines = 0
    start = time.monotonic()
    try:
        with Bench(loaded).hold(router=False, cloud=False) as held:
            if recording is not None:
                held.uart.record(recording)
            subscription = held.uart.subscribe()
            if reset_first:
                held.reset_dut()
            deadline = None if seconds is None else start + seconds
            while deadline is None or time.monotonic() < deadline:
                wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
                line = subscription.get(timeout=wait)
                if line is not None:
                    lines += 1
                    out.print(Text(f"{line.mono - start:9.3f}  ", style="dim") + styled(line.text, extra))
            subscription.close()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if recording is not None and out_file is not None:
            raw = recording / "uart.raw"
            if raw.exists():
                shutil.move(raw, out_file)
            shutil.rmtree(recording, ignore_errors=True)
    saved = f"; raw bytes in {out_file}" if out_file else ""
    out.print(f"[dim]{lines} lines in {time.monotonic() - start:.1f} s{saved}[/]")


# ------------------------------------------------------------------------------------------ reset


@click.command("reset")
@bench_option
def reset(bench_file: Path) -> None:
    """Reset the DUT the way the bench file's dut.reset says."""
    loaded = _load(bench_file)
    with Bench(loaded).hold(uart=False, router=False, cloud=False) as held:
        held.reset_dut()
    out.print(f"[green]reset[/] ({loaded.model.dut.reset.method})")


commands = [bench, flash, path, uart, reset]
