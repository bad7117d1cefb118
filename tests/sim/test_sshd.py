"""The router's sshd on its own: key-only login with the pinned host key, through paramiko and ssh."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from rig.sim.procs import Processes, free_port, wait_listening
from rig.sim.sshd import SshdSetup, generate_key, install_simrouter, prepare


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdSetup]:
    processes = Processes(tmp_path / "run")
    install_simrouter(tmp_path / "bin", tmp_path, sys.executable)
    setup = prepare(tmp_path / "ssh", free_port(), tmp_path / "bin")
    processes.start("sshd", setup.argv(), log=tmp_path / "sshd.log")
    try:
        wait_listening(setup.port, 10, what="sshd", log=tmp_path / "sshd.log")
        yield setup
    finally:
        processes.stop_all()


def client(setup: SshdSetup, known_hosts: str, key: Path) -> paramiko.SSHClient:
    ssh = paramiko.SSHClient()
    entry = paramiko.hostkeys.HostKeyEntry.from_line(known_hosts)
    assert entry is not None
    for host in entry.hostnames:
        ssh.get_host_keys().add(host, entry.key.get_name(), entry.key)
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.connect(
        "127.0.0.1",
        port=setup.port,
        username=setup.user,
        key_filename=str(key),
        allow_agent=False,
        look_for_keys=False,
        timeout=5,
        banner_timeout=5,
        auth_timeout=5,
    )
    return ssh


def run(ssh: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, stdout, _ = ssh.exec_command(command, timeout=10)
    output = stdout.read().decode()
    return stdout.channel.recv_exit_status(), output


def test_the_bench_key_logs_in_with_the_pinned_host_key_and_finds_simrouter(sshd: SshdSetup) -> None:
    with client(sshd, sshd.host_key_line, sshd.bench_key) as ssh:
        code, output = run(ssh, "command -v simrouter")
    assert code == 0
    assert output.strip() == str(sshd.folder.parent / "bin" / "simrouter")


def test_the_host_key_line_names_the_port_in_known_hosts_form(sshd: SshdSetup) -> None:
    host, key_type, _ = sshd.host_key_line.split()
    assert host == f"[127.0.0.1]:{sshd.port}"
    assert key_type == "ssh-ed25519"


def test_a_key_that_is_not_the_bench_key_is_refused(sshd: SshdSetup, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_ed25519"
    generate_key(stranger, "stranger")
    with pytest.raises(paramiko.AuthenticationException):
        client(sshd, sshd.host_key_line, stranger)


def test_a_server_with_another_host_key_is_refused_before_login(sshd: SshdSetup, tmp_path: Path) -> None:
    other = tmp_path / "other_host"
    public = generate_key(other, "other").split()
    pinned = f"[127.0.0.1]:{sshd.port} {public[0]} {public[1]}"
    with pytest.raises(paramiko.BadHostKeyException):
        client(sshd, pinned, sshd.bench_key)


def test_the_openssh_client_logs_in_with_strict_host_key_checking(sshd: SshdSetup, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.host_key_line + "\n")
    result = subprocess.run(
        [
            "ssh",
            "-p",
            str(sshd.port),
            "-i",
            str(sshd.bench_key),
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            f"{sshd.user}@127.0.0.1",
            "echo logged in",
        ],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "logged in\n"), result.stderr


def test_password_login_is_not_offered(sshd: SshdSetup) -> None:
    transport = paramiko.Transport(("127.0.0.1", sshd.port))
    try:
        transport.start_client(timeout=5)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password(sshd.user, "secret")
        assert refused.value.allowed_types == ["publickey"]
    finally:
        transport.close()
