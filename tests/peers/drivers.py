"""Real peers for the driver tests: a pty "device", ser2net serving it as rfc2217://, an OpenSSH sshd.

Each fixture starts a real process or kernel object, picks free ports, and stops what it started in its
finalizer. They are generic: any driver test (UART, router, programmers, cloud) can use them.

- `pty_device`: a pty pair in raw mode whose slave is reachable through a stable symlink shaped like
  `/dev/serial/by-id/usb-…-if00`; the test writes the "device's" bytes to the master, can make the port
  vanish (the pty closes, the link dangles) and come back (a new pty behind the same link).
- `ser2net`: a factory starting `ser2net` with an rfc2217 accepter on a free port for a device path.
- `sshd`: an OpenSSH server on 127.0.0.1 and a free port with a generated Ed25519 host key and client key
  (key authentication only); `restart()` drops every connection like a rebooted router would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import signal
import socket
import subprocess
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rig.drivers.uart.port import Uart, UartTimeout

SSHD = "/usr/sbin/sshd"
SER2NET = shutil.which("ser2net") or "/usr/sbin/ser2net"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s") from None
            time.sleep(0.01)


def wait_bound(port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    """Wait until something listens on 127.0.0.1:`port`, without connecting to it.

    A probe connection would be a session of its own: to a ser2net with `kickolduser` it takes the
    device from a client already connected (which is then kicked off, losing what was in flight).
    A bind that fails with EADDRINUSE despite SO_REUSEADDR means a listener (TIME_WAIT does not count).
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode} before listening")
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return
                raise
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
        time.sleep(0.01)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 2.0) -> None:
    """terminate → wait → kill (ser2net sometimes ignores SIGTERM with a session open)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


# ---------------------------------------------------------------------------------------------- pty


class PtyDevice:
    """A serial "device": the test writes to the pty master what the DUT would send on its TX line."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.slave = -1
        self.appear()

    @property
    def url(self) -> str:
        return str(self.link)

    def appear(self) -> None:
        """A new pty behind the link (a re-enumerated USB device gets a new node, the by-id name stays)."""
        self.master, self.slave = os.openpty()
        # Raw from the start: a fresh pty is cooked and would echo and translate what we write.
        tty.setraw(self.slave)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(self.slave))
        tmp.replace(self.link)

    def vanish(self) -> None:
        """The device goes away: both ends close and the link dangles, as when a USB CDC re-enumerates."""
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    def write(self, data: bytes, timeout: float = 10.0) -> None:
        """Write all of `data` (the pty applies backpressure when nobody reads; bounded by `timeout`)."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"pty {self.link}: {len(view)} bytes not taken within {timeout} s")
            _, ready, _ = select.select([], [self.master], [], remaining)
            if not ready:
                continue
            try:
                written = os.write(self.master, view[:65536])
            except BlockingIOError:
                continue
            view = view[written:]

    def read(self, timeout: float) -> bytes:
        """What the host wrote to the device (its RX line), up to `timeout` seconds."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.master, 65536)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def close(self) -> None:
        self.vanish()


@pytest.fixture
def pty_device(tmp_path: Path) -> Iterator[PtyDevice]:
    """A raw pty behind `…/dev/serial/by-id/usb-rig-test-if00`."""
    device = PtyDevice(tmp_path / "dev" / "serial" / "by-id" / "usb-rig-test-if00")
    yield device
    device.close()


# ---------------------------------------------------------------------------------------------- ser2net


