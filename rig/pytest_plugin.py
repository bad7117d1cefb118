"""The rig's pytest plugin: command-line options and markers for HIL tests.

Registered through the `pytest11` entry point, so any pytest run in an environment where `rig` is
installed gets `--bench` and friends. Markers: `release`, `nightly`, and one per path of the bench
file (`pytest -m satellite` runs the satellite column of the matrix).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.config import DEFAULT_BENCH, load_bench
from rig.errors import ConfigError


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rig", "hardware-in-the-loop bench")
    group.addoption(
        "--bench",
        default=None,
        metavar="FILE",
        help=f"bench file to run on (default {DEFAULT_BENCH}, the simulated bench)",
    )
    group.addoption(
        "--variants", default=None, metavar="A,B", help="only these variants (names, comma-separated)"
    )
    group.addoption("--paths", default=None, metavar="A,B", help="only these paths (names, comma-separated)")
    group.addoption(
        "--firmware-dir",
        default="firmware_configs",
        metavar="DIR",
        help="folder of variant files (default firmware_configs)",
    )
    group.addoption("--repeat", type=int, default=1, metavar="N", help="run every cell N times")
    group.addoption("--results", default="results", metavar="DIR", help="evidence folder (default results)")


def bench_file(config: pytest.Config) -> Path | None:
    """The bench file this run uses: --bench, else the default one when the repository has it."""
    option = config.getoption("--bench")
    if option:
        return Path(option)
    default = Path(config.rootpath) / DEFAULT_BENCH
    return default if default.is_file() else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "release: cells of variants marked `release: true`")
    config.addinivalue_line("markers", "nightly: part of the nightly bench run")
    path = bench_file(config)
    if path is None:
        return
    try:
        bench = load_bench(path)
    except ConfigError as exc:
        raise pytest.UsageError("\n".join(exc.lines())) from None
    for name, spec in bench.model.paths.items():
        config.addinivalue_line("markers", f"{name}: cells on the {name} path ({spec.rtt_ms:g} ms RTT)")
