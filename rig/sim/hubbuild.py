"""Build the virtual hub: its C sources (rig/sim/firmware) linked against the system's Mbed TLS.

`build_hub(out_dir)` compiles once per source hash (`out_dir/hub-<hash>`, reused while the sources are
unchanged) and returns the binary's path. Mbed TLS is never vendored or built here: the hub links
Debian's libmbedtls-dev (2.28). A missing compiler or library gives an InfrastructureError that names
the package to install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from rig.errors import InfrastructureError

SOURCE_DIR = Path(__file__).parent / "firmware"
LIBS = ["-lmbedtls", "-lmbedx509", "-lmbedcrypto"]
BUILD_TIMEOUT_S = 120.0


def sources() -> list[Path]:
    return sorted(SOURCE_DIR.glob("*.c")) + sorted(SOURCE_DIR.glob("*.h"))


def source_hash() -> str:
    digest = hashlib.sha256()
    for path in sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build_hub(out_dir: Path) -> Path:
    """Compile the hub (cached by source hash) and return the executable's path."""
    target = out_dir / f"hub-{source_hash()}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise InfrastructureError("building the virtual hub needs a C compiler: install the package `gcc`")
    if not Path("/usr/include/mbedtls/ssl.h").is_file():
        raise InfrastructureError(
            "building the virtual hub needs the Mbed TLS headers and libraries: install `libmbedtls-dev`"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    command = [
        compiler,
        "-O2",
        "-Wall",
        "-o",
        str(tmp),
        *[str(p) for p in sorted(SOURCE_DIR.glob("*.c"))],
        *LIBS,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise InfrastructureError(
            f"building the virtual hub took over {BUILD_TIMEOUT_S:.0f} s: {command}"
        ) from None
    if result.returncode != 0:
        hint = ""
        if "mbedtls" in result.stderr:
            hint = " — is `libmbedtls-dev` installed?"
        raise InfrastructureError(
            f"building the virtual hub failed (exit {result.returncode}){hint}:\n{result.stderr.strip()[-2000:]}"
        )
    os.replace(tmp, target)
    return target
