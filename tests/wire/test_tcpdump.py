"""A capture made by the real tcpdump of a real TLS 1.2 handshake on loopback reads as the RFCs say.

Python's `ssl` (OpenSSL) on both ends, without client certificates, TLS 1.2 with the suite AWS IoT
Core and the hub agree on; tcpdump on `lo` (Ethernet framing). Not on `any`: on this kind of VM the
kernel drops some of the cooked interface's packets even at a handful per second ("packets dropped
by kernel"); the cooked framings are checked with the bench capture re-framed (test_link_layers).
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from rig.errors import ConfigError
from rig.wire import read_capture

pytestmark = pytest.mark.skipif(
    shutil.which("tcpdump") is None or os.geteuid() != 0, reason="needs tcpdump and root to capture on lo"
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pki")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    yield server
    server.close()


def serve_once(listener: socket.socket, certificate: tuple[Path, Path]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384")
    context.options |= ssl.OP_NO_TICKET
    context.load_cert_chain(*certificate)
    connection, _ = listener.accept()
    with context.wrap_socket(connection, server_side=True) as tls:
        tls.settimeout(10)
        tls.sendall(b"hello hub")
        tls.recv(100)


def _closed_both_ways(capture: Path) -> bool:
    try:
        view = read_capture(capture, partial=True)
    except ConfigError:
        return False  # not even the file header written yet
    return view.main is not None and all(view.main.side(s).fin_time is not None for s in ("client", "server"))


def test_a_real_tcpdump_capture_of_a_tls_handshake(
    tmp_path: Path, certificate: tuple[Path, Path], listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    out = tmp_path / "capture.pcap"
    # --immediate-mode: without it libpcap hands packets over in blocks, and those of the last block
    # before the stop are lost; -Z root: tcpdump would drop to its own user, who may not write to tmp_path.
    tcpdump = subprocess.Popen(
        [
            "tcpdump",
            "-i",
            "lo",
            "--immediate-mode",
            "-U",
            "-n",
            "-Z",
            "root",
            "-w",
            str(out),
            f"tcp port {port}",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tcpdump.stderr is not None
        # Packets before "listening on" are not captured.
        first_line = tcpdump.stderr.readline()
        assert "listening on lo" in first_line, first_line
        server = threading.Thread(target=serve_once, args=(listener, certificate), daemon=True)
        server.start()
        client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_context.check_hostname = False
        client_context.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            client_port = tls.getsockname()[1]
            assert tls.recv(100) == b"hello hub"
            tls.sendall(b"bye")
        server.join(10)
        # The FINs are the last packets: stop tcpdump once they are in the file (-U writes each packet).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _closed_both_ways(out):
            time.sleep(0.05)
    finally:
        tcpdump.terminate()
        tcpdump.wait(10)
    view = read_capture(out)
    assert view.link == "ethernet"
    connection = view.main
    assert connection is not None and len(view.connections) == 1
    assert (connection.client.port, connection.server.port, connection.joined) == (client_port, port, False)
    assert connection.cipher_suite_name == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    assert connection.server_name == "localhost"
    client = [r.content for r in connection.client_side.records]
    server = [r.content for r in connection.server_side.records]
    # OpenSSL puts each handshake message of its flight in a record of its own.
    assert server[:4] == ["ServerHello", "Certificate", "ServerKeyExchange", "ServerHelloDone"]
    assert client[:4] == ["ClientHello", "ClientKeyExchange", "ChangeCipherSpec", "Finished (encrypted)"]
    assert [m.name for m in connection.server_side.messages] == [
        "ServerHello",
        "Certificate",
        "ServerKeyExchange",
        "ServerHelloDone",
    ]
    assert server[-3:-1] == ["ChangeCipherSpec", "Finished (encrypted)"]
    assert "application data" in client and "application data" in server
    assert connection.client_side.holes == [] and connection.server_side.holes == []
    assert connection.closed in ("FIN by server, FIN by client", "FIN by client, FIN by server")
