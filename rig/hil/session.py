"""The bench session of a HIL run: provider up if needed, lease, preflight, restore — as one `with`.

Used by the pytest plugin's session fixture and by `rig gate`. A bench file with a `provider` (the
simulated bench) is brought up when its `provider.status` says it is down, and brought down at the end
only if this session started it — generically, from the bench file: the harness does not know what
the provider is. A failing preflight raises one `InfrastructureError` naming every part that failed.

`LiveBench` adapts `rig.hil.bench.Bench` to what one attempt needs (`rig.hil.attempt.CellBench`): recording the UART
and the bench's events into the attempt's folder, the actions, the capture and the cloud's confirmation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rig.config import BenchConfig, VariantConfig, load_bench
from rig.drivers.programmers import ProgramResult
from rig.drivers.uart.gaps import UartGap
from rig.drivers.uart.port import UartSubscription
from rig.errors import InfrastructureError
from rig.events import EventLog
from rig.hil.bench import Bench
from rig.hil.provider import ensure_provider_up, provider_down
from rig.report import evidence as files

log = logging.getLogger(__name__)


@contextmanager
def blame(part: str) -> Iterator[None]:
    """Name `part` as the one that failed in a bench problem raised inside (unless the error names one)."""
    try:
        yield
    except InfrastructureError as exc:
        if exc.part is None:
            exc.part = part
        raise


class LiveBench:
    """A `Bench` seen through the interface of one attempt (`rig.hil.attempt.CellBench`)."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self._selected: str | None = None  # the path this session selected and verified last
        self._probed: set[str] = set()  # paths whose uplink this session saw reach the cloud

    @property
    def config(self) -> BenchConfig:
        return self.bench.config

    def attach(self, folder: Path | None) -> None:
        self.bench.uart.record(folder)
        self.bench.events.attach(folder / files.EVENTS if folder is not None else None)

    def ensure_image(self, variant: VariantConfig, out_dir: Path, *, forensic: bool = False) -> ProgramResult:
        with blame("programmer"):
            return self.bench.ensure_image(variant, out_dir, forensic=forensic)

    def select_path(self, name: str) -> None:
        """Select and verify `name` (and, the first time, probe its uplink), unless it is selected already.

        The router's path does not change between two cells of the same path (this session holds the
        lease), so re-activating it would only cost an SSH round of activate + verify per attempt.
        """
        if name == self._selected:
            self.bench.events.emit("path_kept", "router", path=name)
        else:
            self._selected = None
            with blame("router"):
                self.bench.select_path(name)
            self._selected = name
        if name not in self._probed:
            # Before the first cell on a path (and its retry): a dead uplink behind the router is a bench
            # problem, not a stall at SERVER_HELLO (the router answers, the satellite does not).
            self.bench.router.probe(name)
            self._probed.add(name)

    def subscribe(self) -> UartSubscription:
        with blame("uart"):
            return self.bench.uart.subscribe()

    def reset_dut(self) -> None:
        method = self.config.dut.reset.method
        with blame("programmer" if method == "programmer" else "reset"):
            self.bench.reset_dut()

    @contextmanager
    def capture(self, out: Path) -> Iterator[None]:
        with blame("router"), self.bench.router.capture(out):
            yield

    def wait_cloud_connected(self, timeout: float, since: float) -> bool | None:
        cloud = self.bench.cloud
        if cloud is None:
            return None
        return cloud.wait_connected(self.config.dut.client_id, timeout, since) is not None

    def emit(self, kind: str, **fields: Any) -> None:
        self.bench.events.emit(kind, "harness", **fields)

    def uart_gaps(self, since: float) -> list[UartGap]:
        return self.bench.uart.gaps(since)


def preflight_problem(bench: Bench) -> InfrastructureError | None:
    """One error naming every part that failed the preflight, or None when all passed."""
    failed = [check for check in bench.preflight() if not check.ok]
    if not failed:
        return None
    details = "; ".join(f"{check.part}: {check.detail}" for check in failed)
    return InfrastructureError(f"preflight failed — {details}")


@contextmanager
def open_bench(path: Path, _pytest_config: object = None, *, purpose: str = "pytest") -> Iterator[LiveBench]:
    """The bench of `path`, up, leased and preflighted; restored, released (and stopped if we started it)."""
    loaded = load_bench(path)
    events = EventLog()
    started = False
    if loaded.model.provider is not None:
        began = time.monotonic()
        started = ensure_provider_up(path)
        seconds = round(time.monotonic() - began, 3)
        events.emit("provider_up", "provider", bench=str(path), started=started, seconds=seconds)
        loaded = load_bench(path)  # the provider wrote the values the file references
    try:
        with Bench(loaded, purpose=purpose, events=events) as bench:
            problem = preflight_problem(bench)
            if problem is not None:
                raise problem
            yield LiveBench(bench)
    finally:
        if started:
            try:
                provider_down(path)
                events.emit("provider_down", "provider", bench=str(path))
            except InfrastructureError as exc:
                events.emit("provider_down_failed", "provider", bench=str(path), error=str(exc))
                log.error("%s", exc)
