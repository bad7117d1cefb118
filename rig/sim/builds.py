"""Variant images for the simulated bench: built into the sim's own folder, each rebuilt only when stale.

The sim's bench file says where its images are (`images.dir`, e.g. `.rig-sim/images`): the harness
programs `<variant>.hex` from there on that bench, and the variants' own `image.hex` — the real firmware
build's output — is never read or written by the sim. Every HEX the sim writes has a stamp beside it
(`<hex>.build.json`: variant file hash, PKI fingerprint, client id, endpoint, HEX sha256); a HEX in that
folder without a stamp that matches its bytes was not written by the sim and is left alone, with a
message. The sims of one user share a PKI (`$RIG_SIM_PKI_DIR`, default `~/.cache/rig/sim-pki`), so two
sims build the same bytes for the same variant. File locks keep concurrent `rig sim up`s from generating
the PKI or writing one HEX at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rig.config import VariantConfig, load_variant
from rig.config.models import FORENSIC_SUFFIX
from rig.errors import ConfigError, InfrastructureError
from rig.sim.image import build_image
from rig.sim.pki import Pki, generate_pki

LOCK_TIMEOUT_S = 120.0


def shared_pki_dir() -> Path:
    """Where the sims of this user keep their PKI."""
    override = os.environ.get("RIG_SIM_PKI_DIR")
    if override:
        return Path(override).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "rig" / "sim-pki"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:
            raise InfrastructureError(f"cannot lock {path}: {exc}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_pki(endpoint: str, directory: Path | None = None) -> Pki:
    """The shared PKI, generated on first use (the server leaf is remade for a new endpoint)."""
    folder = directory or shared_pki_dir()
    with locked(folder.parent / f".{folder.name}.lock"):
        return generate_pki(folder, endpoint)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stamp_path(hex_path: Path) -> Path:
    return hex_path.with_name(hex_path.name + ".build.json")


def read_stamp(hex_path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(stamp_path(hex_path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data


class NotWrittenBySim(ConfigError):
    """A HEX where the sim would build one, that the sim did not write: it is never overwritten."""


def build_variant(
    variant_file: Path, pki: Pki, client_id: str, endpoint: str, images: Path, *, only_if_stale: bool
) -> tuple[Path, str | None]:
    """Build `variant_file`'s HEX into `images`; returns its path and sha256, or None when it was fresh.

    Its forensic image (the same build at Mbed TLS debug level 4, `<name>.forensic.hex`) is built
    beside it, for every variant: the harness reruns a failing cell with it. Raises `NotWrittenBySim`
    when a HEX is there without the stamp of the sim that wrote it.
    """
    variant = load_variant(variant_file).model
    inputs = {
        "variant": variant.name,
        "variant_sha256": _sha256(variant_file),
        "pki": hashlib.sha256(pki.root_pem.read_bytes() + pki.device_ca_pem.read_bytes()).hexdigest(),
        "client_id": client_id,
        "endpoint": endpoint,
    }
    forensic = variant.model_copy(update={"build": variant.build.model_copy(update={"debug_threshold": 4})})
    with locked(images / ".rig-sim-build.lock"):
        built = _build_one(
            variant, images / f"{variant.name}.hex", inputs, pki, client_id, endpoint, only_if_stale
        )
        _build_one(
            forensic,
            images / f"{variant.name}{FORENSIC_SUFFIX}",
            {**inputs, "forensic": True},
            pki,
            client_id,
            endpoint,
            only_if_stale,
        )
    return images / f"{variant.name}.hex", built


def _build_one(
    variant: VariantConfig,
    hex_path: Path,
    inputs: dict[str, Any],
    pki: Pki,
    client_id: str,
    endpoint: str,
    only_if_stale: bool,
) -> str | None:
    stamp = read_stamp(hex_path)
    ours = hex_path.is_file() and stamp.get("hex_sha256") == _sha256(hex_path)
    if hex_path.exists() and not ours:
        raise NotWrittenBySim(
            f"{hex_path}: left alone — this HEX was not written by the simulated bench (no stamp "
            f"{stamp_path(hex_path).name} matching its bytes); remove it if the sim should build {variant.name}"
        )
    if only_if_stale and ours and {k: stamp.get(k) for k in inputs} == inputs:
        return None
    sha = build_image(variant, pki, client_id, endpoint, hex_path)
    stamp_path(hex_path).write_text(json.dumps({**inputs, "hex_sha256": sha}, indent=2))
    return sha


def variant_of(hex_path: str | None) -> str | None:
    """The variant a HEX file was built from (from its stamp), for `rig sim status`."""
    if not hex_path:
        return None
    stamp = read_stamp(Path(hex_path))
    name = stamp.get("variant")
    if not name:
        return None
    return f"{name} (forensic)" if stamp.get("forensic") else str(name)
