"""`rig gate VARIANT`: the release gate — run one variant on every path N times and say if it ships.

The gate runs the same attempts as the HIL matrix (`rig.hil.matrix.Cell`: image, path, reset, live verdict,
one retry for a bench problem) without pytest, writes the evidence (with a failing attempt's timeline
chart and diff against a passing one) and `cells.jsonl` into
`RESULTS/<run-id>/`, then `gate.json` (variant, image sha256, bench, per-path results, verdict,
reasons), and exits 0 (releasable), 1 (the firmware fails a path) or 3 (could not be judged: a bench
problem). A variant whose file says `release: false` is refused (exit 2) before the bench is touched.
The rules are `rig.report.gate.judge`.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from rig.config import DEFAULT_BENCH, Loaded, VariantConfig, load_bench, load_variant
from rig.drivers.programmers import image_sha256
from rig.errors import ConfigError, InfrastructureError
from rig.hil.matrix import AttemptCounter, Cell, Comparisons, expected_outcome, order_cells, plan
from rig.hil.session import open_bench
from rig.report.evidence import RunFolder
from rig.report.gate import GateReport, judge
from rig.report.table import matrix_table

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def find_variant(name: str, firmware_dir: Path) -> Loaded[VariantConfig]:
    """A variant by name (a file in `firmware_dir`) or by the path of its file."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return load_variant(candidate)
    file = firmware_dir / f"{name}.yaml"
    if not file.is_file():
        known = sorted(p.stem for p in firmware_dir.glob("*.yaml")) if firmware_dir.is_dir() else []
        raise ConfigError(
            f"no variant {name!r} in {firmware_dir}/ (variants: {', '.join(known) or 'none'}) — check --firmware-dir"
        )
    return load_variant(file)


def run_gate(
    variant: Loaded[VariantConfig], bench_path: Path, repeat: int, results: Path
) -> tuple[GateReport, RunFolder]:
    """Run the gate and judge it; gate.json is written in the run folder whatever happens."""
    bench = load_bench(bench_path)
    paths = list(bench.model.paths)
    run = RunFolder(results)
    run.write_run_info(
        {"kind": "gate", "variant": variant.model.name, "bench": str(bench_path), "repeat": repeat}
    )
    counter = AttemptCounter()
    comparisons = Comparisons()
    image = variant.model.image.hex
    image_sha = image_sha256(image) if image.is_file() else None
    stopped: str | None = None
    try:
        with open_bench(bench_path, purpose=f"gate {variant.model.name}") as live:
            specs = order_cells(
                plan([variant], paths, repeat),
                lambda spec: spec,
                paths=paths,
                baseline=bench.model.baseline,
            )
            for spec in specs:
                cell = Cell(spec, live, run, counter)
                console.print(f"[bold]{spec.id}[/] …")
                try:
                    result = cell.handshake()
                except InfrastructureError as exc:
                    cell.close()
                    cell.write_record("error")
                    stopped = f"stopped after a bench problem that its retry did not clear: {exc}"
                    err_console.print(f"[magenta]error:[/] {spec.id}: {exc}")
                    break
                image_sha = result.image_sha256 or image_sha
                if cell.attempt is not None:  # a failing attempt gets its timeline chart and diff
                    comparisons.add(cell.attempt)
                record = cell.write_record(expected_outcome(spec, result, infrastructure=False))
                style = "green" if result.completed else "bold red"
                console.print(
                    f"  [{style}]{result.verdict}[/] in {record.seconds.reset_to_verdict:.1f} s — {result.summary}"
                )
    except InfrastructureError as exc:
        stopped = str(exc)
        err_console.print(f"[magenta]error:[/] bench {bench_path}: {exc}")
    report = judge(
        variant.model.name,
        paths,
        repeat,
        run.cells.read(),
        bench=bench.model.name,
        image_sha256=image_sha,
    )
    if stopped and report.verdict != "releasable":
        report.reasons.append(stopped)
    report.write(run.root / "gate.json")
    return report, run


@click.command()
@click.argument("variant")
@click.option(
    "--bench",
    "bench_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_BENCH,
    show_default=True,
    help="bench file (the simulated bench is started if it is down, and stopped again)",
)
@click.option(
    "--firmware-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("firmware_configs"),
    show_default=True,
    help="folder of variant files VARIANT is looked up in",
)
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True, help="attempts per path")
@click.option(
    "--results", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True
)
def gate(variant: str, bench_path: Path, firmware_dir: Path, repeat: int, results: Path) -> None:
    """Release gate: run VARIANT on every path --repeat times; write gate.json.

    \b
    Exit 0: releasable (every attempt on every path completed).
    Exit 1: the firmware failed a path (even once).
    Exit 3: could not be judged (a bench problem kept a path from being run).
    Exit 2: bad input, or a variant marked `release: false`.
    """
    loaded = find_variant(variant, firmware_dir)
    if not loaded.model.release:
        raise ConfigError(
            f"{loaded.source.display}: variant {loaded.model.name} has `release: false` — the gate only judges "
            "release candidates; set `release: true` in its file to gate it"
        )
    load_bench(bench_path)  # a bad bench file is exit 2 before anything starts
    report, run = run_gate(loaded, bench_path, repeat, results)
    console.print(matrix_table(run.cells.read(), title=f"release gate: {report.variant} × {report.repeat}"))
    style = {0: "bold green", 1: "bold red", 3: "bold magenta"}[report.exit_code]
    console.print(f"[{style}]{report.verdict}[/] — " + "; ".join(report.reasons))
    console.print(f"gate.json: {run.root / 'gate.json'}")
    click.get_current_context().exit(report.exit_code)


commands = [gate]
