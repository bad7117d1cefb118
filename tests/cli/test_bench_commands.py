"""`rig flash`, `rig path`, `rig reset`, `rig bench lock` against the real parts of tests/peers/bench.py."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from rig.cli import main
from rig.config import VariantConfig
from rig.drivers.lease import BenchLease
from rig.drivers.programmers import image_sha256
from tests.peers.bench import Hub, programmer_calls, route


def rig(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def variant_file(variant: VariantConfig, folder: Path) -> Path:
    path = folder / f"{variant.name}.yaml"
    path.write_text(yaml.safe_dump(variant.model_dump(mode="json", exclude_none=True)))
    return path


def test_rig_path_selects_and_verifies_and_leaves_the_bench_there(bench_file: Path, routerfs: Path) -> None:
    selected = rig("path", "satellite", "--bench", str(bench_file))
    assert selected.exit_code == 0, selected.output
    assert selected.stdout.startswith("satellite selected and verified in ")
    assert route(routerfs) == "satellite"

    shown = rig("path", "--bench", str(bench_file))
    assert shown.stdout.strip() == "satellite (baseline: landline)"


def test_rig_path_with_an_unknown_name_lists_the_paths(bench_file: Path) -> None:
    result = rig("path", "lte", "--bench", str(bench_file))
    assert result.exit_code == 2
    assert "no path 'lte' (paths: landline, satellite)" in result.stderr


def test_rig_flash_programs_a_variant_once_then_finds_it_on_the_dut(
    bench_file: Path, hub: Hub, variant: VariantConfig, stand_in: Path, tmp_path: Path
) -> None:
    file = variant_file(variant, tmp_path)
    hub.sha256 = None
    first = rig("flash", str(file), "--bench", str(bench_file), "--out", str(tmp_path / "flash"))
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith(
        f"programmed tcp-rx-1460 (sha256 {image_sha256(variant.image.hex)[:12]}…) in "
    )
    assert "1 attempt; the tool's output: " in first.stdout

    hub.sha256 = image_sha256(variant.image.hex)  # the new image announces itself
    second = rig("flash", str(file), "--bench", str(bench_file))
    assert second.stdout.startswith("already there: the DUT runs tcp-rx-1460")
    assert programmer_calls(stand_in) == 1


def test_rig_flash_of_an_unknown_variant_names_the_known_ones(bench_file: Path, tmp_path: Path) -> None:
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "tcp-rx-512.yaml").write_text("")
    result = rig("flash", "tcp-rx-9999", "--bench", str(bench_file), "--firmware-dir", str(tmp_path / "fw"))
    assert result.exit_code == 2
    assert "variant 'tcp-rx-9999': no file" in result.stderr and "(variants in" in result.stderr
    assert "tcp-rx-512)" in result.stderr


def test_rig_reset_runs_the_bench_files_reset(bench_file: Path, hub: Hub) -> None:
    result = rig("reset", "--bench", str(bench_file))
    assert (result.exit_code, result.stdout.strip()) == (0, "reset (command)")
    deadline = time.monotonic() + 5
    while hub.resets == 0 and time.monotonic() < deadline:  # the hub notices the reset line on its own
        time.sleep(0.01)
    assert hub.resets == 1


def test_rig_bench_lock_status_names_the_owner_and_break_frees_the_bench(
    bench_file: Path, tmp_path: Path
) -> None:
    owner = BenchLease(tmp_path / "state", "lab-test", "nightly")
    owner.open(timeout=0)
    try:
        status = rig("bench", "lock", "status", "--bench", str(bench_file))
        assert status.stdout.startswith("bench lab-test: held by ")
        assert "(nightly) since " in status.stdout

        busy = rig("reset", "--bench", str(bench_file))
        assert busy.exit_code == 3
        assert "error: bench lab-test is in use by " in busy.stderr

        broken = rig("bench", "lock", "break", "--bench", str(bench_file))
        assert broken.stdout.startswith("bench lab-test: broke the lease of ")
        assert (
            rig("bench", "lock", "status", "--bench", str(bench_file)).stdout.strip()
            == "bench lab-test: free"
        )
    finally:
        owner.close()


def test_rig_uart_reset_shows_the_dut_booting(bench_file: Path, hub: Hub) -> None:
    hub.sha256 = "cd" * 32
    result = rig("uart", "--bench", str(bench_file), "--seconds", "1.5", "--reset")
    assert result.exit_code == 0, result.output
    assert "hub firmware rig-test booting" in result.stdout
    assert f"image sha256: {'cd' * 32}" in result.stdout


def test_rig_flash_force_programs_even_the_image_the_dut_runs(
    bench_file: Path, hub: Hub, variant: VariantConfig, stand_in: Path, tmp_path: Path
) -> None:
    hub.sha256 = image_sha256(variant.image.hex)
    result = rig("flash", str(variant_file(variant, tmp_path)), "--bench", str(bench_file), "--force")
    assert result.stdout.startswith("programmed tcp-rx-1460 ")
    assert programmer_calls(stand_in) == 1
    assert hub.resets == 0  # nobody asked the DUT
