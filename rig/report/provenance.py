"""What a result was made with: the rig's version and commit, the host, the files and the image, by digest.

A release gate's verdict is only worth something if one can tell later which rig judged which image on
which bench: `gate.json` carries a `Provenance`, and `verify()` reads the files again and says, digest by
digest, whether they are still the ones that were judged (an image rebuilt since, a bench file edited).
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rig import __version__

GIT_TIMEOUT_S = 5.0


def file_sha256(path: Path) -> str | None:
    """The sha256 of a file's bytes, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 16), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def rig_commit() -> str | None:
    """The git commit of the rig's own checkout (`+dirty` with local changes), None when not run from one."""
    package = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False,
        )  # fmt: skip
        if head.returncode != 0:
            return None
        top, commit = head.stdout.split()
        if Path(top).resolve() != package.parent:
            return None  # an installed rig inside some other repository
        status = subprocess.run(
            ["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return commit + ("+dirty" if status.stdout.strip() else "")


@dataclass
class Digest:
    """A file and the sha256 it had when the result was made."""

    file: str
    sha256: str | None

    @classmethod
    def of(cls, path: Path) -> Digest:
        return cls(str(path.resolve()), file_sha256(path))

    def check(self, what: str) -> tuple[bool, str]:
        """(still the same, one line saying so or what changed)."""
        now = file_sha256(Path(self.file))
        if now is None:
            return False, f"{what} {self.file}: missing or unreadable now (was sha256 {self.sha256})"
        if now != self.sha256:
            return False, f"{what} {self.file}: changed (sha256 {now}, judged {self.sha256})"
        return True, f"{what} {self.file}: unchanged (sha256 {now[:16]}…)"


@dataclass
class Provenance:
    """Who judged what, where and when."""

    rig_version: str
    rig_commit: str | None
    host: str
    bench: str
    bench_kind: str
    bench_file: Digest
    variant_file: Digest
    image: Digest
    started: float = field(default_factory=time.time)
    ended: float | None = None

    @classmethod
    def start(
        cls, *, bench: str, bench_kind: str, bench_file: Path, variant_file: Path, image: Path
    ) -> Provenance:
        return cls(
            rig_version=__version__,
            rig_commit=rig_commit(),
            host=socket.gethostname(),
            bench=bench,
            bench_kind=bench_kind,
            bench_file=Digest.of(bench_file),
            variant_file=Digest.of(variant_file),
            image=Digest.of(image),
        )

    @property
    def simulated(self) -> bool:
        return self.bench_kind == "simulated"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Provenance:
        values = dict(data)
        for key in ("bench_file", "variant_file", "image"):
            values[key] = Digest(**values[key])
        return cls(**values)

    def verify(self) -> list[tuple[bool, str]]:
        """Each file read again against its digest: (unchanged, line)."""
        return [
            self.image.check("image"),
            self.variant_file.check("variant file"),
            self.bench_file.check("bench file"),
        ]
