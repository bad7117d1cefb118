"""Programmers: the tools that write a firmware image into the DUT's flash, behind one small protocol.

The bench file's `programmer.kind` picks the tool (`ipecmd`, `mdb`, `pic32prog`); `make_programmer`
returns an object with two primitives, `program(image)` (program and verify) and `reset()`. Every tool
runs under a hard timeout with its whole output saved next to the attempt, and its success is decided
from the output markers the tool prints, never from its exit code alone (MPLAB IPE exits 0 on an
unpowered target). A programming problem is always an `InfrastructureError`: the bench could not put
the image on the DUT, which says nothing about the firmware. Problems of the "try again" kind (no
programmer, no target, connection failed, a hung tool) are retried once.

Whether programming can be skipped (the DUT already runs the image) is the `Bench`'s decision: it knows
the DUT's boot banner; a programmer always programs.
"""

from __future__ import annotations

from rig.config import ProgrammerConfig
from rig.drivers.programmers.programmer import Programmer, ProgramResult, image_sha256
from rig.events import EventLog


def make_programmer(config: ProgrammerConfig, part: str, *, events: EventLog | None = None) -> Programmer:
    """The programmer the bench file's `programmer:` section describes, for the DUT's `part`."""
    if config.kind == "ipecmd":
        from rig.drivers.programmers.ipecmd import Ipecmd

        return Ipecmd(config, part, events=events)
    if config.kind == "mdb":
        from rig.drivers.programmers.mdb import Mdb

        return Mdb(config, part, events=events)
    from rig.drivers.programmers.pic32prog import Pic32prog

    return Pic32prog(config, part, events=events)


__all__ = ["ProgramResult", "Programmer", "image_sha256", "make_programmer"]
