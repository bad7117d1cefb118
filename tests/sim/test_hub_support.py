"""Helpers for the hub, FIFO and router tests: the real hub binary, images, the router process and a
scripted LAN peer that plays the router's side of the framed link (rig.sim.lan) byte by byte.

Imported by test_hub*.py, test_fifo*.py and test_router*.py; every process started here is stopped by
the fixture that started it.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from readiness import ready_line

from rig.config import BuildParams, load_variant
from rig.sim import lan
from rig.sim.hubbuild import build_hub
from rig.sim.image import build_image, flash_from_hex
from rig.sim.pki import Pki
from rig.sim.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
SIM_BENCH = ROOT / "benches" / "sim.yaml"
ENDPOINT = "sim-ats.iot.us-east-1.amazonaws.com"
CLIENT_ID = "hub-sim-0001"


@pytest.fixture(scope="session")
def hub_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_hub(tmp_path_factory.mktemp("hubbuild"))


def make_flash(pki: Pki, folder: Path, variant: str, **build: Any) -> tuple[Path, str]:
    """Build `firmware_configs/<variant>.yaml` (build parameters overridden by `build`): flash file, sha."""
    model = load_variant(ROOT / "firmware_configs" / f"{variant}.yaml").model
    if build:
        model = model.model_copy(update={"build": BuildParams(**{**model.build.model_dump(), **build})})
    folder.mkdir(parents=True, exist_ok=True)
    hex_path = folder / f"{variant}.hex"
    sha = build_image(model, pki, CLIENT_ID, ENDPOINT, hex_path)
    flash = folder / f"{variant}.flash"
    flash.write_bytes(flash_from_hex(hex_path))
    return flash, sha


@dataclass
class HubProcess:
    process: subprocess.Popen[bytes]
    uart: Path
    stderr: Path

    def text(self) -> str:
        return self.uart.read_bytes().decode("utf-8", "replace")

    def wait_for(self, pattern: str, timeout: float, count: int = 1) -> str:
        """The UART text once `pattern` (regex) occurs `count` times; fails with the last lines."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if len(re.findall(pattern, text)) >= count:
                return text
            if time.monotonic() > deadline or self.process.poll() is not None:
                tail = "\n".join(text.splitlines()[-15:])
                raise AssertionError(
                    f"hub UART: {pattern!r} x{count} not seen in {timeout} s; last lines:\n{tail}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


StartHub = Callable[[Path, int], HubProcess]


@pytest.fixture
def start_hub(hub_binary: Path, tmp_path: Path) -> Iterator[StartHub]:
    """Start the hub binary with a flash file and a LAN port; killed at the end of the test."""
    started: list[HubProcess] = []

    def start(flash: Path, lan_port: int) -> HubProcess:
        n = len(started)
        uart, err = tmp_path / f"uart{n}.log", tmp_path / f"hub{n}.stderr"
        with uart.open("wb") as out, err.open("wb") as errout:
            process = subprocess.Popen(
                [str(hub_binary), "--flash", str(flash), "--lan", f"127.0.0.1:{lan_port}"],
                stdout=out,
                stderr=errout,
            )
        hub = HubProcess(process, uart, err)
        started.append(hub)
        return hub

    try:
        yield start
    finally:
        for hub in started:
            hub.stop()


@dataclass
class RouterProcess:
    process: subprocess.Popen[bytes]
    folder: Path
    lan_port: int

    def simrouter(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "rig.sim.simrouter", "--dir", str(self.folder), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def log(self) -> str:
        path = self.folder / "router.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


StartRouter = Callable[..., RouterProcess]


@pytest.fixture
def start_router(tmp_path: Path) -> Iterator[StartRouter]:
    """Start `python -m rig.sim.router` (`start_router(cloud_port, path="satellite")`); stopped at the end."""
    started: list[RouterProcess] = []

    def start(
        cloud_port: int, path: str | None = None, folder: Path | None = None, lan_port: int | None = None
    ) -> RouterProcess:
        folder = folder or tmp_path / f"router{len(started)}"
        folder.mkdir(parents=True, exist_ok=True)
        if path is not None:
            (folder / "active_uplink").write_text(path + "\n")
        lan_port = lan_port or free_port()
        argv = [sys.executable, "-m", "rig.sim.router", "--dir", str(folder), "--bench", str(SIM_BENCH),
                "--lan-port", str(lan_port), "--cloud-port", str(cloud_port)]  # fmt: skip
        process = subprocess.Popen(argv, stdout=subprocess.PIPE)
        router = RouterProcess(process, folder, lan_port)
        started.append(router)
        line = ready_line(process, f"router (see {folder / 'router.log'})")
        assert line == f"router listening on 127.0.0.1:{lan_port}\n", f"router said {line!r}"
        return router

    try:
        yield start
    finally:
        for router in started:
            router.stop()


class ScriptedLan:
    """The router's side of the hub's LAN link, driven by the test one frame at a time."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(10)
        self.port: int = self.server.getsockname()[1]
        self.conn: socket.socket | None = None
        self.reader = lan.FrameReader()
        self.pending: list[lan.Frame] = []

    def accept(self) -> None:
        self.conn, _ = self.server.accept()
        self.conn.settimeout(10)

    def frame(self, timeout: float = 10.0) -> lan.Frame:
        assert self.conn is not None
        deadline = time.monotonic() + timeout
        while not self.pending:
            self.conn.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.conn.recv(65536)
            if not data:
                raise AssertionError("the hub closed its LAN link")
            self.pending.extend(self.reader.feed(data))
        return self.pending.pop(0)

    def expect(self, kind: bytes, timeout: float = 10.0) -> lan.Frame:
        """The next frame of `kind`, skipping others (e.g. DATA while waiting for an ACK)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.frame(max(0.01, deadline - time.monotonic()))
            if frame.kind == kind:
                return frame

    def send(self, frame: lan.Frame) -> None:
        assert self.conn is not None
        self.conn.sendall(frame.encode())

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def scripted_lan() -> Iterator[ScriptedLan]:
    peer = ScriptedLan()
    try:
        yield peer
    finally:
        peer.close()
