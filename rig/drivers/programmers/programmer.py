"""What every programmer is: the `Programmer` protocol, the `ProgramResult` of programming one image,
and the image digest the DUT's boot banner is compared with."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


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
