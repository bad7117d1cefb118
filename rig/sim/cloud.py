"""The AWS IoT Core stand-in: a TLS 1.2 MQTT endpoint that fails the way AWS was seen to fail.

Run as its own process by `rig sim up`:

    python -m rig.sim.cloud --dir DIR --port P --pki PKI_DIR --broker-port PLAIN_PORT --endpoint NAME
                            [--mode silent|alert|close] [--hold SECONDS]

It prints `listening on 127.0.0.1:P` when ready and exits cleanly on SIGTERM. Each connection is
served by Python's `ssl` over memory BIOs, so every byte the server would send passes through this
module first:

- TLS 1.2 only, ECDHE-RSA suites, no session tickets (AWS does not support them).
- SNI is required and must be the endpoint: no SNI or another name is refused with a fatal
  `unrecognized_name` alert and a close, whatever the mode (the front door refuses before any
  handshake state exists; bench.md §6 saw a 7-byte alert read for a missing SNI).
- A client certificate from the sim's device CA is required.
- The first flight (ServerHello…ServerHelloDone) is coalesced into one record (`cloud_tls`).
- A handshake that fails after SNI (bad client certificate, transcript mismatch caught at the client's
  CertificateVerify, damaged Finished) is answered per mode, read from `DIR/cloud.mode` at each new
  connection so `rig sim fault cloud-mode X` works live:
  `silent` — the incident: OpenSSL's pending fatal alert is swallowed and the TCP connection is held
  open and silent until the client closes or `--hold` expires; `alert` — the alert is sent, then a
  close; `close` — a close without alert.
- While `DIR/cloud.down` exists (`rig sim fault cloud-down`) every new connection is reset at once.
- After the handshake, MQTT 3.1.1 is relayed to mosquitto's plain listener, with AWS-style lifecycle
  events (`cloud_mqtt`). `DIR/cloud.log` gets one JSON line per connection when it ends, and at once a
  line for each handshake flight it sent (`"event": "flight sent"`, its size and sha256) and one when it
  gives up on a handshake (`"event": "gave up"`: OpenSSL's reason, the alert sent or withheld).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import ssl
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rig.errors import ConfigError, RigError
from rig.sim.cloud_mqtt import EventPublisher
from rig.sim.cloud_session import Connection, ServerSettings
from rig.sim.pki import load_pki

log = logging.getLogger(__name__)

MODES = ("silent", "alert", "close")
MODE_FILE = "cloud.mode"
DOWN_FILE = "cloud.down"
LOG_FILE = "cloud.log"
CIPHERS = (
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA"
)


def write_mode(directory: Path, mode: str) -> None:
    """Set the failure mode used for the stand-in's next connections."""
    if mode not in MODES:
        raise ConfigError(f"cloud mode {mode!r}: use one of {', '.join(MODES)}")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{MODE_FILE}.tmp"
    tmp.write_text(mode + "\n", encoding="utf-8")
    tmp.replace(directory / MODE_FILE)


def read_mode(directory: Path, default: str = "silent") -> str:
    """The failure mode in `DIR/cloud.mode`, or `default` when the file is absent or unreadable."""
    try:
        mode = (directory / MODE_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return default
    if mode not in MODES:
        log.warning("%s: %r is not one of %s; using %s", directory / MODE_FILE, mode, MODES, default)
        return default
    return mode


def set_down(directory: Path, down: bool) -> None:
    """Make the endpoint reset every new connection (True) or serve again (False)."""
    flag = directory / DOWN_FILE
    if down:
        flag.write_text("down\n", encoding="utf-8")
    else:
        flag.unlink(missing_ok=True)


def server_context(pki_dir: Path, endpoint: str, sni_seen: dict[int, str | None]) -> ssl.SSLContext:
    """The stand-in's TLS context; the SNI callback records each connection's name in `sni_seen`."""
    pki = load_pki(pki_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_TICKET
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(pki.device_ca_pem))
    ctx.load_cert_chain(str(pki.server_chain_pem), str(pki.server_key))

    def on_sni(obj: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        sni_seen[id(obj)] = name
        if name != endpoint:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    ctx.sni_callback = on_sni
    return ctx


class CloudServer:
    """The listening endpoint: accepts connections and serves each as a `Connection` task."""

    def __init__(self, settings: ServerSettings, port: int) -> None:
        self.settings = settings
        self.port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = (settings.directory / LOG_FILE).open("a", encoding="utf-8")
        settings.journal = self._write_log

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if (self.settings.directory / DOWN_FILE).exists():
                record = self._refuse_down(writer)
            else:
                mode = read_mode(self.settings.directory, self.settings.default_mode)
                try:
                    record = await Connection(self.settings, mode, reader, writer).serve()
                except Exception as exc:
                    # A defect of the stand-in itself: on stderr (the part's log) and in cloud.log.
                    log.exception(
                        "connection from %s failed in the stand-in", writer.get_extra_info("peername")
                    )
                    writer.close()
                    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "handshake": "stand-in error"}
                    record["error"] = repr(exc)
            self._write_log(record)
        finally:
            self._tasks.discard(task)

    def _refuse_down(self, writer: asyncio.StreamWriter) -> dict[str, Any]:
        peer = writer.get_extra_info("peername")
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: close with RST, as an endpoint whose service is gone.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        return {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "peer": f"{peer[0]}:{peer[1]}",
            "handshake": "refused",
            "error": f"cloud down ({DOWN_FILE} present): connection reset",
        }

    def _write_log(self, record: dict[str, Any]) -> None:
        self._log.write(json.dumps(record, sort_keys=True) + "\n")
        self._log.flush()

    async def stop(self) -> None:
        """Stop listening, end every connection (their lifecycle events go out), close the log."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), 5.0)
        await self.settings.publisher.close()
        self._log.close()


async def run(args: argparse.Namespace) -> None:
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    write_mode(directory, args.mode)
    sni_seen: dict[int, str | None] = {}
    settings = ServerSettings(
        directory=directory,
        endpoint=args.endpoint,
        context=server_context(args.pki, args.endpoint, sni_seen),
        sni_seen=sni_seen,
        broker_port=args.broker_port,
        default_mode=args.mode,
        hold_s=args.hold,
        publisher=EventPublisher("127.0.0.1", args.broker_port, f"rig-sim-cloud-{args.port}"),
    )
    server = CloudServer(settings, args.port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    await stop.wait()
    await server.stop()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rig.sim.cloud", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dir", type=Path, required=True, help="state folder: cloud.mode, cloud.down, cloud.log"
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 to serve TLS on")
    parser.add_argument("--pki", type=Path, required=True, help="folder of the sim's PKI (rig.sim.pki)")
    parser.add_argument("--broker-port", type=int, required=True, help="mosquitto's plain loopback port")
    parser.add_argument("--endpoint", required=True, help="the only SNI name accepted")
    parser.add_argument("--mode", choices=MODES, default="silent", help="failed-handshake behaviour at start")
    parser.add_argument(
        "--hold",
        type=float,
        default=120.0,
        help="seconds a silent or idle connection is kept open (default 120)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        asyncio.run(run(args))
    except (RigError, OSError) as exc:
        print(f"cloud stand-in: {exc}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
