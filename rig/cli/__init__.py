"""The `rig` command line: the root group (`main`) and one module per command group (`config`, `logs`,
`bench`, `gate`, `history`, `report`; `rig sim` is the simulated bench's own group, `rig.sim.cli`). A front end: it uses the
orchestration (`rig.hil`), the report and the Mbed TLS log intelligence, and is used by nothing."""

from rig.cli.main import main, run

__all__ = ["main", "run"]
