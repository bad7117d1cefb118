"""`rig gate VARIANT --bench FILE`: the release gate — run one variant on every path N times and say if it ships.

The gate runs the same attempts as the HIL matrix (`rig.hil.matrix.Cell`: image, path, reset, live verdict,
one retry for a bench problem) without pytest, writes the evidence (with a failing attempt's timeline
chart and diff against a passing one) and `cells.jsonl` into `RESULTS/<run-id>/`, then `gate.json`
(variant, image sha256, bench and its kind, per-path results, every attempt's evidence, verdict, reasons,
provenance), and exits 0 (releasable), 1 (the firmware fails a path) or 3 (could not be judged: a bench
problem). The rules are `rig.report.gate.judge`.

Refused before the bench is touched (exit 2): no bench given (`--bench` or `RIG_BENCH`: the gate never
picks one), a variant whose file says `release: false`, and a simulated bench unless `--allow-simulated`
— whose verdict is then marked `"simulated": true` and is not a release verdict.
`rig gate --verify gate.json` reads the files the gate judged again and checks their digests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console

from rig.config import Loaded, VariantConfig, load_bench, load_variant
from rig.errors import ConfigError, InfrastructureError
from rig.hil.judge import expected_outcome
from rig.hil.matrix import AttemptCounter, Cell, Comparisons, order_cells, plan
from rig.hil.session import open_bench
from rig.report.evidence import EVENTS, RunFolder
from rig.report.gate import GateReport, judge
from rig.report.provenance import Provenance
from rig.report.run_events import RunEvents
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
    image = bench.model.image_for(variant.model)
    provenance = Provenance.start(
        bench=bench.model.name,
        bench_kind=bench.model.kind,
        bench_file=bench_path,
        variant_file=variant.path,
        image=image,
    )
    run = RunFolder(results)
    run.write_run_info(
        {
            "kind": "gate",
            "variant": variant.model.name,
            "bench": str(bench_path),
            "bench_name": bench.model.name,
            "simulated": bench.model.simulated,
            "repeat": repeat,
        }
    )
    counter = AttemptCounter()
    comparisons = Comparisons()
    image_sha = provenance.image.sha256
    stopped: str | None = None
    run_events = RunEvents(run.root / EVENTS)  # bring-up, lease, preflight, restore: the gate's own
    try:
        with run_events, open_bench(bench_path, purpose=f"gate {variant.model.name}") as live:
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
                record = cell.write_record(expected_outcome(spec.expectation, result, infrastructure=False))
                style = "green" if result.completed else "bold red"
                console.print(
                    f"  [{style}]{result.verdict}[/] in {record.seconds.reset_to_verdict:.1f} s — {result.summary}"
                )
    except InfrastructureError as exc:
        stopped = str(exc)
        err_console.print(f"[magenta]error:[/] bench {bench_path}: {exc}")
    provenance.ended = time.time()
    report = judge(
        variant.model.name,
        paths,
        repeat,
        run.cells.read(),
        bench=bench.model.name,
        image_sha256=image_sha,
        simulated=bench.model.simulated,
        provenance=provenance,
    )
    if stopped and report.verdict != "releasable":
        report.reasons.append(stopped)
    report.write(run.root / "gate.json")
    return report, run


@click.command()
@click.argument("variant", required=False)
@click.option(
    "--bench",
    "bench_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="RIG_BENCH",
    default=None,
    help="bench file to gate on (or RIG_BENCH); required: the gate never picks a bench for you",
)
@click.option(
    "--allow-simulated",
    is_flag=True,
    help="run on a simulated bench anyway; the verdict is marked simulated and is no release verdict",
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
@click.option(
    "--verify",
    "verify_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="check that the image and files a gate.json judged still match their digests (exit 0 or 1)",
)
def gate(
    variant: str | None,
    bench_path: Path | None,
    allow_simulated: bool,
    firmware_dir: Path,
    repeat: int,
    results: Path,
    verify_file: Path | None,
) -> None:
    """Release gate: run VARIANT on every path of --bench --repeat times; write gate.json.

    \b
    Exit 0: releasable (every attempt on every path completed).
    Exit 1: the firmware failed a path (even once); with --verify: a file changed since.
    Exit 3: could not be judged (a bench problem kept a path from being run).
    Exit 2: bad input: no bench, a variant marked `release: false`, a simulated bench
            without --allow-simulated.
    """
    if verify_file is not None:
        click.get_current_context().exit(verify(verify_file))
    if variant is None:
        raise ConfigError("rig gate: which variant? `rig gate VARIANT --bench FILE` (or --verify gate.json)")
    if bench_path is None:
        raise ConfigError(
            "rig gate: no bench — give --bench FILE or set RIG_BENCH; the gate never picks a bench for you"
        )
    loaded = find_variant(variant, firmware_dir)
    if not loaded.model.release:
        raise ConfigError(
            f"{loaded.source.display}: variant {loaded.model.name} has `release: false` — the gate only judges "
            "release candidates; set `release: true` in its file to gate it"
        )
    bench = load_bench(bench_path)  # a bad bench file is exit 2 before anything starts
    if bench.model.simulated and not allow_simulated:
        raise ConfigError(
            f"{bench.source.display}: bench {bench.model.name} is simulated — its verdict cannot release "
            "firmware; gate on a real bench, or add --allow-simulated to try the gate itself"
        )
    report, run = run_gate(loaded, bench_path, repeat, results)
    kind = " (SIMULATED bench)" if report.simulated else ""
    console.print(
        matrix_table(
            run.cells.read(),
            title=f"release gate: {report.variant} × {report.repeat} on {report.bench}{kind}",
        )
    )
    style = {0: "bold green", 1: "bold red", 3: "bold magenta"}[report.exit_code]
    console.print(f"[{style}]{report.verdict}[/] — " + "; ".join(report.reasons))
    if report.simulated:
        console.print("[bold yellow]simulated bench: this is not a release verdict[/]")
    console.print(f"gate.json: {run.root / 'gate.json'}")
    click.get_current_context().exit(report.exit_code)


def verify(path: Path) -> int:
    """Check a gate.json's image and files against their digests; 0 when all match, 1 otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        provenance = Provenance.from_json(data["provenance"])
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found — give the gate.json of a gate run") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a gate.json with provenance ({type(exc).__name__}: {exc})") from None
    checks = provenance.verify()
    for ok, line in checks:
        console.print(("[green]ok[/]      " if ok else "[bold red]CHANGED[/] ") + line)
    verdict = data.get("verdict", "?")
    sim = ", simulated bench" if provenance.simulated else ""
    console.print(
        f"gate of {data.get('variant')} on {provenance.bench}{sim}: {verdict}, by rig {provenance.rig_version}"
        f" ({provenance.rig_commit or 'no checkout'}) on {provenance.host}"
    )
    return 0 if all(ok for ok, _ in checks) else 1


commands = [gate]
