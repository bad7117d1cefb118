"""Loading bench and variant files: validated models with their source, provider variables, cross-checks.

A bench may be *provided*: a command brings it up (a simulated bench, a bench behind a power switch)
and writes an environment file whose values the bench file references as `${VAR}`. Every problem is
reported as a `ConfigError` line naming the file, the line and the key path.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from rig.config.files import SourceFile, read_yaml, validation_problems
from rig.config.models import RESERVED_PATH_NAMES, BenchConfig, PoolConfig, VariantConfig
from rig.errors import ConfigError

DEFAULT_BENCH = Path("benches/sim.yaml")

T = TypeVar("T", bound=BaseModel)


class Loaded(Generic[T]):
    """A validated model together with the file it came from (for later error messages)."""

    def __init__(self, model: T, source: SourceFile) -> None:
        self.model = model
        self.source = source

    @property
    def path(self) -> Path:
        return self.source.path


def allowed_keys(cls: type[BaseModel], key: tuple[str | int, ...]) -> list[str]:
    """The keys a file may have at `key` (a mapping's path), by walking the models' annotations."""
    current: Any = cls
    for part in key:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """`X | None` → X, `Annotated[X, …]` → X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _validate(cls: type[T], source: SourceFile) -> T:
    try:
        return cls.model_validate(source.data, context={"base_dir": source.path.resolve().parent})
    except ValidationError as exc:
        problems = validation_problems(source, exc, lambda key: allowed_keys(cls, key))
        raise ConfigError(problems[0], problems=problems) from None


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines (as a provider writes them); blank lines and `#` comments ignored."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def bench_env(path: Path, base_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a bench file is read with: the process's, plus its provider's env file if present."""
    env = dict(os.environ if base_env is None else base_env)
    first = read_yaml(path, {**env, **_PERMISSIVE})
    provider = first.data.get("provider") if isinstance(first.data, dict) else None
    if isinstance(provider, dict) and isinstance(provider.get("env_file"), str):
        env_file = Path(provider["env_file"]).expanduser()
        if not env_file.is_absolute():
            env_file = path.resolve().parent / env_file
        if env_file.is_file():
            env.update(read_env_file(env_file))
    return env


class _Permissive(dict[str, str]):
    """An env that never reports a variable missing: used only to find the provider section."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return ""


_PERMISSIVE = _Permissive()


def load_bench(path: Path | str, env: dict[str, str] | None = None) -> Loaded[BenchConfig]:
    """Read and validate a bench file (its `${VAR}`s from `env`, by default the process's environment);
    raises ConfigError listing every problem."""
    path = Path(path)
    source = read_yaml(path, bench_env(path, env))
    bench = _validate(BenchConfig, source)
    problems = bench_problems(bench, source)
    if problems:
        raise ConfigError(problems[0], problems=problems)
    return Loaded(bench, source)


def bench_problems(bench: BenchConfig, source: SourceFile) -> list[str]:
    """What a bench file gets wrong across its sections, one line each with the line of the key."""
    problems = []
    if bench.baseline not in bench.paths:
        problems.append(
            source.problem(
                ("baseline",), f"`{bench.baseline}` is not among the paths ({', '.join(bench.paths)})"
            )
        )
    for name, path in bench.paths.items():
        if name in RESERVED_PATH_NAMES:
            problems.append(
                source.problem(
                    ("paths", name),
                    f"`{name}` is the name of a pytest or rig marker, and every path becomes a marker "
                    "(`pytest -m <path>`) — rename the path",
                )
            )
        if path.host not in bench.ssh_hosts:
            problems.append(
                source.problem(
                    ("paths", name, "host"),
                    f"`{path.host}` is not among ssh_hosts ({', '.join(bench.ssh_hosts)})",
                )
            )
        if path.link is not None and path.link.rtt_ms != path.rtt_ms:
            problems.append(
                source.problem(
                    ("paths", name, "link", "rtt_ms"),
                    f"{path.link.rtt_ms:g} disagrees with paths.{name}.rtt_ms ({path.rtt_ms:g}): the stall "
                    "detector would use one and the link the other — make them equal",
                )
            )
    if bench.capture and bench.capture.host not in bench.ssh_hosts:
        problems.append(source.problem(("capture", "host"), f"`{bench.capture.host}` is not among ssh_hosts"))
    return problems


def is_pool_file(path: Path) -> bool:
    """Whether `path` is a pool file (a top-level `pool:` list of bench files) rather than a bench file."""
    try:
        source = read_yaml(path, _PERMISSIVE)
    except ConfigError:
        return False  # a broken file is reported by the loader that reads it as a bench
    return "pool" in source.data


def load_pool(path: Path | str) -> list[Path]:
    """The bench files a pool file lists, resolved against its folder; each must exist, none twice."""
    path = Path(path)
    source = read_yaml(path)
    pool = _validate(PoolConfig, source)
    benches: list[Path] = []
    problems: list[str] = []
    for index, name in enumerate(pool.pool):
        bench = Path(name) if Path(name).is_absolute() else path.parent / name
        if not bench.is_file():
            problems.append(source.problem(("pool", index), f"{bench}: no such bench file — check the path"))
        elif bench.resolve() in {b.resolve() for b in benches}:
            problems.append(source.problem(("pool", index), f"{name} is listed twice: one worker per bench"))
        else:
            benches.append(bench)
    if problems:
        raise ConfigError(problems[0], problems=problems)
    return benches


def expand_benches(paths: list[Path]) -> list[Path]:
    """Bench files as given (`--bench` repeated), each pool file replaced by the benches it lists."""
    benches: list[Path] = []
    for path in paths:
        for bench in load_pool(path) if is_pool_file(path) else [path]:
            if bench.resolve() in {b.resolve() for b in benches}:
                raise ConfigError(f"{bench}: given twice as a bench of this run — one worker per bench")
            benches.append(bench)
    return benches


def load_variant(path: Path | str) -> Loaded[VariantConfig]:
    """Read and validate a variant file; raises ConfigError listing every problem."""
    path = Path(path)
    source = read_yaml(path)
    variant = _validate(VariantConfig, source)
    if variant.name != path.stem:
        raise ConfigError(
            source.problem(("name",), f"expected {path.stem!r} (the file's name), found {variant.name!r}")
        )
    return Loaded(variant, source)


def check_expectations(variant: Loaded[VariantConfig], bench: Loaded[BenchConfig]) -> list[str]:
    """Problems with a variant's `expect` against a bench: path names the bench does not have."""
    problems = []
    known = list(bench.model.paths)
    for name in variant.model.expect:
        if name != "*" and name not in known:
            problems.append(
                variant.source.problem(
                    ("expect", name),
                    f"unknown path {name!r} — the bench {bench.source.display} has paths: {', '.join(known)}",
                )
            )
    return problems


def load_variants(folder: Path | str) -> list[Loaded[VariantConfig]]:
    """Every `*.yaml` in `folder`, sorted by name; all problems of all files in one ConfigError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder of variant files — check --firmware-dir")
    loaded, problems = [], []
    for file in sorted(folder.glob("*.yaml")):
        try:
            loaded.append(load_variant(file))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems[0], problems=problems)
    if not loaded:
        raise ConfigError(f"{folder}: no variant files (*.yaml) found")
    return loaded


def kind_of(path: Path) -> Literal["bench", "variant"]:
    """Tell a bench file from a variant file by its top-level keys (falls back on the folder name)."""
    try:
        source = read_yaml(path, _PERMISSIVE)
    except ConfigError:
        return "variant" if path.parent.name == "firmware_configs" else "bench"
    keys = set(source.data)
    if keys & {"dut", "paths", "programmer", "ssh_hosts"}:
        return "bench"
    if keys & {"build", "image", "expect"}:
        return "variant"
    return "variant" if path.parent.name == "firmware_configs" else "bench"


def json_schemas() -> dict[str, Any]:
    """JSON Schemas of both file kinds, for editors (yaml-language-server)."""
    return {
        "bench": BenchConfig.model_json_schema(),
        "variant": VariantConfig.model_json_schema(),
    }
