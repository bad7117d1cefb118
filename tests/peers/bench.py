"""Fixtures for the Bench tests: a bench file around real parts and a scripted hub behind a pty.

The parts: the pty device and the sshd of tests/peers/drivers.py (with the tiny `netctl` router), the ipecmd
stand-in as the programmer, and a `Hub` that prints its boot banner whenever the bench's reset
command runs. tests/conftest.py makes the fixtures available to every test folder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from rig.config import VariantConfig
from tests.peers.drivers import PtyDevice, SshServer, bench_dict, netctl, netctl_paths

STAND_INS = Path(__file__).parent / "stand_ins"
SERIAL = "BUR191234567"


class Hub:
    """The DUT behind the pty: on each reset (the reset command touches a file) it prints its banner."""

    def __init__(self, device: PtyDevice, marker: Path) -> None:
        self.device = device
        self.marker = marker
        self.sha256: str | None = None
        self.silent = False
        self.resets = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def boot(self) -> None:
        if self.silent:  # a blank part: nothing boots, nothing is printed
            return
        lines = ["", "hub firmware rig-test booting"]
        if self.sha256 is not None:
            lines.append(f"image sha256: {self.sha256}")
        lines.append("net: link up")
        self.device.write(("\r\n".join(lines) + "\r\n").encode())

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            if self.marker.exists():
                self.marker.unlink()
                self.resets += 1
                self.boot()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def routerfs(tmp_path: Path) -> Path:
    return netctl(tmp_path / "routerfs").parent


@pytest.fixture
def hub(pty_device: PtyDevice, tmp_path: Path) -> Iterator[Hub]:
    made = Hub(pty_device, tmp_path / "reset-requested")
    yield made
    made.stop()


@pytest.fixture
def bench_file(
    tmp_path: Path, sshd: SshServer, routerfs: Path, pty_device: PtyDevice, hub: Hub, stand_in: Path
) -> Path:
    data = bench_dict({"router": sshd.host_config()}, netctl_paths(routerfs / "netctl"), "landline")
    data["name"] = "lab-test"
    data["dut"] = {
        "part": "32MZ2048EFM100",
        "client_id": "hub-test",
        "uart": {"url": pty_device.url, "baud": 115200},
        "reset": {"method": "command", "command": ["touch", str(hub.marker)]},
    }
    data["programmer"] = {
        "kind": "ipecmd",
        "tool": "ICD4",
        "serial": SERIAL,
        "executable": str(STAND_INS / "ipecmd"),
    }
    data["state_dir"] = str(tmp_path / "state")
    data["timeouts"] = {"path_switch_s": 10, "boot_s": 1.5}
    path = tmp_path / "lab-test.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    (routerfs / "route").write_text("landline\n")
    return path


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "stand-in"
    folder.mkdir()
    monkeypatch.setenv("RIG_STAND_IN_DIR", str(folder))
    monkeypatch.setenv("RIG_STAND_IN_SERIAL", SERIAL)
    return folder


@pytest.fixture
def variant(tmp_path: Path) -> VariantConfig:
    image = tmp_path / "tcp-rx-1460.hex"
    image.write_text(":020000040000FA\n:10000000000102030405060708090A0B0C0D0E0F78\n:00000001FF\n")
    return VariantConfig.model_validate(
        {
            "name": "tcp-rx-1460",
            "image": {"hex": str(image)},
            "build": {
                "tcp_rx_buffer": 1460,
                "tcp_tx_buffer": 1460,
                "mbedtls_in_content_len": 16384,
                "mbedtls_out_content_len": 4096,
                "debug_threshold": 2,
                "read_timeout_ms": 5000,
                "recv_glue": "partial",
            },
        }
    )


def route(routerfs: Path) -> str:
    return (routerfs / "route").read_text().strip()


def programmer_calls(stand_in: Path) -> int:
    calls = stand_in / "calls.jsonl"
    return len(calls.read_text().splitlines()) if calls.exists() else 0
