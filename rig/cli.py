"""The `rig` command: configuration checks here, the other command groups from their own modules.

Every command reports problems as `RigError`s; this module prints them one line each on stderr and
exits with the error's code (2 bad input, 3 bench problem, 1 firmware failure). No traceback reaches
the user for a problem the rig knows about.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from rig import cli_bench, cli_logs, cli_run
from rig.config import (
    DEFAULT_BENCH,
    BenchConfig,
    Loaded,
    VariantConfig,
    check_expectations,
    json_schemas,
    kind_of,
    load_bench,
    load_variant,
)
from rig.errors import ConfigError, RigError
from rig.sim import cli as sim_cli

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


def _package_version() -> str:
    try:
        return version("rig")
    except PackageNotFoundError:
        return "unknown"


class RigGroup(click.Group):
    """A click group that turns RigErrors into clean stderr lines and the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RigError as exc:
            for line in exc.lines():
                err_console.print(f"[bold red]error:[/] {line}", markup=True, highlight=False)
            ctx.exit(exc.exit_code)


@click.group(cls=RigGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(_package_version(), "--version", prog_name="rig")
def main() -> None:
    """Hardware-in-the-loop rig for the hub: firmware variants × network paths × the TLS handshake.

    \b
    Start with `rig config check benches/*.yaml firmware_configs/*.yaml`, then `make bench`.
    Exit codes: 0 ok, 1 firmware failure, 2 bad input, 3 bench (infrastructure) problem.
    """


@main.group(cls=RigGroup)
def config() -> None:
    """Validate bench and variant files; print their JSON Schemas."""


@config.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def config_check(files: tuple[Path, ...]) -> None:
    """Validate FILES (bench and variant YAML); exit 0 when all are valid, 2 otherwise.

    Variant `expect` entries are checked against the paths of the bench files given, or of the
    default bench when none is.
    """
    problems: list[str] = []
    benches: list[Loaded[BenchConfig]] = []
    variants: list[Loaded[VariantConfig]] = []
    for file in files:
        try:
            if kind_of(file) == "bench":
                benches.append(load_bench(file))
            else:
                variants.append(load_variant(file))
        except ConfigError as exc:
            problems.extend(exc.problems)
    references = benches
    if variants and not benches and DEFAULT_BENCH.is_file():
        try:
            references = [load_bench(DEFAULT_BENCH)]
        except ConfigError as exc:
            problems.extend(exc.problems)
    for variant in variants:
        for bench in references:
            problems.extend(check_expectations(variant, bench))
    for source in [b.source for b in benches] + [v.source for v in variants]:
        if not any(p.startswith(source.display) for p in problems):
            out_console.print(f"[green]ok[/]    {source.display}")
    if problems:
        raise ConfigError(problems[0], problems=problems)


@config.command("schema")
@click.option("--kind", type=click.Choice(["bench", "variant", "all"]), default="all", show_default=True)
def config_schema(kind: str) -> None:
    """Print the JSON Schema of bench files, variant files, or both (for editors)."""
    schemas = json_schemas()
    document = schemas if kind == "all" else schemas[kind]
    click.echo(json.dumps(document, indent=2))


# The command groups that live in their own modules, each listing its click commands in `commands`.
# `rig.sim` is the simulated bench: the harness imports nothing of it but this command group.
for _module in (cli_logs, cli_bench, cli_run, sim_cli):
    for _command in _module.commands:
        main.add_command(_command)


def run() -> None:
    """Entry point for `python -m rig`."""
    main(prog_name="rig")


if __name__ == "__main__":
    sys.exit(main())
