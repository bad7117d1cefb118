"""The Bench with real parts: a pty UART with a scripted hub behind it, an sshd router, the ipecmd
stand-in, the lease. What a user relies on: the bench is left on its baseline and the lease released
however a run ends; preflight names what is wrong; the image is not programmed again when the hub's
boot banner says it runs it; `rig bench check` prints a table and exits 3 naming the failing part.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rig.cli import main
from rig.config import VariantConfig, load_bench
from rig.config.models import ImageConfig
from rig.drivers.lease import BenchLease
from rig.drivers.part import Part
from rig.drivers.programmers import image_sha256
from rig.errors import ConfigError, InfrastructureError
from rig.events import EventLog
from rig.hil.bench import Bench
from rig.hil.provider import ensure_provider_up, provider_down, provider_is_up
from tests.peers.bench import Hub, programmer_calls, route
from tests.peers.drivers import PtyDevice, SshServer, bench_dict

# ------------------------------------------------------------------------------------- lifecycle


def test_leaving_the_bench_after_an_error_restores_the_baseline_and_releases_the_lease(
    bench_file: Path, routerfs: Path
) -> None:
    bench = Bench(load_bench(bench_file), purpose="nightly")
    with pytest.raises(RuntimeError, match="a test crashed"), bench:
        assert bench.lease.owner() is not None and bench.lease.owner()["purpose"] == "nightly"
        assert bench.uart.alive
        bench.select_path("satellite")
        assert route(routerfs) == "satellite"
        raise RuntimeError("a test crashed")

    assert route(routerfs) == "landline"
    assert bench.lease.owner() is None
    assert not bench.uart.alive


def test_holding_the_bench_opens_its_parts_in_order_and_leaves_them_in_reverse(
    bench_file: Path, routerfs: Path
) -> None:
    events = EventLog()
    bench = Bench(load_bench(bench_file), events=events)
    parts = bench.parts()
    assert all(isinstance(part, Part) for part in parts)
    assert [part.name for part in parts] == ["lease", "router", "router-session", "uart", "banner-watch"]
    with bench:
        for part in parts:  # the shared lifecycle: opening an open part does nothing
            part.open()
        bench.select_path("satellite")
    for part in parts:  # and closing a closed one is safe
        part.close()
    watched = (
        "lease_acquired",
        "ssh_connected",
        "uart_open",
        "uart_closed",
        "path_restored",
        "lease_released",
    )
    assert [e.kind for e in events.history if e.kind in watched] == list(watched)
    assert route(routerfs) == "landline" and bench.lease.owner() is None and not bench.uart.alive


KILLED_RUN = """
import sys, time
from rig.hil.bench import Bench
from rig.config import load_bench
bench = Bench(load_bench(sys.argv[1]), purpose="nightly")
bench.__enter__()
bench.select_path("satellite")
print("on satellite", flush=True)
time.sleep(60)
"""


def test_a_run_killed_with_sigkill_leaves_neither_a_lock_nor_a_dirty_bench_behind(
    bench_file: Path, routerfs: Path
) -> None:
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(bench_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert run.stdout is not None and run.stdout.readline().strip() == "on satellite"
    finally:
        run.kill()
        run.wait(timeout=10)
        if run.stdout is not None:
            run.stdout.close()
    assert route(routerfs) == "satellite"

    events = EventLog()
    with Bench(load_bench(bench_file), events=events):  # no waiting for the dead run's lease
        assert route(routerfs) == "landline"
    kinds = [e.kind for e in events.history]
    assert kinds.index("lease_lapsed") < kinds.index("bench_left_dirty") < kinds.index("path_restored")


def test_a_bench_in_use_is_refused_before_anything_is_touched(bench_file: Path, routerfs: Path) -> None:
    loaded = load_bench(bench_file)
    other = BenchLease(Path(loaded.model.state_dir or ""), "lab-test", "gate")
    other.open(timeout=0)
    try:
        (routerfs / "route").write_text("satellite\n")
        with (
            pytest.raises(InfrastructureError, match=r"bench lab-test is in use by .* \(gate\) since "),
            Bench(loaded),
        ):
            pass
        assert route(routerfs) == "satellite"  # the owner's path stays as it is
    finally:
        other.close()


# ------------------------------------------------------------------------------------- preflight


def test_preflight_of_a_healthy_bench_passes_every_part(bench_file: Path) -> None:
    results = Bench(load_bench(bench_file)).preflight()
    assert [(r.part, r.ok) for r in results] == [
        ("lease", True),
        ("programmer", True),
        ("uart", True),
        ("router", True),
        ("cloud", True),
    ]
    details = {r.part: r.detail for r in results}
    assert details["router"] == "answers, on the baseline path landline"
    assert details["cloud"] == "no cloud.events configured: lifecycle events not watched"


def test_preflight_names_a_router_off_its_baseline_and_a_vanished_uart(
    bench_file: Path, routerfs: Path, pty_device: PtyDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rig.hil.bench.UART_PROBE_TIMEOUT_S", 0.5)
    (routerfs / "route").write_text("satellite\n")
    pty_device.vanish()
    results = {r.part: r for r in Bench(load_bench(bench_file)).preflight()}

    assert not results["router"].ok
    assert results["router"].detail == (
        "answers, but is on path satellite instead of the baseline landline — `rig path landline` puts it "
        "back (a run's start does too)"
    )
    assert not results["uart"].ok
    assert results["uart"].detail.startswith(f"uart: cannot open {pty_device.url} at 115200 baud")
    assert results["lease"].ok and results["programmer"].ok


def test_rig_bench_check_prints_a_table_and_exits_3_naming_the_failing_part(
    bench_file: Path, sshd: SshServer
) -> None:
    sshd.stop()
    result = CliRunner().invoke(main, ["bench", "check", "--bench", str(bench_file)])

    assert result.exit_code == 3
    assert "bench lab-test" in result.stdout
    for part in ("lease", "programmer", "uart", "router", "cloud"):
        assert part in result.stdout
    assert result.stderr.strip() == "error: bench lab-test: 1 of 5 checks failed: router — see the table"


# ------------------------------------------------------------------------------------- the image


def test_an_image_the_boot_banner_reports_is_not_programmed_again(
    bench_file: Path, hub: Hub, variant: VariantConfig, stand_in: Path, tmp_path: Path
) -> None:
    hub.sha256 = image_sha256(variant.image.hex)
    events = EventLog()
    with Bench(load_bench(bench_file), events=events) as bench:
        result = bench.ensure_image(variant, tmp_path / "attempt")

    assert (result.ok, result.skipped, result.attempts, result.transcript) == (True, True, 0, None)
    assert programmer_calls(stand_in) == 0
    assert hub.resets == 1  # the reset that made the hub print its banner
    skipped = next(e for e in events.history if e.kind == "flash_skipped")
    assert skipped.fields["known_by"] == "banner"


def test_an_other_image_in_the_banner_is_programmed_and_recorded(
    bench_file: Path, hub: Hub, variant: VariantConfig, stand_in: Path, tmp_path: Path
) -> None:
    hub.sha256 = "ab" * 32
    with Bench(load_bench(bench_file)) as bench:
        result = bench.ensure_image(variant, tmp_path / "attempt")
        record = (bench.state_dir / "lab-test.image.json").read_text()

    assert (result.ok, result.skipped, result.attempts) == (True, False, 1)
    assert result.transcript == tmp_path / "attempt" / "programmer-1.log"
    assert programmer_calls(stand_in) == 1
    assert image_sha256(variant.image.hex) in record


def test_the_forensic_image_is_programmed_in_place_of_the_image_and_its_absence_is_said(
    bench_file: Path, hub: Hub, variant: VariantConfig, stand_in: Path, tmp_path: Path
) -> None:
    hub.sha256 = image_sha256(variant.image.hex)  # the DUT runs the variant's image
    forensic_hex = tmp_path / "tcp-rx-1460-debug4.hex"
    forensic_hex.write_text(":020000040000FA\n:10000000100102030405060708090A0B0C0D0E0F68\n:00000001FF\n")
    with_forensic = variant.model_copy(update={"forensic": ImageConfig(hex=forensic_hex)})
    with Bench(load_bench(bench_file)) as bench:
        result = bench.ensure_image(with_forensic, tmp_path / "forensic", forensic=True)
        record = json.loads((bench.state_dir / "lab-test.image.json").read_text())
        with pytest.raises(ConfigError) as missing:
            bench.ensure_image(variant, tmp_path / "none", forensic=True)

    assert (result.ok, result.skipped, result.attempts) == (True, False, 1)
    assert programmer_calls(stand_in) == 1
    assert record["variant"] == "tcp-rx-1460 (forensic)" and record["sha256"] == image_sha256(forensic_hex)
    assert (
        str(missing.value) == "variant tcp-rx-1460: no forensic image — name one in its file's `forensic.hex`"
    )


def test_without_a_banner_the_bench_record_decides(
    bench_file: Path, hub: Hub, variant: VariantConfig, stand_in: Path, tmp_path: Path
) -> None:
    hub.sha256 = None  # firmware that prints no image hash
    with Bench(load_bench(bench_file)) as bench:
        first = bench.ensure_image(variant, tmp_path / "one")
        second = bench.ensure_image(variant, tmp_path / "two")

    assert (first.skipped, second.skipped) == (False, True)
    assert programmer_calls(stand_in) == 1


def test_a_failing_reset_command_names_the_bench_file_key(bench_file: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(bench_file.read_text())
    data["dut"]["reset"]["command"] = [
        sys.executable,
        "-c",
        "import sys; print('relay board not found'); sys.exit(4)",
    ]
    bench_file.write_text(yaml.safe_dump(data))
    with pytest.raises(InfrastructureError, match=r"dut.reset.command .* exited 4: relay board not found"):
        Bench(load_bench(bench_file)).reset_dut()


# ------------------------------------------------------------------------------------- rig uart


def test_rig_uart_shows_the_lines_and_records_the_raw_bytes(
    bench_file: Path, hub: Hub, tmp_path: Path
) -> None:
    out = tmp_path / "capture" / "hub.raw"

    def later() -> None:
        time.sleep(0.5)
        hub.device.write(
            b"ssl_tls.c:2755: client state: 12\r\nssl_tls.c:4410: ssl->f_recv() returned -26880 (-0x6900)\r\n"
        )

    writer = threading.Thread(target=later, daemon=True)
    writer.start()
    result = CliRunner().invoke(
        main, ["uart", "--bench", str(bench_file), "--seconds", "1.5", "--out", str(out)]
    )
    writer.join(timeout=5)

    assert result.exit_code == 0, result.output
    assert "client state: 12" in result.stdout
    assert out.read_bytes().endswith(b"returned -26880 (-0x6900)\r\n")
    assert [p.name for p in out.parent.iterdir()] == ["hub.raw"]


# ------------------------------------------------------------------------------------- provider

PROVIDER = """
import sys, pathlib
action = sys.argv[1]
flag = pathlib.Path("up.flag")
if action == "status":
    sys.exit(0 if flag.exists() else 1)
