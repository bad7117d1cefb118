"""One attempt never judges lines the DUT printed before its reset, however they were queued."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pytester_project import BENCH_YAML, variant_yaml
from scripted_bench import COMPLETED, Script, ScriptedBench

from rig.config import VariantConfig, load_bench, load_variant
from rig.drivers.programmers import ProgramResult
from rig.drivers.uart.port import UartLine
from rig.hil.attempt import QUIET_S, Attempt

OLD_IMAGE = "1" * 64  # what the DUT ran before this attempt programmed it (the scripts' banner says 0…0)


class BootsOldImageWhileProgramming(ScriptedBench):
    """While the image is programmed, the DUT still prints the old image's boot banner and a few lines,
    as a DUT powered up with the previous run's image does."""

    def ensure_image(self, variant: VariantConfig, out_dir: Path, *, forensic: bool = False) -> ProgramResult:
        assert self._queue is not None, "the attempt subscribes before programming"
        for text in (f"[hub] boot image sha256={OLD_IMAGE}", "ssl_cli.c:4272: client state: 2"):
            self._queue.put(UartLine(text, text.encode(), time.monotonic(), time.time(), 0))
        time.sleep(QUIET_S + 0.3)  # programming takes longer than the quiet the attempt waits for
        return super().ensure_image(variant, out_dir)


def test_lines_queued_before_the_reset_are_drained_and_the_new_boot_is_judged(tmp_path: Path) -> None:
    (tmp_path / "bench.yaml").write_text(BENCH_YAML)
    (tmp_path / "v.yaml").write_text(variant_yaml("v", {}))
    bench = BootsOldImageWhileProgramming(
        load_bench(tmp_path / "bench.yaml"), {"v": Script(COMPLETED)}, tmp_path / "actions.log"
    )
    folder = tmp_path / "attempt"
    folder.mkdir()
    attempt = Attempt(bench, load_variant(tmp_path / "v.yaml"), "landline", 1, folder)
    try:
        attempt.prepare()
        result = attempt.watch()
    finally:
        attempt.close()
    assert result.verdict == "completed", result.summary
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    (settled,) = [e for e in events if e["kind"] == "uart_settled"]
    assert (settled["source"], settled["lines"]) == ("harness", 2)
