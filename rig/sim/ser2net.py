"""The UART served as `rfc2217://` by a real ser2net, as a lab serves a bench's by-id port remotely.

Observed on this machine (sim-notes §7): ser2net 4.3 serves a pty fine, but pyserial must open the URL
with `?ign_set_control` (a pty has no modem lines, so ser2net never acknowledges SET_CONTROL), and the
`nouucplock` option is rejected. ser2net sometimes ignores SIGTERM: `rig.sim.procs` escalates to SIGKILL.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from rig.errors import InfrastructureError

if TYPE_CHECKING:
    from rig.sim.orchestrate import Sim


def start_ser2net(sim: Sim, link: Path, port: int, baud: int) -> str:
    """Start ser2net for the UART at `link` on 127.0.0.1:`port`; the pyserial URL to use."""
    executable = shutil.which("ser2net") or "/usr/sbin/ser2net"
    if not Path(executable).is_file():
        raise InfrastructureError("ser2net not found — install the Debian package `ser2net` (make setup)")
    folder = sim.dir / "ser2net"
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
    sim._start("ser2net", argv, port)
    return f"rfc2217://127.0.0.1:{port}?ign_set_control"
