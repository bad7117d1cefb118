"""The sim's mosquitto: unprivileged, both listeners up before start() returns, nothing left behind."""

from __future__ import annotations

import os
import pwd
import signal
import socket
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
    runtime = Path((tmp_path / "broker" / "runtime-dir").read_text().strip()) if os.geteuid() == 0 else None
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
    if runtime is not None:
        assert not runtime.exists()
    broker.stop()  # idempotent


@pytest.mark.skipif(os.geteuid() != 0, reason="the private runtime folder is used only when running as root")
def test_next_start_removes_the_runtime_folder_of_a_broker_killed_by_pid(
    tmp_path: Path, sim_pki: Pki
) -> None:
    first = Broker(tmp_path / "broker", sim_pki, free_port(), free_port())
    first.start(timeout=10)
    assert first.pid is not None
    runtime = Path((tmp_path / "broker" / "runtime-dir").read_text().strip())
    os.kill(first.pid, signal.SIGKILL)  # as `rig sim down` from another process would stop it
    os.waitpid(first.pid, 0)
    second = Broker(tmp_path / "broker", sim_pki, free_port(), free_port())
    second.start(timeout=10)
    try:
        assert not runtime.exists()
    finally:
        second.stop()


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
