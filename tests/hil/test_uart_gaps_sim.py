"""The UART's gaps on the simulated bench, served by a real ser2net and re-enumerating on every reset.

`rig sim up --uart rfc2217 --reenumerate`: each reset removes the hub's console for 0.5 s and the
firmware prints 1 s after it is back, as a USB CDC console does. Attempts run in this process through the
harness's own bench (`rig.hil.session.open_bench`), and the `uart-gone` fault of the sim's board takes
the console away at chosen moments: while the boot is judged, and while its banner is printed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rig.config import load_variant
from rig.errors import InfrastructureError
from rig.events import Event
from rig.hil.attempt import Attempt
from rig.hil.session import LiveBench, open_bench
from rig.sim.orchestrate import Sim

ROOT = Path(__file__).resolve().parents[2]
RIG = [sys.executable, "-m", "rig"]


@pytest.fixture(scope="module")
def sim_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Sim]]:
    """(bench file, variant file, sim): a sim with ser2net and re-enumeration, up for the module."""
    base = tmp_path_factory.mktemp("uart-gaps")
    repo, folder = base / "repo", base / "sim"
    (repo / "benches").mkdir(parents=True)
    (repo / "firmware_configs").mkdir()
    # A shorter timeouts.boot_s: how long an attempt waits for a banner before it decides it was missed.
    text = (ROOT / "benches" / "sim.yaml").read_text()
    (repo / "benches" / "sim.yaml").write_text(text.replace("  boot_s: 15\n", "  boot_s: 6\n"))
    shutil.copy(ROOT / "firmware_configs" / "tcp-rx-1024.yaml", repo / "firmware_configs")
    bench = repo / "benches" / "sim.yaml"
    env = {**os.environ, "RIG_SIM_DIR": str(folder)}
    up = [*RIG, "sim", "up", "--dir", str(folder), "--bench", str(bench), "--uart", "rfc2217", "--reenumerate",
          "--program-seconds", "0.3"]  # fmt: skip
    done = subprocess.run(up, cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False)
    previous = os.environ.get("RIG_SIM_DIR")
    os.environ["RIG_SIM_DIR"] = str(folder)  # what benches/sim.yaml reads
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        yield bench, repo / "firmware_configs" / "tcp-rx-1024.yaml", Sim(folder)
    finally:
        if previous is None:
            del os.environ["RIG_SIM_DIR"]
        else:
            os.environ["RIG_SIM_DIR"] = previous
        subprocess.run([*RIG, "sim", "down", "--dir", str(folder)], env=env, timeout=120, check=False)


class FaultAtReset(LiveBench):
    """The live bench, with `arm(fault)` starting `fault` in a thread as the DUT's next reset begins."""

    def __init__(self, live: LiveBench) -> None:
        super().__init__(live.bench)
        self._fault: Callable[[], None] | None = None
        self.fault_thread: threading.Thread | None = None

    def arm(self, fault: Callable[[], None]) -> None:
        self._fault = fault

    def reset_dut(self) -> None:
        fault, self._fault = self._fault, None
        if fault is not None:
            self.fault_thread = threading.Thread(target=fault, daemon=True)
            self.fault_thread.start()
        super().reset_dut()


def run_attempt(live: LiveBench, variant: Path, folder: Path) -> Attempt:
    attempt = Attempt(live, load_variant(variant), "landline", 1, folder)
    attempt.prepare()
    return attempt


def test_a_console_re_enumerating_on_the_reset_costs_nothing_and_its_boot_is_judged_whole(
    sim_bench: tuple[Path, Path, Sim], tmp_path: Path
) -> None:
    bench, variant, _ = sim_bench
    with open_bench(bench, purpose="test") as live:
        attempt = run_attempt(live, variant, tmp_path / "attempt")
        try:
            record = attempt.watch()
        finally:
            attempt.close()
    assert record.verdict == "completed", record.summary
    after_reset = [g for g in record.uart_gaps if g.effect != "before the reset"]
    assert [g.effect for g in after_reset] == ["before the boot banner"]
    assert after_reset[0].reason == "lost" and after_reset[0].seconds is not None
    assert b"image sha256" in (tmp_path / "attempt" / "uart.raw").read_bytes()
    events = (tmp_path / "attempt" / "events.jsonl").read_text()
    assert '"kind": "port_back"' in events and '"return_to_back_s"' in events


def test_the_console_gone_during_the_judged_boot_is_a_bench_problem_naming_the_gap(
    sim_bench: tuple[Path, Path, Sim], tmp_path: Path
) -> None:
    bench, variant, sim = sim_bench
    with open_bench(bench, purpose="test") as live:
        faulty = FaultAtReset(live)

        def at_the_banner() -> None:
            lines = live.bench.uart.subscribe()  # from the reset on: an earlier boot's banner is not it
            try:
                for line in lines:
                    if "image sha256" in line.text:
                        sim.board().request("uart_gone", seconds=1.0)
                        return
            finally:
                lines.close()

        faulty.arm(at_the_banner)
        attempt = run_attempt(faulty, variant, tmp_path / "attempt")
        try:
            with pytest.raises(InfrastructureError) as caught:
                attempt.watch()
            attempt.fail_with_bench_problem(caught.value)
        finally:
            attempt.close()
    message = str(caught.value)
    assert message.startswith("tcp-rx-1024-landline: the UART was gone during the judged boot (lost at +")
    assert "for 1.0 s" in message or "and not back" in message
    assert "lines the DUT printed then were not seen, so the boot cannot be judged" in message
    record = attempt.record
    assert (record.verdict, record.category) == ("error", None)
    assert "the judged boot" in [g.effect for g in record.uart_gaps]


def test_a_boot_banner_printed_while_the_console_was_gone_is_a_bench_problem_not_a_verdict(
    sim_bench: tuple[Path, Path, Sim], tmp_path: Path
) -> None:
    bench, variant, sim = sim_bench
    with open_bench(bench, purpose="test") as live:
        faulty = FaultAtReset(live)
        backs: list[Event] = []
        back = threading.Event()

        def on_event(event: Event) -> None:
            if event.kind == "port_back":
                backs.append(event)
                back.set()

        unsubscribe = live.bench.events.subscribe(on_event)

        def after_the_return() -> None:
            # Once the console is back from the reset's re-enumeration (the firmware prints a second
            # later), take it away again for long enough to miss the banner.
            reset = time.monotonic()
            while back.wait(10):
                back.clear()
                if any(e.mono > reset for e in backs):
                    sim.board().request("uart_gone", seconds=3.0)
                    return

        faulty.arm(after_the_return)
        try:
            attempt = run_attempt(faulty, variant, tmp_path / "attempt")
            try:
                with pytest.raises(InfrastructureError) as caught:
                    attempt.watch()
            finally:
                attempt.close()
        finally:
            unsubscribe()
    message = str(caught.value)
    assert message.startswith("tcp-rx-1024-landline: the UART was gone after the reset (lost at +")
    assert (
        "and no boot banner was seen: the boot the reset caused may have printed while the port was gone"
        in message
    )
    folder = tmp_path / "attempt"
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    reset = next(e["mono"] for e in events if e["kind"] == "uart_settled")  # just before the reset
    lines = [json.loads(line) for line in (folder / "uart.jsonl").read_text().splitlines()]
    after = [line["text"] for line in lines if line["mono"] > reset]
    assert not any("image sha256" in text for text in after)  # the boot happened, its banner was missed
    assert [g.effect for g in attempt.record.uart_gaps if g.effect != "before the reset"] == [
        "the boot banner",
        "the boot banner",
    ]
