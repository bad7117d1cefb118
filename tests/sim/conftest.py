"""Shared fixtures of the simulated bench's tests: the sim PKI, a real mosquitto, the cloud stand-in.

Every process a fixture starts is stopped by its finalizer; ports are picked free.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from readiness import ready_line

from rig.sim.broker import Broker
from rig.sim.pki import Pki, generate_pki
from rig.sim.procs import free_port

ENDPOINT = "sim-ats.iot.us-east-1.amazonaws.com"


@pytest.fixture(scope="session")
def sim_endpoint() -> str:
    """The AWS IoT endpoint name of the sim: the SNI the stand-in accepts and the server leaf's CN."""
    return ENDPOINT


@pytest.fixture(scope="session")
def sim_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One PKI for the whole session (RSA key generation is the slow part)."""
    return generate_pki(tmp_path_factory.mktemp("pki"), ENDPOINT)


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory, sim_pki: Pki) -> Iterator[Broker]:
    """mosquitto with the TLS (observer) listener and the plain (stand-in) listener."""
    broker = Broker(tmp_path_factory.mktemp("broker"), sim_pki, free_port(), free_port())
    broker.start(timeout=10)
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class CloudProcess:
    """A running `python -m rig.sim.cloud` and where it keeps its state."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    log_lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.directory / "cloud.log"

    def lines(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text(encoding="utf-8").splitlines() if line]

    def records(self) -> list[dict[str, Any]]:
        """The connection records (written when a connection ends), without the journal's lines."""
        return [line for line in self.lines() if "event" not in line]

    def journal(self) -> list[dict[str, Any]]:
        """The lines written at once: `flight sent`, `gave up`."""
        return [line for line in self.lines() if "event" in line]

    def wait_records(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The first `count` connection records of cloud.log, waiting for them to be written."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if len(records) >= count:
                return records
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.log_path}: {len(records)} records after {timeout} s, wanted {count}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode


StartCloud = Callable[..., CloudProcess]


@pytest.fixture
def start_cloud(tmp_path: Path, sim_pki: Pki, mqtt_broker: Broker) -> Iterator[StartCloud]:
    """Start stand-ins (`start_cloud(mode="alert", hold=30)`); all are stopped at the end of the test."""
    started: list[CloudProcess] = []

    def start(mode: str = "silent", hold: float = 30.0, broker_port: int | None = None) -> CloudProcess:
        port = free_port()
        directory = tmp_path / f"cloud-{port}"
        argv = [
            sys.executable,
            "-m",
            "rig.sim.cloud",
            "--dir",
            str(directory),
            "--port",
            str(port),
            "--pki",
            str(sim_pki.directory),
            "--broker-port",
            str(broker_port if broker_port is not None else mqtt_broker.plain_port),
            "--endpoint",
            ENDPOINT,
            "--mode",
            mode,
            "--hold",
            str(hold),
        ]
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=None, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        cloud = CloudProcess(process, port, directory)
        started.append(cloud)
        line = ready_line(process, f"cloud stand-in on port {port}")
        assert line == f"listening on 127.0.0.1:{port}\n", f"cloud stand-in said {line!r}"
        return cloud

    try:
        yield start
    finally:
        for cloud in started:
            cloud.stop()
