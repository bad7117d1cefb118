"""The hub's image and boot: HEX validation, the banner's sha256, a blank flash, the build step."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_hub_support import StartHub, hub_binary, make_flash, scripted_lan, start_hub

from rig.errors import InfrastructureError
from rig.sim import hubbuild
from rig.sim.image import FLASH_BASE, flash_from_hex, hex_text, image_payload
from rig.sim.pki import Pki

__all__ = ["hub_binary", "scripted_lan", "start_hub"]  # fixtures used below


def test_the_banner_shows_the_sha256_of_the_hex_file_and_the_build_parameters(
    sim_pki: Pki, tmp_path: Path, start_hub: StartHub
) -> None:
    flash, sha = make_flash(sim_pki, tmp_path, "tcp-rx-1024")
    hub = start_hub(flash, 1)  # no router there: the banner comes first anyway
    text = hub.wait_for(r"link down", timeout=10)
    assert f"image sha256: {sha}\r\n" in text
    assert (
        "build: tcp_rx_buffer=1024 tcp_tx_buffer=1024 mbedtls_in_content_len=16384 mbedtls_out_content_len=4096 "
        "debug_threshold=2 read_timeout_ms=5000 recv_glue=partial\r\n"
    ) in text
    assert "mbed TLS 2.28" in text and "==== water-treatment hub firmware hubfw-tcp-rx-1024-" in text


def test_a_blank_flash_prints_the_boot_rom_line_and_idles(tmp_path: Path, start_hub: StartHub) -> None:
    flash = tmp_path / "erased.flash"
    flash.write_bytes(b"\xff" * 4096)
    hub = start_hub(flash, 1)
    hub.wait_for(r"program flash blank", timeout=10)
    time.sleep(0.5)
    assert hub.process.poll() is None
    assert hub.text().endswith("PIC32MZ boot ROM: program flash blank (erased), no application - halted\r\n")


def test_flash_from_hex_returns_the_bytes_at_the_flash_base(tmp_path: Path) -> None:
    payload = image_payload({"firmware_id": b"x", "port": b"8883"})
    path = tmp_path / "a.hex"
    path.write_text(hex_text(payload))
    assert flash_from_hex(path) == payload
    assert path.read_text().splitlines()[0] == ":020000041D00DD"  # extended linear address 0x1D00


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda lines: [*lines[:1], lines[1][:-2] + "00", *lines[2:]],
            "a.hex:2: checksum mismatch (record damaged)",
        ),
        (lambda lines: lines[:-1], "a.hex: no end-of-file record (truncated file?)"),
        (lambda lines: [*lines[:1], "hello", *lines[1:]], "a.hex:2: not an Intel HEX record"),
        (
            lambda lines: [":020000040000FA", *lines[1:]],
            "a.hex:2: address 0x00000000 is outside program flash",
        ),
    ],
)
def test_a_damaged_hex_file_is_refused_naming_the_line(damage, message: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = hex_text(image_payload({"firmware_id": b"x" * 40})).splitlines()
    path = tmp_path / "a.hex"
    path.write_text("\n".join(damage(lines)) + "\n")
    with pytest.raises(ValueError) as caught:
        flash_from_hex(path)
    assert str(caught.value).startswith(
        str(tmp_path / message.split(":", 1)[0]) + ":" + message.split(":", 1)[1]
    )


def test_the_hub_build_is_cached_by_source_hash(tmp_path: Path, hub_binary: Path) -> None:
    assert hub_binary.name == f"hub-{hubbuild.source_hash()}"
    assert hubbuild.build_hub(hub_binary.parent) == hub_binary  # no second compile


def test_a_missing_compiler_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubbuild.shutil, "which", lambda name: None)
    with pytest.raises(InfrastructureError, match=r"install the package `gcc`"):
        hubbuild.build_hub(tmp_path)


def test_flash_base_is_pic32mz_program_flash() -> None:
    assert FLASH_BASE == 0x1D000000
