"""A provided bench: one brought up and down by commands its bench file names (`provider:`).

A simulated bench, a bench behind a power switch: the harness does not know what the provider is, only
its three commands. `up` writes the environment file whose values the bench file references as `${VAR}`;
`status` exits 0 when the bench is up; `down` stops what `up` started.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rig.config import load_bench
from rig.errors import ConfigError, InfrastructureError


def _provider_argv(argv: list[str], bench: Path) -> list[str]:
    return [item.replace("{python}", sys.executable).replace("{bench}", str(bench)) for item in argv]


def _provider_run(path: Path, which: str, timeout: float, *, quiet: bool) -> int:
    bench = path.resolve()
    provider = load_bench(bench).model.provider
    if provider is None:
        raise ConfigError(f"{path}: no `provider` section; this bench is not brought up by a command")
    argv = _provider_argv(getattr(provider, which), bench)
    output = subprocess.DEVNULL if quiet else None
    try:
        done = subprocess.run(
            argv, cwd=bench.parent, timeout=timeout, stdout=output, stderr=output, check=False
        )
    except FileNotFoundError:
        raise InfrastructureError(f"{path}: provider.{which}: {argv[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise InfrastructureError(
            f"{path}: provider.{which} ({' '.join(argv)}) did not finish within {timeout:g} s"
        ) from None
    return done.returncode


def provider_is_up(path: Path, *, timeout: float = 30.0) -> bool:
    """Whether `provider.status` of the bench file at `path` says the bench is up (exit 0)."""
    return _provider_run(path, "status", timeout, quiet=True) == 0


def ensure_provider_up(path: Path, *, timeout: float = 300.0) -> bool:
    """Bring up the bench at `path` with `provider.up` unless `provider.status` says it is up.

    Returns True when this call started it: the caller then stops it with `provider_down(path)`.
    Arguments `{python}` and `{bench}` become this interpreter and the bench file's absolute path; the
    commands run in the bench file's folder with their output shown.
    """
    if provider_is_up(path):
        return False
    code = _provider_run(path, "up", timeout, quiet=False)
    if code != 0:
        raise InfrastructureError(f"{path}: provider.up exited {code} — see its output above")
    if not provider_is_up(path):
        raise InfrastructureError(
            f"{path}: provider.up finished but provider.status does not say the bench is up"
        )
    return True


def provider_down(path: Path, *, timeout: float = 120.0) -> None:
    """Stop the bench at `path` with `provider.down`."""
    code = _provider_run(path, "down", timeout, quiet=False)
    if code != 0:
        raise InfrastructureError(f"{path}: provider.down exited {code} — see its output above")
