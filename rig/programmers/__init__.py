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

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from rig.config import ProgrammerConfig
from rig.events import EventLog


@dataclass(frozen=True)
class ProgramResult:
    """What programming one image did: `ok` (on the DUT and verified), or `skipped` (it already was)."""

    ok: bool
    skipped: bool
    seconds: float
    attempts: int
    transcript: Path | None
    image_sha256: str


@runtime_checkable
class Programmer(Protocol):
    """A tool that programs and verifies an image, and resets the DUT."""

    name: str

    def program(self, image: Path, *, out_dir: Path, sha256: str | None = None) -> ProgramResult:
        """Program and verify `image`; the tool's output goes to `out_dir/programmer-<n>.log`.

        `sha256`, when given, is what the image must hash to (a variant file's `image.sha256`).
        Raises `InfrastructureError` when the image could not be programmed (after one retry for
        problems a retry can fix), `ConfigError` when the image is missing or not the one expected.
        """
        ...

    def reset(self) -> None:
        """Reset the DUT through the tool and let it run; `InfrastructureError` when that fails."""
        ...


def image_sha256(image: Path) -> str:
    """The sha256 of an image file's bytes, as the DUT's boot banner reports it (lower-case hex)."""
    digest = hashlib.sha256()
    with image.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def make_programmer(config: ProgrammerConfig, part: str, *, events: EventLog | None = None) -> Programmer:
    """The programmer the bench file's `programmer:` section describes, for the DUT's `part`."""
    if config.kind == "ipecmd":
        from rig.programmers.ipecmd import Ipecmd

        return Ipecmd(config, part, events=events)
    if config.kind == "mdb":
        from rig.programmers.mdb import Mdb

        return Mdb(config, part, events=events)
    from rig.programmers.pic32prog import Pic32prog

    return Pic32prog(config, part, events=events)


__all__ = ["ProgramResult", "Programmer", "image_sha256", "make_programmer"]
