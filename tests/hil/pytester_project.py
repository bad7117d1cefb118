"""A pytester project for the HIL plugin's tests: a bench file, variant files, the real HIL test module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

BENCH_YAML = """\
name: scripted
kind: real
dut:
  part: 32MZ2048EFM100
  client_id: hub-test-0001
  uart: {url: "loop://"}
  reset: {method: programmer}
programmer: {kind: ipecmd, tool: ICD4, serial: BURSIM000001, executable: ipecmd}
ssh_hosts:
  router:
    host: 127.0.0.1
    user: root
    key_file: key
    host_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBP4cwUs++3a9OxhogTfNxh9WtvilhbCCC12D2QUOS04"]
paths:
  landline:
    host: router
    activate: ["simrouter select landline"]
    verify: {command: simrouter route, expect: landline}
    rtt_ms: 30
  satellite:
    host: router
    activate: ["simrouter select satellite"]
    verify: {command: simrouter route, expect: satellite}
    rtt_ms: 600
baseline: landline
cloud: {endpoint: example.invalid, client_id: observer}
timeouts:
  cell_s: 10
  boot_s: 2
  stall: {floor_s: 0.4, rtt_multiple: 0.5}
"""


def variant_yaml(name: str, expect: dict[str, str], release: bool = False) -> str:
    lines = [
        f"name: {name}",
        "image: {hex: ../build/" + name + ".hex}",
        "build: {tcp_rx_buffer: 1024, tcp_tx_buffer: 1024, mbedtls_in_content_len: 16384,",
        "        mbedtls_out_content_len: 4096, debug_threshold: 2, read_timeout_ms: 0, recv_glue: partial}",
        f"release: {'true' if release else 'false'}",
        "expect:" + ("" if expect else " {}"),
    ]
    lines += [f'  "{path}": {what}' for path, what in expect.items()]
    return "\n".join(lines) + "\n"


CONFTEST = """\
import sys
sys.path.insert(0, {here!r})
import pytest
import rig.hil.attempt
from scripted_bench import COMPLETED, RECORD_TOO_BIG, STALLED_AT_12, Script, scripted

rig.hil.attempt.QUIET_S = 0.05  # the scripted DUT prints nothing between attempts: no need to wait for quiet

SCRIPTS = {scripts}
PREFLIGHT = {preflight!r}

@pytest.fixture(scope="session")
def rig_bench_factory():
    return lambda path, config: scripted(path, SCRIPTS, preflight=PREFLIGHT)
"""


class Project:
    """A pytester folder with a bench file, variant files and the real HIL test module."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.root = pytester.path
        (self.root / "benches").mkdir()
        (self.root / "benches" / "bench.yaml").write_text(BENCH_YAML)
        (self.root / "firmware_configs").mkdir()
        source = (REPO / "tests_hil" / "test_handshake.py").read_text()
        pytester.makepyfile(test_handshake=source)

    def variant(self, name: str, release: bool = False, **expect: str) -> None:
        text = variant_yaml(name, expect, release)
        (self.root / "firmware_configs" / f"{name}.yaml").write_text(text)

    def scripts(self, scripts: str, preflight: str | None = None) -> None:
        self.pytester.makeconftest(CONFTEST.format(here=str(HERE), scripts=scripts, preflight=preflight))

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("--bench", "benches/bench.yaml", "-p", "no:cacheprovider", *args)

    def actions(self) -> list[str]:
        path = self.root / "actions.log"
        return path.read_text().splitlines() if path.exists() else []

    def cells_folder(self) -> Path:
        """The newest run's folder."""
        runs = sorted(p for p in (self.root / "results").iterdir() if p.is_dir() and not p.is_symlink())
        return runs[-1]

    def cells(self) -> list[dict[str, object]]:
        text = (self.cells_folder() / "cells.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines()]
