"""The UART served by a real ser2net, as a lab serves a bench's by-id port remotely: `rfc2217://` or `socket://`.

Observed on this machine (sim-notes §7): ser2net 4.3 serves a pty fine, but pyserial must open the URL
with `?ign_set_control` (a pty has no modem lines, so ser2net never acknowledges SET_CONTROL), and the
`nouucplock` option is rejected in the connector's list (gensio takes it only in parentheses,
`serialdev(nouucplock),…`). ser2net sometimes ignores SIGTERM: `rig.sim.procs` escalates to SIGKILL.

What ser2net 4.3.11 (libgensio 2.6.2) does when the device re-enumerates, observed with the board's pty
(`--reenumerate`): the device's disappearance ends the TCP session at once (ser2net logs `dev read
error … Remote end closed connection`); while the device is absent every new session is accepted,
gets `Device open failure: Value or file not found\\r\\n` as data (after the telnet option offers on the
RFC 2217 accepter) and is closed within a few milliseconds; the first session after the device is back
serves it, and ser2net's device open does not flush it. ser2net itself never retries the device, holds
no session over its absence and reads nothing from it while no client is connected: the client's
reconnect is what brings the port back, and the harness's Uart polls every 20 ms for it.

The options used, for a short gap: `kickolduser` (a session ser2net still holds — a controller killed
mid-run, a half-open connection after a network glitch — would otherwise refuse the reconnect with
`Port already in use` until ser2net notices it is dead; with it the newcomer takes the device at once),
`max-connections: 1` (one reader: with more, a second client would get the device's bytes too and
write into the DUT's console) and `timeout: 0` (ser2net never ends a session for being quiet: a DUT
held in reset or idle for long would otherwise be cut off, a gap of ser2net's making).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from rig.errors import InfrastructureError


class PartStarter(Protocol):
    """What starts a sim part's process and waits until it listens (`rig.sim.orchestrate.Sim`)."""

    def start_part(self, name: str, argv: list[str], port: int) -> None: ...


def ser2net_config(link: Path, port: int, baud: int, *, raw: bool) -> str:
    """ser2net.yaml serving the UART at `link` on 127.0.0.1:`port`: telnet RFC 2217, or raw TCP."""
    accepter = "tcp" if raw else "telnet(rfc2217),tcp"
    return (
        "%YAML 1.1\n---\n"
        "connection: &hub\n"
        f"  accepter: {accepter},127.0.0.1,{port}\n"
        "  timeout: 0\n"
        f"  connector: serialdev,{link},{baud}n81,local\n"
        "  options:\n"
        "    kickolduser: true\n"
        "    max-connections: 1\n"
    )


def start_ser2net(
    parts: PartStarter, folder: Path, link: Path, port: int, baud: int, *, raw: bool = False
) -> str:
    """Start ser2net (its files in `folder`) for the UART at `link` on 127.0.0.1:`port`; the pyserial URL.

    `raw`: ser2net's plain `tcp` accepter (`socket://`) instead of telnet RFC 2217 (`rfc2217://`).
    """
    executable = shutil.which("ser2net") or "/usr/sbin/ser2net"
    if not Path(executable).is_file():
        raise InfrastructureError("ser2net not found — install the Debian package `ser2net` (make setup)")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "ser2net.yaml"
    config.write_text(ser2net_config(link, port, baud, raw=raw))
    argv = [executable, "-n", "-d", "-c", str(config), "-P", str(folder / "ser2net.pid")]
    parts.start_part("ser2net", argv, port)
    return f"socket://127.0.0.1:{port}" if raw else f"rfc2217://127.0.0.1:{port}?ign_set_control"
