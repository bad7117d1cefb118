"""The bench router's SSH side: a real OpenSSH sshd with a private config, host key and bench key.

The harness reaches the simulated router exactly as a real one: `ssh_hosts.router` in the bench file,
key authentication only, the host key pinned. This module prepares everything sshd needs in one
folder (`DIR/ssh`): a generated Ed25519 host key, a generated Ed25519 bench (client) key that is the
only authorized key, `sshd_config` listening on 127.0.0.1 at a free port, and a PATH for sessions
whose first entry is the sim's `bin/` folder, where `simrouter` runs `python -m rig.sim.simrouter
--dir DIR` (the router's command, like `mwan3` on OpenWrt). sshd runs in the foreground (`-D -e`)
under `rig.sim.procs`, so `rig sim down` stops it and the sessions it forked.

Observed on this machine (sim-notes §4): sshd must be run by absolute path, `/run/sshd` must exist,
start→listening takes ~15 ms, paramiko connects in 60–115 ms.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rig.errors import InfrastructureError

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
SESSION_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def generate_key(path: Path, comment: str) -> str:
    """Write an Ed25519 key pair (`path`, `path.pub`, OpenSSH formats); return the public line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    line = f"{public.decode()} {comment}"
    path.with_name(path.name + ".pub").write_text(line + "\n")
    return line


@dataclass(frozen=True)
class SshdSetup:
    """The files of one sim's sshd and what a bench file needs to log in."""

    folder: Path
    port: int
    user: str
    config: Path
    host_key: Path
    bench_key: Path

    @property
    def host_key_line(self) -> str:
        """The known_hosts line to pin: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`."""
        key_type, key_b64 = self.host_key.with_name(self.host_key.name + ".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {key_type} {key_b64}"

    def argv(self) -> list[str]:
        return [str(SSHD), "-D", "-e", "-f", str(self.config)]


def prepare(folder: Path, port: int, bin_dir: Path) -> SshdSetup:
    """Generate keys (once per folder) and write `sshd_config` for `port`; check it with `sshd -t`."""
    if not SSHD.is_file():
        raise InfrastructureError(f"{SSHD} not found — install openssh-server (`make setup` does it as root)")
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    host_key = folder / "host_ed25519"
    bench_key = folder / "bench_ed25519"
    if not host_key.is_file():
        generate_key(host_key, "rig-sim-router")
    if not bench_key.is_file():
        generate_key(bench_key, "rig-sim-bench")
    authorized = folder / "authorized_keys"
    authorized.write_text(bench_key.with_name(bench_key.name + ".pub").read_text())
    authorized.chmod(0o600)
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "LogLevel VERBOSE",
                # The router's commands (`simrouter`) come first on a session's PATH. SHLVL=1 keeps a
                # bash login shell from sourcing the account's ~/.bashrc (bash does for sshd sessions
                # at shell level < 2): a router's command shell runs no user start-up files, and on
                # this machine root's .bashrc runs `pyenv rehash`, which can block on its lock.
                f"SetEnv PATH={bin_dir.resolve()}:{SESSION_PATH} SHLVL=1",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    elif not PRIVSEP_DIR.is_dir():
        raise InfrastructureError(f"sshd needs {PRIVSEP_DIR}; create it as root (mkdir -m 755 {PRIVSEP_DIR})")
    try:
        check = subprocess.run(
            [str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True, timeout=10, check=False
        )
    except subprocess.TimeoutExpired:
        raise InfrastructureError(f"`sshd -t -f {config}` did not answer within 10 s") from None
    if check.returncode != 0:
        raise InfrastructureError(f"sshd rejects {config}: {check.stderr.strip()}")
    return SshdSetup(folder, port, getpass.getuser(), config, host_key, bench_key)


def install_simrouter(bin_dir: Path, sim_dir: Path, python: str) -> Path:
    """Write the router's `simrouter` command for this sim into `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "simrouter"
    path.write_text(f'#!/bin/sh\nexec "{python}" -m rig.sim.simrouter --dir "{sim_dir.resolve()}" "$@"\n')
    path.chmod(0o755)
    return path


def ssh_available() -> bool:
    """Whether the OpenSSH client is installed (tests log in with it as well as with paramiko)."""
    return shutil.which("ssh") is not None
