"""Fixtures for the log-intelligence tests: the real Mbed TLS client, its PKI and a TLS server.

`tlsclient` compiles tests/mbedtls/peers/tlsclient.c against the system's Mbed TLS (2.28, Debian
libmbedtls-dev) once per session; `real_handshake(mode, ...)` runs it against a Python `ssl` server
in that mode and returns the client's debug output (bytes, as a UART would deliver it).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.mbedtls.peers.certs import Pki, make_pki
from tests.mbedtls.peers.tlsserver import TlsServer

PEERS = Path(__file__).parent / "peers"
LOGS = Path(__file__).parent / "logs"

RealHandshake = Callable[..., bytes]


@pytest.fixture(scope="session")
def tlsclient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real-library client, built with gcc into a temporary directory."""
    gcc = shutil.which("gcc")
    if gcc is None or not Path("/usr/include/mbedtls/ssl.h").is_file():
        pytest.skip("needs gcc and libmbedtls-dev (make system-deps installs them)")
    binary = tmp_path_factory.mktemp("tlsclient") / "tlsclient"
    build = subprocess.run(
        [
            gcc,
            "-O1",
            "-Wall",
            "-o",
            str(binary),
            str(PEERS / "tlsclient.c"),
            "-lmbedtls",
            "-lmbedx509",
            "-lmbedcrypto",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert build.returncode == 0, f"gcc could not build tlsclient.c:\n{build.stderr}"
    return binary


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def real_handshake(tlsclient: Path, pki: Pki) -> Iterator[RealHandshake]:
    """Run one handshake of the real client against a server in `mode`; return the client's stdout."""
    servers: list[TlsServer] = []

    def run(
        mode: str,
        *,
        level: int = 2,
        fmt: int = 0,
        timeout_ms: int = 600,
        poll_ms: int = 50,
        suite: str | None = None,
        tickets: bool | None = None,
        expect_exit: int | None = None,
    ) -> bytes:
        server = TlsServer(pki, mode, hold_s=timeout_ms / 1000 + 2, tickets=tickets)
        servers.append(server)
        command = [str(tlsclient), "-p", str(server.port), "-a", str(pki.ca), "-c", str(pki.device_cert)]
        command += [
            "-k",
            str(pki.device_key),
            "-d",
            str(level),
            "-f",
            str(fmt),
            "-t",
            str(timeout_ms),
            "-r",
            str(poll_ms),
        ]
        if suite:
            command += ["-s", suite]
        result = subprocess.run(command, capture_output=True, timeout=30)
        server.stop()
        servers.remove(server)
        if expect_exit is not None:
            assert result.returncode == expect_exit, (
                f"tlsclient exited {result.returncode}: {result.stderr!r}"
            )
        return result.stdout

    yield run
    for server in servers:  # a test that failed half-way: still close the ports and threads
        server.stop()
