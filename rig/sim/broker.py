"""The simulated bench's MQTT broker: a real mosquitto on 127.0.0.1 behind the AWS IoT Core stand-in.

Two listeners, as AWS IoT has two kinds of client:
- TLS (`tls_port`): `require_certificate`, client certificates from the sim's device CA, the server
  chain of the stand-in. The harness's observer (the `observer` certificate, `cloud.events` in the
  bench file) subscribes here to `$aws/events/presence/#`, as it would to AWS IoT.
- plain (`plain_port`, loopback only, anonymous): where the stand-in relays devices' MQTT sessions
  after it has terminated their TLS, and where it publishes the lifecycle events.

mosquitto 2.0 refuses to run as root without a `user` to drop to, and loads its certificates only
after dropping privileges. So when this process is root the broker runs as `nobody` (sim-notes §8)
from a private runtime folder in the system temp dir, owned by `nobody`, holding its configuration
and copies of the CA, chain and server key: the sim's own folder may sit under a 0700 parent (pytest's
tmp_path does) that `nobody` cannot enter. The folder is removed as soon as both listeners are up
(the certificates are loaded by then); if the starting process died before that, the next `start()`
in the same sim folder removes it. `start()` returns when both listeners
accept connections; `stop()` ends it (SIGTERM, then SIGKILL) and is safe to call twice. The pid is
written to `DIR/mosquitto.pid` so a controller that did not start it can stop it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from rig.errors import InfrastructureError
from rig.sim.pki import Pki

MOSQUITTO = "mosquitto"
_RUN_AS = "nobody"
_RUNTIME_PREFIX = "rig-sim-broker-"


class Broker:
    """mosquitto with a TLS listener (client certificates required) and a plain loopback listener."""

    def __init__(self, directory: Path, pki: Pki, tls_port: int, plain_port: int) -> None:
        self.directory = directory
        self.pki = pki
        self.tls_port = tls_port
        self.plain_port = plain_port
        self.config_path = directory / "mosquitto.conf"
        self.runtime_record = directory / "runtime-dir"
        self._runtime: Path | None = None
        self.log_path = directory / "mosquitto.log"
        self.pid_path = directory / "mosquitto.pid"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto and wait until both listeners accept connections."""
        executable = shutil.which(MOSQUITTO) or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if executable is None:
            raise InfrastructureError(
                "mosquitto not found on PATH or in /usr/sbin — install the Debian package `mosquitto`"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        self.config_path = self._prepare_runtime(user)
        with self.log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [executable, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
            )
        self._process = process
        self.pid_path.write_text(f"{process.pid}\n", encoding="utf-8")
        deadline = time.monotonic() + timeout
        waiting = [self.tls_port, self.plain_port]
        while waiting:
            if process.poll() is not None:
                self.stop()
                raise InfrastructureError(
                    f"mosquitto exited with code {process.returncode} at start "
                    f"(ports {self.tls_port}/{self.plain_port} taken?) — {self.log_path} ends: {_tail(self.log_path)}"
                )
            if _accepts(waiting[0]):
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                self.stop()
                raise InfrastructureError(
                    f"mosquitto did not listen on 127.0.0.1:{waiting[0]} within {timeout:g} s — see {self.log_path}"
                )
            time.sleep(0.05)
        # Listening means the certificates are loaded (mosquitto reads them again only on SIGHUP,
        # which the sim never sends): the copies, the key among them, need not outlive the start.
        self._discard_runtime()

    def _discard_runtime(self) -> None:
        if self._runtime is not None:
            shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = None
            self.runtime_record.unlink(missing_ok=True)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop mosquitto: SIGTERM, then SIGKILL after `timeout`; a no-op when not running."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self.pid_path.unlink(missing_ok=True)
        self._discard_runtime()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(_RUN_AS)
        except KeyError as exc:
            raise InfrastructureError(
                f"mosquitto must not run as root and user {_RUN_AS!r} does not exist — create it"
            ) from exc
        return _RUN_AS

    def _remove_previous_runtime(self) -> None:
        """Remove the runtime folder of an earlier broker of this sim that was stopped by its pid."""
        if not self.runtime_record.is_file():
            return
        previous = Path(self.runtime_record.read_text(encoding="utf-8").strip())
        if (
            previous.name.startswith(_RUNTIME_PREFIX)
            and previous.parent == Path(tempfile.gettempdir())
            and previous.is_dir()
            and not previous.is_symlink()
        ):
            shutil.rmtree(previous, ignore_errors=True)
        self.runtime_record.unlink(missing_ok=True)

    def _prepare_runtime(self, user: str | None) -> Path:
        """Write the configuration where mosquitto, running as `user`, can read it and its files."""
        ca, chain, key = self.pki.device_ca_pem, self.pki.server_chain_pem, self.pki.server_key
        if user is None:
            config = self.directory / "mosquitto.conf"
        else:
            entry = pwd.getpwnam(user)
            self._remove_previous_runtime()
            runtime = Path(tempfile.mkdtemp(prefix=_RUNTIME_PREFIX))
            self._runtime = runtime
            self.runtime_record.write_text(f"{runtime}\n", encoding="utf-8")
            copies = []
            for source in (ca, chain, key):
                target = runtime / source.name
                target.write_bytes(source.read_bytes())
                os.chown(target, entry.pw_uid, entry.pw_gid)
                os.chmod(target, 0o600)
                copies.append(target)
            ca, chain, key = copies
            os.chown(runtime, entry.pw_uid, entry.pw_gid)
            config = runtime / "mosquitto.conf"
        config.write_text(self._config(ca, chain, key), encoding="utf-8")
        if user is not None:
            # A copy beside the sim's other files, for whoever debugs the broker.
            (self.directory / "mosquitto.conf").write_text(
                config.read_text(encoding="utf-8"), encoding="utf-8"
            )
        return config

    def _config(self, ca: Path, chain: Path, key: Path) -> str:
        return "\n".join(
            [
                "# Written by rig.sim.broker; regenerated at every start.",
                "per_listener_settings true",
                "persistence false",
                "log_dest stdout",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "connection_messages true",
                "",
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {ca}",
                f"certfile {chain}",
                f"keyfile {key}",
                "require_certificate true",
                "use_identity_as_username true",
                "tls_version tlsv1.2",
                "allow_anonymous false",
                "",
                f"listener {self.plain_port} 127.0.0.1",
                "allow_anonymous true",
                "",
            ]
        )


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
