"""The sim's mosquitto: unprivileged, both listeners up before start() returns, nothing left behind."""

from __future__ import annotations

import os
import pwd
import socket
import ssl
import tempfile
from pathlib import Path

import pytest

from rig.errors import InfrastructureError
from rig.sim.broker import Broker
from rig.sim.pki import Pki
from rig.sim.procs import free_port


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return int(line.split()[1])


def test_broker_listens_on_both_ports_and_stop_leaves_nothing(tmp_path: Path, sim_pki: Pki) -> None:
    broker = Broker(tmp_path / "broker", sim_pki, free_port(), free_port())
    broker.start(timeout=10)
    pid = broker.pid
    assert pid is not None
    try:
        assert (tmp_path / "broker" / "mosquitto.pid").read_text() == f"{pid}\n"
        for port in (broker.tls_port, broker.plain_port):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        if os.geteuid() == 0:
            assert uid_of(pid) == pwd.getpwnam("nobody").pw_uid  # never root
    finally:
        broker.stop()
    assert not Path(f"/proc/{pid}").exists()
    assert not (tmp_path / "broker" / "mosquitto.pid").exists()
    broker.stop()  # idempotent


@pytest.mark.skipif(os.geteuid() != 0, reason="the private runtime folder is used only when running as root")
def test_certificate_copies_are_removed_once_the_broker_listens(tmp_path: Path, sim_pki: Pki) -> None:
    before = set(Path(tempfile.gettempdir()).glob("rig-sim-broker-*"))
    broker = Broker(tmp_path / "broker", sim_pki, free_port(), free_port())
    broker.start(timeout=10)
    try:
        assert set(Path(tempfile.gettempdir()).glob("rig-sim-broker-*")) <= before
        assert not (tmp_path / "broker" / "runtime-dir").exists()
        # Still serving TLS with the certificates it loaded at start.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(sim_pki.root_pem))
        ctx.load_cert_chain(str(sim_pki.observer_pem), str(sim_pki.observer_key))
        raw = socket.create_connection(("127.0.0.1", broker.tls_port), timeout=5)
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])
        assert subject["commonName"] == "sim-ats.iot.us-east-1.amazonaws.com"
    finally:
        broker.stop()


def test_port_in_use_is_reported_with_the_ports_and_the_log(tmp_path: Path, sim_pki: Pki) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = Broker(tmp_path / "broker", sim_pki, port, free_port())
        with pytest.raises(InfrastructureError) as info:
            broker.start(timeout=10)
    message = str(info.value)
    assert message.startswith(
        f"mosquitto exited with code 1 at start (ports {port}/{broker.plain_port} taken?)"
    )
    assert str(tmp_path / "broker" / "mosquitto.log") in message
    assert broker.pid is None