class Ser2net:
    """ser2net 4 serving one device as RFC 2217 (or raw TCP) on 127.0.0.1:`port`."""

    def __init__(self, device: str, workdir: Path, baud: int = 115200, *, raw: bool = False) -> None:
        self.device = device
        self.raw = raw  # a plain TCP accepter (socket://) instead of telnet RFC 2217
        self.workdir = workdir
        self.baud = baud
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "ser2net.yaml"
        self.config.write_text(
            "%YAML 1.1\n---\n"
            "connection: &dut\n"
            f"  accepter: {'' if raw else 'telnet(rfc2217),'}tcp,127.0.0.1,{self.port}\n"
            f"  connector: serialdev,{device},{baud}n81,local\n"
            "  options:\n"
            "    kickolduser: true\n"
        )

    @property
    def url(self) -> str:
        return f"{'socket' if self.raw else 'rfc2217'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.workdir / "ser2net.log").open("ab")
        self.process = subprocess.Popen(
            [SER2NET, "-n", "-d", "-c", str(self.config), "-P", str(self.workdir / "ser2net.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_bound(self.port, 5.0, self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@pytest.fixture
def ser2net(tmp_path: Path) -> Iterator[Callable[..., Ser2net]]:
    """Factory: `ser2net(device_path, raw=False)` starts a ser2net for that device (rfc2217://, or
    socket:// with `raw=True`); all are stopped afterwards."""
    if not os.path.exists(SER2NET):
        pytest.skip("ser2net is not installed (apt-get install ser2net)")
    started: list[Ser2net] = []

    def start(device: str, raw: bool = False) -> Ser2net:
        server = Ser2net(device, tmp_path / f"ser2net{len(started)}", raw=raw)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


# ---------------------------------------------------------------------------------------------- sshd


def keygen(path: Path, comment: str, kind: str = "ed25519") -> Path:
    """An unencrypted key pair at `path` / `path.pub`."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        timeout=20,
    )
    return path


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (sshd's per-connection processes)."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    for child in _children(pid):
        out.append(child)
        out += _descendants(child)
    return out


class SshServer:
    """OpenSSH sshd with a private config: key auth only, generated host and client keys."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
        workdir.mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(workdir / "host_ed25519", "rig-test-host")
        self.client_key = keygen(workdir / "client_ed25519", "rig-test-client")
        (workdir / "authorized_keys").write_text((workdir / "client_ed25519.pub").read_text())
        (workdir / "authorized_keys").chmod(0o600)
        self.config = workdir / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"PidFile {workdir / 'sshd.pid'}\nAuthorizedKeysFile {workdir / 'authorized_keys'}\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\nLogLevel VERBOSE\n"
            "ClientAliveInterval 0\n"
            # A router's command shell runs no user start-up files: SHLVL=1 keeps bash from sourcing
            # the account's ~/.bashrc for sshd sessions (here it runs `pyenv rehash`, which can block).
            "SetEnv SHLVL=1\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def host_key_line(self, key: Path | None = None) -> str:
        """The known_hosts line that pins `key` (default: this server's host key) for this server."""
        kind, blob = (key or self.host_key).with_suffix(".pub").read_text().split()[:2]
        return f"[{self.host}]:{self.port} {kind} {blob}"

    def host_config(self, **overrides: object) -> dict[str, object]:
        """An `ssh_hosts` entry of a bench file for this server."""
        entry: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": str(self.client_key),
            "host_keys": [self.host_key_line()],
            "connect_timeout_s": 5,
            "keepalive_s": 1,
        }
        entry.update(overrides)
        return entry

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        log = (self.workdir / "sshd.log").open("ab")
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_listening(self.port, 5.0, self.process)

    def stop(self) -> None:
        """Stop the daemon and every connection it serves (sshd's children outlive their parent)."""
        if self.process is None:
            return
        # Deepest first, each reaped by its still-living parent before that parent goes: a process
        # orphaned to init would stay a zombie where init does not reap (a container's PID 1).
        for pid in reversed(_descendants(self.process.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 1.0
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.005)
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        """Like a rebooted router: every session dropped, the same host key and port again."""
        self.stop()
        self.start()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    """A running OpenSSH sshd on a free port; stopped with all its sessions afterwards."""
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server is not installed (apt-get install openssh-server)")
    server = SshServer(tmp_path / "sshd")
    server.start()
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------- bench


NETCTL = """#!/bin/sh
# A tiny "router": `select PATH` switches the uplink, `route` prints it like `ip route get`,
# `select-later PATH SECONDS` switches in the background (a slow mwan3 restart), `args …` echoes its
# arguments one per line between <> (to see exactly what the shell received).
state="$(dirname "$0")/route"
case "$1" in
  select) printf '%s\\n' "$2" > "$state" ;;
  select-later) (sleep "$3"; printf '%s\\n' "$2" > "$state") >/dev/null 2>&1 & ;;
  route) printf 'default via 10.0.0.1 dev %s proto static\\n' "$(cat "$state" 2>/dev/null || echo none)" ;;
  args) shift; for a in "$@"; do printf '<%s>\\n' "$a"; done ;;
  fail) echo "uci: Entry not found" >&2; exit 1 ;;
  *) echo "netctl: unknown command $1" >&2; exit 2 ;;
esac
"""


def netctl(directory: Path) -> Path:
    """Install the tiny router command set in `directory`; its uplink state is `directory/route`."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "netctl"
    script.write_text(NETCTL)
    script.chmod(0o755)
    return script


def bench_dict(
    ssh_hosts: dict[str, object], paths: dict[str, object], baseline: str, **extra: object
) -> dict[str, object]:
    """A minimal valid bench file (as a mapping) around the given hosts and paths."""
    bench: dict[str, object] = {
        "name": "drivers-test",
        "kind": "real",
        "dut": {"part": "32MZ2048EFM100", "client_id": "hub-test", "uart": {"url": "socket://127.0.0.1:9"}},
        "programmer": {"kind": "pic32prog", "executable": "pic32prog"},
        "ssh_hosts": ssh_hosts,
        "paths": paths,
        "baseline": baseline,
        "cloud": {"endpoint": "example.invalid", "client_id": "rig-observer-test"},
        "timeouts": {"path_switch_s": 10},
    }
    bench.update(extra)
    return bench


def netctl_paths(script: Path, host: str = "router") -> dict[str, object]:
    """`landline` and `satellite` paths switched and verified by the tiny router command set."""
    return {
        name: {
            "host": host,
            "activate": [f"{script} select {name}"],
            "verify": {
                "command": f"{script} route",
                "expect": f"dev {name} ",
                "timeout_s": 5,
                "interval_s": 0.05,
            },
            "rtt_ms": rtt,
        }
        for name, rtt in (("landline", 30), ("satellite", 600))
    }


def settle(device: PtyDevice, uart: Uart, timeout: float = 10.0) -> None:
    """Wait until bytes written to `device` reach `uart`.

    ser2net opens the device only when a client connects, and opening flushes what is pending: bytes
    the device writes before that are gone (a real bench has the same race). Tests that compare bytes
    start after this handshake; `uart.record()` afterwards starts a clean file.
    """
    deadline = time.monotonic() + timeout
    while True:
        device.write(b"settle\n")
        try:
            uart.expect("^settle$", timeout=0.1)
            return
        except UartTimeout:
            if time.monotonic() > deadline:
                raise
