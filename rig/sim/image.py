"""Firmware images of the virtual hub: Intel HEX files holding a variant's build parameters.

`build_image` is the simulated bench's "firmware build": it writes an Intel HEX file whose data, once
programmed at the PIC32MZ program flash base (0x1D000000), is everything the hub knows — firmware id,
build parameters, the CA root, its device certificate and key, client id and endpoint. The hub reads
nothing else (rig/sim/firmware/hub_flash.c). `flash_from_hex` is what a programmer writes into the
part. The HEX text is canonical (16-byte records, upper case, `\\n` line ends) so the hub re-renders
it from flash and prints its sha256 in the boot banner: `image sha256: <64 hex>`.

Flash layout: b"RIGHUB01" | u32 LE total length | entries | 0x00, each entry
u8 key length | key | u16 LE value length | value.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rig.config import VariantConfig

if TYPE_CHECKING:
    from rig.sim.pki import Pki

FLASH_BASE = 0x1D000000
FLASH_SIZE = 2 * 1024 * 1024  # PIC32MZ2048: 2 MB program flash
MAGIC = b"RIGHUB01"
RECORD_BYTES = 16


def image_payload(entries: dict[str, bytes]) -> bytes:
    """The flash bytes for `entries` (key → value) in the hub's layout."""
    body = bytearray()
    for key, value in entries.items():
        raw_key = key.encode("ascii")
        if not 0 < len(raw_key) < 256 or len(value) > 0xFFFF:
            raise ValueError(f"image entry {key!r}: key or value too long")
        body += bytes([len(raw_key)]) + raw_key + len(value).to_bytes(2, "little") + value
    body += b"\x00"
    total = len(MAGIC) + 4 + len(body)
    return MAGIC + total.to_bytes(4, "little") + bytes(body)


def _record(address: int, record_type: int, data: bytes) -> str:
    fields = bytes([len(data), (address >> 8) & 0xFF, address & 0xFF, record_type]) + data
    checksum = (-sum(fields)) & 0xFF
    return ":" + fields.hex().upper() + f"{checksum:02X}\n"


def hex_text(data: bytes, base: int = FLASH_BASE) -> str:
    """Canonical Intel HEX of `data` at `base` (the hub renders the same text to hash it)."""
    lines: list[str] = []
    upper = -1
    for offset in range(0, len(data), RECORD_BYTES):
        address = base + offset
        if address >> 16 != upper:
            upper = address >> 16
            lines.append(_record(0, 4, upper.to_bytes(2, "big")))
        lines.append(_record(address & 0xFFFF, 0, data[offset : offset + RECORD_BYTES]))
    lines.append(_record(0, 1, b""))
    return "".join(lines)


def firmware_id(variant: VariantConfig) -> str:
    """A stable id naming the variant and its build parameters."""
    params = variant.build.model_dump_json()
    return f"hubfw-{variant.name}-{hashlib.sha256(params.encode()).hexdigest()[:8]}"


def build_image(variant: VariantConfig, pki: Pki, client_id: str, endpoint: str, out: Path) -> str:
    """Write the variant's HEX image to `out`; returns the sha256 (hex) of the HEX file."""
    cert, key = pki.device_credentials(client_id)
    build = variant.build
    entries: dict[str, bytes] = {
        "firmware_id": firmware_id(variant).encode(),
        "tcp_rx_buffer": str(build.tcp_rx_buffer).encode(),
        "tcp_tx_buffer": str(build.tcp_tx_buffer).encode(),
        "mbedtls_in_content_len": str(build.mbedtls_in_content_len).encode(),
        "mbedtls_out_content_len": str(build.mbedtls_out_content_len).encode(),
        "debug_threshold": str(build.debug_threshold).encode(),
        "read_timeout_ms": str(build.read_timeout_ms).encode(),
        "recv_glue": build.recv_glue.encode(),
        "client_id": client_id.encode(),
        "endpoint": endpoint.encode(),
        "port": b"8883",
        "ca_root": pki.root_pem.read_bytes(),
        "device_cert": cert.read_bytes(),
        "device_key": key.read_bytes(),
    }
    text = hex_text(image_payload(entries)).encode("ascii")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(text)
    os.replace(tmp, out)
    return hashlib.sha256(text).hexdigest()


def flash_from_hex(hex_path: Path) -> bytes:
    """The bytes a programmer writes at 0x1D000000 for `hex_path` (gaps 0xFF, erased flash).

    Validates every record; a bad one raises ValueError naming the file and line.
    """
    memory: dict[int, int] = {}
    upper = 0
    seen_eof = False
    text = hex_path.read_text(encoding="ascii", errors="replace")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{hex_path}:{number}"
        if seen_eof:
            raise ValueError(f"{where}: data after the end-of-file record")
        if not line.startswith(":") or len(line) < 11 or len(line) % 2 == 0:
            raise ValueError(f"{where}: not an Intel HEX record (expected ':LLAAAATT…CC')")
        try:
            fields = bytes.fromhex(line[1:])
        except ValueError:
            raise ValueError(f"{where}: non-hexadecimal characters") from None
        count, record_type = fields[0], fields[3]
        if len(fields) != count + 5:
            raise ValueError(f"{where}: length byte says {count} data bytes, record has {len(fields) - 5}")
        if sum(fields) & 0xFF:
            raise ValueError(f"{where}: checksum mismatch (record damaged)")
        data = fields[4:-1]
        address = (fields[1] << 8) | fields[2]
        if record_type == 0:
            for i, byte in enumerate(data):
                absolute = upper + address + i
                if not FLASH_BASE <= absolute < FLASH_BASE + FLASH_SIZE:
                    raise ValueError(
                        f"{where}: address 0x{absolute:08X} is outside program flash "
                        f"0x{FLASH_BASE:08X}-0x{FLASH_BASE + FLASH_SIZE - 1:08X}"
                    )
                memory[absolute - FLASH_BASE] = byte
        elif record_type == 1:
            seen_eof = True
        elif record_type == 4:
            if count != 2:
                raise ValueError(f"{where}: extended linear address record needs 2 data bytes")
            upper = int.from_bytes(data, "big") << 16
        elif record_type in (2, 3, 5):
            continue
        else:
            raise ValueError(f"{where}: unknown record type {record_type:02X}")
    if not seen_eof:
        raise ValueError(f"{hex_path}: no end-of-file record (truncated file?)")
    if not memory:
        return b""
    flash = bytearray(b"\xff" * (max(memory) + 1))
    for offset, byte in memory.items():
        flash[offset] = byte
    return bytes(flash)
