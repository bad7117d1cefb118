"""One SSH connection to a bench machine: key authentication only, host key pinned, reconnect on loss.

The router driver (and any other driver that logs into a bench machine) goes through `SshConnection`.
It is deliberately strict: the host key must be one of the bench file's `host_keys` lines; an unknown or
changed key is refused with the offered and pinned SHA256 fingerprints (nothing is ever added to a
known_hosts file, no AutoAdd/Warning policy). Authentication uses the key file or the agent, never a
password. A connection that died (the router rebooted, sshd restarted) is reopened before the next
command; a command that could not even be started on a dead connection is started again on the new one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from dataclasses import dataclass

import paramiko

from rig.config import SshHostConfig
from rig.drivers.part import Part
from rig.errors import ConfigError, InfrastructureError
from rig.events import EventLog

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often a running command is looked at for output, exit and its deadline


@dataclass(frozen=True)
class CommandResult:
    """What a remote command did."""

    host: str  # the ssh_hosts name
    command: str
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.rc == 0


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's form: `SHA256:` + unpadded base64 of the key blob's SHA-256."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def pinned_keys(name: str, config: SshHostConfig) -> list[paramiko.PKey]:
    """The keys of `host_keys` (known_hosts lines, with or without the host field)."""
    keys = []
    for line in config.host_keys:
        fields = line.split()
        kind, blob = fields[-2], fields[-1]
        try:
            keys.append(paramiko.PKey.from_type_string(kind, base64.b64decode(blob)))
        except (paramiko.SSHException, binascii.Error, ValueError) as exc:
            raise ConfigError(
                f"ssh_hosts.{name}.host_keys: cannot read the {kind} key ({exc}); "
                "copy the line from `ssh-keyscan` again"
            ) from exc
    return keys


def _describe(keys: list[paramiko.PKey]) -> str:
    return ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in keys)


class _RefuseUnpinned(paramiko.MissingHostKeyPolicy):
    """The server offered a key of a type none of the pinned keys has: refuse, naming both."""

    def __init__(self, connection: SshConnection) -> None:
        self.connection = connection

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise self.connection.unknown_key(key)


class SshConnection(Part):
    """A lazily opened, self-healing SSH connection to one `ssh_hosts` entry."""

    def __init__(self, name: str, config: SshHostConfig, *, events: EventLog | None = None) -> None:
        self.name = name
        self.config = config
        self.events = events if events is not None else EventLog()
        self.pinned = pinned_keys(name, config)
        self._client: paramiko.SSHClient | None = None
        self._ever_connected = False

    @property
    def where(self) -> str:
        return f"{self.name} ({self.config.user}@{self.config.host}:{self.config.port})"

    @property
    def connected(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def open(self, timeout: float | None = None) -> None:
        """Open the connection (if it is not open and alive) within `timeout` seconds (default
        `connect_timeout_s` of the host's entry); errors say what to check."""
        if self.connected:
            return
        self.close()
        cfg = self.config
        wait = cfg.connect_timeout_s if timeout is None else timeout
        client = paramiko.SSHClient()
        lookup = cfg.host if cfg.port == 22 else f"[{cfg.host}]:{cfg.port}"
        for key in self.pinned:
            client.get_host_keys().add(lookup, key.get_name(), key)
        client.set_missing_host_key_policy(_RefuseUnpinned(self))
        started = time.monotonic()
        try:
            client.connect(
                cfg.host,
                port=cfg.port,
                username=cfg.user,
                key_filename=str(cfg.key_file) if cfg.key_file is not None else None,
                allow_agent=cfg.agent,
                look_for_keys=False,
                password=None,
                timeout=wait,
                banner_timeout=wait,
                auth_timeout=wait,
                channel_timeout=wait,
            )
        except InfrastructureError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            if exc.key.get_name() not in {k.get_name() for k in self.pinned}:
                # paramiko reports a key of a type that is not pinned as "bad": it is unknown, not changed.
                raise self.unknown_key(exc.key) from exc
            raise InfrastructureError(
                f"{self.where}: host key changed (offered {exc.key.get_name()} {fingerprint(exc.key)}, "
                f"pinned {_describe(self.pinned)}) — refused; if the machine was replaced or re-flashed, "
                f"check its new key on a trusted network and update ssh_hosts.{self.name}.host_keys"
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            how = f"the key {cfg.key_file}" if cfg.key_file is not None else "the agent's keys"
            raise InfrastructureError(
                f"{self.where}: key authentication failed with {how} ({exc}); check that its public "
                f"key is in the authorized_keys of {cfg.user} there"
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise InfrastructureError(
                f"{self.where}: cannot connect ({type(exc).__name__}: {exc}); check the machine is "
                f"powered, reachable from this host and runs sshd on port {cfg.port}"
            ) from exc
        transport = client.get_transport()
        assert transport is not None  # connect() succeeded
        if cfg.keepalive_s > 0:
            transport.set_keepalive(max(1, round(cfg.keepalive_s)))
        self._client = client
        kind = "ssh_reconnected" if self._ever_connected else "ssh_connected"
        self._ever_connected = True
        self.events.emit(
            kind,
            self.name,
            host=cfg.host,
            port=cfg.port,
            host_key=fingerprint(transport.get_remote_server_key()),
            seconds=round(time.monotonic() - started, 3),
        )

    def unknown_key(self, key: paramiko.PKey) -> InfrastructureError:
        """The refusal of a host key of a type none of the pinned keys has."""
        cfg = self.config
        return InfrastructureError(
            f"{self.where}: unknown host key (offered {key.get_name()} {fingerprint(key)}, pinned "
            f"{_describe(self.pinned)}) — refused; if this machine is the right one, check its key on a "
            f"trusted network (ssh-keyscan -p {cfg.port} {cfg.host}) and add it to "
            f"ssh_hosts.{self.name}.host_keys"
        )

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def open_channel(self, command: str, timeout: float) -> paramiko.Channel:
        """Start `command` on a new channel; a dead connection is reopened once before giving up."""
        for attempt in (1, 2):
            self.open()
            assert self._client is not None
            transport = self._client.get_transport()
            try:
                if transport is None:
                    raise paramiko.SSHException("no transport")
                channel = transport.open_session(timeout=min(timeout, self.config.connect_timeout_s))
                channel.exec_command(command)
                return channel
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self.events.emit("ssh_connection_lost", self.name, error=str(exc), command=command)
                self.close()
                if attempt == 2:
                    raise InfrastructureError(
                        f"{self.where}: cannot start `{command}` ({exc}); check the machine is up"
                    ) from exc
        raise AssertionError("unreachable")

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run `command` (a shell command line) and wait up to `timeout` s for its exit status."""
        started = time.monotonic()
        deadline = started + timeout
        channel = self.open_channel(command, timeout)
        out, err = bytearray(), bytearray()
        try:
            channel.shutdown_write()
            channel.settimeout(POLL_S)
            while True:
                try:
                    chunk: bytes | None = channel.recv(65536)
                except TimeoutError:
                    chunk = None
                if chunk:
                    out += chunk
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if chunk == b"" and channel.status_event.wait(POLL_S):
                    break
                if time.monotonic() > deadline:
                    raise InfrastructureError(
                        f"{self.where}: `{command}` did not finish within {timeout:g} s "
                        f"(output so far: {bytes(out[-300:]).decode(errors='replace')!r})"
                    )
                if channel.closed and not channel.status_event.is_set():
                    raise InfrastructureError(
                        f"{self.where}: the connection dropped while `{command}` ran; check the machine"
                    )
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            rc = channel.recv_exit_status()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self.close()
            raise InfrastructureError(f"{self.where}: `{command}` failed: {exc}") from exc
        finally:
            channel.close()
        result = CommandResult(
            host=self.name,
            command=command,
            rc=rc,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            seconds=round(time.monotonic() - started, 3),
        )
        self.events.emit("ssh_command", self.name, command=command, rc=rc, seconds=result.seconds)
        return result
