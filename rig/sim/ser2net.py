"""The UART served as `rfc2217://` by a real ser2net, as a lab serves a bench's by-id port remotely.

Observed on this machine (sim-notes §7): ser2net 4.3 serves a pty fine, but pyserial must open the URL
with `?ign_set_control` (a pty has no modem lines, so ser2net never acknowledges SET_CONTROL), and the
`nouucplock` option is rejected. ser2net sometimes ignores SIGTERM: `rig.sim.procs` escalates to SIGKILL.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from rig.errors import InfrastructureError


class PartStarter(Protocol):
    """What starts a sim part's process and waits until it listens (`rig.sim.orchestrate.Sim`)."""

    def start_part(self, name: str, argv: list[str], port: int) -> None: ...


def start_ser2net(parts: PartStarter, folder: Path, link: Path, port: int, baud: int) -> str:
    """Start ser2net (its files in `folder`) for the UART at `link` on 127.0.0.1:`port`; the pyserial URL."""
    executable = shutil.which("ser2net") or "/usr/sbin/ser2net"
    if not Path(executable).is_file():
        raise InfrastructureError("ser2net not found — install the Debian package `ser2net` (make setup)")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "ser2net.yaml"
    config.write_text(
        "%YAML 1.1\n---\n"
        "connection: &hub\n"
        f"  accepter: telnet(rfc2217),tcp,127.0.0.1,{port}\n"
        f"  connector: serialdev,{link},{baud}n81,local\n"
        "  options:\n"
        "    kickolduser: true\n"
    )
    argv = [executable, "-n", "-d", "-c", str(config), "-P", str(folder / "ser2net.pid")]
    parts.start_part("ser2net", argv, port)
    return f"rfc2217://127.0.0.1:{port}?ign_set_control"
