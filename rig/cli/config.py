"""`rig config check|schema`: validate bench and variant files; print their JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from rig.config import (
    DEFAULT_BENCH,
    BenchConfig,
    Loaded,
    VariantConfig,
    check_expectations,
    is_pool_file,
    json_schemas,
    kind_of,
    load_bench,
    load_pool,
    load_variant,
)
from rig.errors import ConfigError

out_console = Console(highlight=False, soft_wrap=True)


@click.group("config")
def config() -> None:
    """Validate bench and variant files; print their JSON Schemas."""


@config.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def config_check(files: tuple[Path, ...]) -> None:
    """Validate FILES (bench, pool and variant YAML); exit 0 when all are valid, 2 otherwise.

    Variant `expect` entries are checked against the paths of the bench files given, or of the
    default bench when none is.
    """
    problems: list[str] = []
    benches: list[Loaded[BenchConfig]] = []
    variants: list[Loaded[VariantConfig]] = []
    pools: list[tuple[Path, int]] = []
    for file in files:
        try:
            if is_pool_file(file):
                members = load_pool(file)
                pools.append((file, len(members)))
                benches.extend(load_bench(member) for member in members)
            elif kind_of(file) == "bench":
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
    for pool, count in pools:
        if not any(p.startswith(str(pool)) for p in problems):
            out_console.print(f"[green]ok[/]    {pool} (a pool of {count} bench file(s))")
    if problems:
        raise ConfigError(problems[0], problems=problems)


@config.command("schema")
@click.option("--kind", type=click.Choice(["bench", "variant", "all"]), default="all", show_default=True)
def config_schema(kind: str) -> None:
    """Print the JSON Schema of bench files, variant files, or both (for editors)."""
    schemas = json_schemas()
    document = schemas if kind == "all" else schemas[kind]
    click.echo(json.dumps(document, indent=2))


commands = [config]