if action == "up":
    flag.write_text(sys.argv[2])
    print("bench up")
if action == "down":
    flag.unlink()
"""


def test_a_provided_bench_is_brought_up_once_and_down_by_whoever_started_it(tmp_path: Path) -> None:
    folder = tmp_path / "benches"
    folder.mkdir()
    (folder / "provider.py").write_text(PROVIDER)
    data = bench_dict(
        {"r": {"host": "h", "user": "u", "agent": True, "host_keys": ["ssh-ed25519 AAAA"]}}, {}, "x"
    )
    data["provider"] = {
        "up": ["{python}", "provider.py", "up", "{bench}"],
        "down": ["{python}", "provider.py", "down"],
        "status": ["{python}", "provider.py", "status"],
        "env_file": "bench.env",
    }
    data["paths"] = {
        "x": {"host": "r", "activate": ["true"], "verify": {"command": "true", "expect": ""}, "rtt_ms": 1}
    }
    bench = folder / "provided.yaml"
    bench.write_text(yaml.safe_dump(data))

    assert ensure_provider_up(bench) is True
    assert (folder / "up.flag").read_text() == str(
        bench.resolve()
    )  # ran in the bench's folder, {bench} absolute
    assert ensure_provider_up(bench) is False  # already up: the caller must not stop it
    provider_down(bench)
    assert not provider_is_up(bench)


def test_preflight_of_a_bench_in_use_does_not_touch_the_owners_uart_or_cloud_watcher(
    bench_file: Path, pty_device: PtyDevice
) -> None:
    loaded = load_bench(bench_file)
    owner = BenchLease(Path(loaded.model.state_dir or ""), "lab-test", "nightly")
    owner.open(timeout=0)
    try:
        results = {r.part: r for r in Bench(loaded).preflight()}
    finally:
        owner.close()
    assert not results["lease"].ok and "(nightly)" in results["lease"].detail
    for part in ("uart", "cloud"):
        assert results[part].skipped
        assert (
            results[part].detail == "not probed: the bench is in use, probing would disturb its owner's run"
        )


def test_a_dut_that_boots_without_a_banner_is_not_waited_for_until_boot_s(
    bench_file: Path, hub: Hub, variant: VariantConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = yaml.safe_load(bench_file.read_text())
    data["timeouts"]["boot_s"] = 600
    bench_file.write_text(yaml.safe_dump(data))
    monkeypatch.setattr("rig.hil.bench.BANNER_QUIET_S", 0.3)
    hub.sha256 = None  # prints its boot lines, no image hash
    events = EventLog()
    with Bench(load_bench(bench_file), events=events) as bench:
        assert bench.running_image() == (None, "unknown")
    missing = [e.fields["reason"] for e in events.history if e.kind == "banner_missing"]
    assert missing == ["the DUT printed no banner and fell quiet for 0.3 s"]


def test_a_silent_dut_is_programmed_even_when_the_bench_record_names_the_image(
    bench_file: Path, hub: Hub, variant: VariantConfig, stand_in: Path, tmp_path: Path
) -> None:
    hub.silent = True  # blank or dead: the record of the last flash says nothing about it now
    events = EventLog()
    with Bench(load_bench(bench_file), events=events) as bench:
        bench.state_dir.mkdir(parents=True, exist_ok=True)
        record = {"variant": variant.name, "sha256": image_sha256(variant.image.hex), "programmed": 0}
        (bench.state_dir / "lab-test.image.json").write_text(json.dumps(record))
        result = bench.ensure_image(variant, tmp_path / "attempt")

    assert (result.skipped, programmer_calls(stand_in)) == (False, 1)
    missing = [e.fields["reason"] for e in events.history if e.kind == "banner_missing"]
    assert missing == ["no banner within timeouts.boot_s = 1.5 s"]
