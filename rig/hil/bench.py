"""The Bench: the parts of one bench file, owned together, and a teardown that always restores.

The pytest plugin and the `rig` commands use only this class; it wires the drivers (programmer,
UART, router, cloud events, lease) from a bench file and gives them one lifecycle:

    with Bench(load_bench("benches/lab.yaml"), purpose="nightly") as bench:
        bench.preflight()             # every part reachable and answering, router on baseline
        bench.ensure_image(variant, attempt_dir)
        bench.select_path("satellite"); bench.reset_dut()

Every part is a `rig.drivers.part.Part` (`open()`, `close()`, `with part:`), so holding the bench is a
loop over `parts()`: the lease, the router, the router's session (a bench left dirty by a killed run is
put back), the UART, the boot-banner watch, the cloud watcher. Leaving closes them in reverse order, on
success, failure, Ctrl-C or a crash, and the lease is released even when restoring fails.

A bench with a `provider` (a simulated bench, a bench behind a power switch) is not started here:
`rig.hil.provider` brings it up and down for the caller that owns the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from rig.config import BenchConfig, Loaded, VariantConfig
from rig.drivers.cloud import CloudEvents
from rig.drivers.labgrid import LabgridPlace
from rig.drivers.lease import BenchLease, describe
from rig.drivers.part import Part
from rig.drivers.programmers import Programmer, ProgramResult, image_sha256, make_programmer
from rig.drivers.router import Router
from rig.drivers.uart.port import Uart
from rig.drivers.uart.stream import UartSubscription
from rig.errors import ConfigError, InfrastructureError, RigError
from rig.events import EventLog
from rig.hil.provider import provider_is_up

log = logging.getLogger(__name__)

# Time for one preflight probe of the UART or the cloud broker.
PROBE_TIMEOUT_S = 10.0
# After a reset, a DUT that printed lines but no banner and then kept quiet this long has no banner
# to print (a firmware without one, a blank part's boot ROM): the per-bench record decides instead.
BANNER_QUIET_S = 2.0
# A UART that does not open within this time is reported (the driver retries with back-off meanwhile).
UART_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class CheckResult:
    """One line of the preflight table: a part, whether it is usable, what was found."""

    part: str
    ok: bool
    detail: str
    seconds: float
    skipped: bool = False  # not probed (ok says nothing about the part then)


def _relative_to(location: str, folder: Path) -> str:
    """A relative file path in a bench file is relative to the file's folder (URLs are left alone)."""
    if "://" in location or Path(location).expanduser().is_absolute():
        return str(Path(location).expanduser()) if "://" not in location else location
    return str(folder / location)


Lease = BenchLease | LabgridPlace


def make_lease(
    config: BenchConfig, folder: Path, purpose: str, *, events: EventLog | None = None, timeout: float = 0.0
) -> Lease:
    """The bench's lease as its file says: a labgrid place (`lease.labgrid`), else the rig's own lease file."""
    state_dir = default_state_dir(config)
    labgrid = config.lease.labgrid
    if labgrid is not None:
        client = (
            labgrid.model_copy(update={"client": _relative_to(labgrid.client, folder)})
            if "/" in labgrid.client
            else labgrid
        )
        return LabgridPlace(client, state_dir, config.name, purpose, events=events, acquire_timeout=timeout)
    return BenchLease(state_dir, config.name, purpose, events=events, acquire_timeout=timeout)


def default_state_dir(config: BenchConfig) -> Path:
    """Where lease and flash records live when the bench file has no `state_dir`."""
    return config.state_dir or Path.home() / ".cache" / "rig" / config.name


class Bench:
    """Owns the parts of one bench file."""

    def __init__(
        self,
        loaded: Loaded[BenchConfig],
        *,
        purpose: str = "manual",
        events: EventLog | None = None,
        lease_timeout: float = 0.0,
    ) -> None:
        self.loaded = loaded
        self.config: BenchConfig = loaded.model
        self.events = events if events is not None else EventLog()
        self.state_dir = default_state_dir(self.config)
        dut = self.config.dut
        folder = loaded.path.resolve().parent
        self.lease: Lease = make_lease(
            self.config, folder, purpose, events=self.events, timeout=lease_timeout
        )
        self.uart = Uart(
            _relative_to(dut.uart.url, folder),
            dut.uart.baud,
            events=self.events,
            name="uart",
            open_timeout=self.config.timeouts.boot_s,
        )
        self.router = Router(self.config, events=self.events, state_dir=self.state_dir)
        self.router_session = self.router.session()  # the bench held on its baseline during a run
        programmer = self.config.programmer
        if "/" in programmer.executable:
            programmer = programmer.model_copy(
                update={"executable": _relative_to(programmer.executable, folder)}
            )
        self.programmer: Programmer = make_programmer(programmer, dut.part, events=self.events)
        self.cloud: CloudEvents | None = (
            CloudEvents(self.config.cloud, events=self.events, open_timeout=PROBE_TIMEOUT_S)
            if self.config.cloud.events
            else None
        )
        self.banner = BootBanner(self.uart, dut.banner_sha256, bench=self.name)
        self._hold: contextlib.AbstractContextManager[Bench] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    # ------------------------------------------------------------------------------------ lifecycle

    @contextlib.contextmanager
    def hold(
        self, *, uart: bool = True, router: bool = True, session: bool = True, cloud: bool = True
    ) -> Iterator[Bench]:
        """Take the lease and open the parts asked for; everything is undone on the way out.

        `session=False` connects the router without the restore-to-baseline guarantee (`rig path`
        leaves the bench on the path it selected; the next run's session puts it back).
        """
        with contextlib.ExitStack() as stack:
            for part in self.parts(uart=uart, router=router, session=session, cloud=cloud):
                stack.enter_context(part)  # left in reverse order, each told how the body ended
            self.events.emit("bench_ready", "bench", bench=self.name, purpose=self.lease.purpose)
            yield self
            self.lease.check()

    def parts(
        self, *, uart: bool = True, router: bool = True, session: bool = True, cloud: bool = True
    ) -> list[Part]:
        """The parts `hold()` opens, in order: the lease first, the router before its session."""
        parts: list[Part] = [self.lease]
        if router:
            parts.append(self.router)
            if session:
                parts.append(self.router_session)
        if uart:
            parts += [self.uart, self.banner]
        if cloud and self.cloud is not None:
            parts.append(self.cloud)
        return parts

    def __enter__(self) -> Bench:
        self._hold = self.hold()
        return self._hold.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.__exit__(exc_type, exc, tb)

    # ------------------------------------------------------------------------------------ preflight

    def preflight(self, *, probes: bool = False) -> list[CheckResult]:
        """Check every part: lease free, programmer present, UART opens, router answers on baseline, cloud.

        With `probes`, also each path's probe (its uplink reaches the cloud endpoint): `rig bench check`
        runs them all; a run probes each path before its first cell instead, so that a dead satellite
        uplink stops only the satellite cells. Works inside `with bench` (checks the open parts) and
        outside (opens each briefly). Never raises for a part's problem: each is a failed `CheckResult`
        whose detail says what to check.
        """
        provider = [self._check("provider", self._check_provider)] if self.config.provider else []
        lease = self._check("lease", self._check_lease)
        # Another run owns the bench: opening its UART would take bytes from its capture, and the
        # observer's client id on the broker would throw its cloud watcher off (duplicate client id).
        busy = not lease.ok and not self.lease.held
        return [
            *provider,
            lease,
            self._check("programmer", self._check_programmer),
            self._skip("uart") if busy else self._check("uart", self._check_uart),
            self._check("router", self._check_router),
            self._skip("cloud") if busy else self._check("cloud", self._check_cloud),
            *(self._probe_checks() if probes else []),
        ]

    def _probe_checks(self) -> list[CheckResult]:
        paths = [name for name, path in self.config.paths.items() if path.probe is not None]
        if not paths or self.router.connected:
            return [self._probe_check(name) for name in paths]
        try:
            self.router.open()
        except RigError as exc:
            return [CheckResult(f"uplink {name}", False, f"not probed: {exc}", 0.0) for name in paths]
        try:
            return [self._probe_check(name) for name in paths]
        finally:
            self.router.close()

    def _probe_check(self, path: str) -> CheckResult:
        return self._check(f"uplink {path}", lambda: self.router.probe(path))

    def _skip(self, part: str) -> CheckResult:
        detail = "not probed: the bench is in use, probing would disturb its owner's run"
        self.events.emit("preflight", "bench", part=part, ok=True, skipped=True, detail=detail)
        return CheckResult(part, True, detail, 0.0, skipped=True)

    def _check(self, part: str, probe: Callable[[], str]) -> CheckResult:
        start = time.monotonic()
        try:
            detail = probe()
            ok = True
        except (RigError, OSError) as exc:
            ok, detail = False, str(exc)
        result = CheckResult(part, ok, detail, time.monotonic() - start)
        self.events.emit("preflight", "bench", part=part, ok=ok, detail=detail)
        return result

    def _check_provider(self) -> str:
        assert self.config.provider is not None
        if not provider_is_up(self.loaded.path):
            up = " ".join(self.config.provider.up)
            raise InfrastructureError(
                f"down: provider.status says it is not running — bring it up with `{up}`"
            )
        return "up (provider.status)"

    def _check_lease(self) -> str:
        if self.lease.held:
            return "held by this run"
        owner = self.lease.owner()
        if owner is not None:
            raise InfrastructureError(f"in use by {describe(owner)}")
        return "free"

    def _check_programmer(self) -> str:
        exe = getattr(self.programmer, "config", self.config.programmer).executable
        found = shutil.which(exe)
        if found is None:
            raise InfrastructureError(
                f"{self.config.programmer.kind} executable {exe!r} not found — check programmer.executable"
            )
        return f"{self.config.programmer.kind} {self.config.programmer.tool or ''} {found}".replace("  ", " ")

    def _check_uart(self) -> str:
        if self.uart.alive:
            return f"{self.uart.url} open, {self.uart.bytes_read} bytes read"
        probe = Uart(self.uart.url, self.uart.baud, reconnect=False, name="uart")
        probe.open(timeout=UART_PROBE_TIMEOUT_S)
        probe.close()
        return f"{self.uart.url} opens"

    def _check_router(self) -> str:
        baseline = self.config.baseline
        if self.router.connected:
            current = self.router.current()
        else:
            with self.router:
                current = self.router.current()
        if current != baseline:
            raise InfrastructureError(
                f"answers, but is on path {current or 'unknown'} instead of the baseline {baseline} — "
                f"`rig path {baseline}` puts it back (a run's start does too)"
            )
        return f"answers, on the baseline path {baseline}"

    def _check_cloud(self) -> str:
        if self.cloud is None:
            return "no cloud.events configured: lifecycle events not watched"
        if self.cloud.connected:
            return f"watching {self.cloud.broker}"
        with self.cloud:
            pass
        return f"{self.cloud.broker} accepts the subscription"

    # ------------------------------------------------------------------------------------ actions

    def select_path(self, name: str) -> float:
        """Make `name` the active path (activate, then verify); returns the seconds it took."""
        if name not in self.config.paths:
            raise ConfigError(
                f"{self.loaded.source.display}: no path {name!r} (paths: {', '.join(self.config.paths)})"
            )
        return self.router.select(name)

    def reset_dut(self) -> None:
        """Reset the DUT as `dut.reset.method` says: through the programmer, a local command, or not at all."""
        reset = self.config.dut.reset
        if reset.method == "programmer":
            self.programmer.reset()
        elif reset.method == "command":
            assert reset.command is not None
            self._run_reset_command(reset.command)
        else:
            log.warning("bench %s: dut.reset.method is `none`; reset the hub by hand", self.name)
            self.events.emit("reset_skipped", "bench", method="none")
            return
        if self.config.dut.reenumerates_on_reset and reset.settle_s:
            time.sleep(reset.settle_s)  # the console goes away and comes back; the Uart reopens it

    def _run_reset_command(self, argv: list[str]) -> None:
        timeout = self.config.timeouts.boot_s
        start = time.monotonic()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise InfrastructureError(
                f"dut.reset.command: {argv[0]!r} not found — check the bench file {self.loaded.source.display}"
            ) from None
        except subprocess.TimeoutExpired:
            raise InfrastructureError(
                f"dut.reset.command {argv!r} did not finish within {timeout:g} s (timeouts.boot_s)"
            ) from None
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            raise InfrastructureError(
                f"dut.reset.command {argv!r} exited {done.returncode}: {' | '.join(tail) or '(no output)'}"
            )
        self.events.emit("reset", "bench", via="command", seconds=round(time.monotonic() - start, 3))

    # ------------------------------------------------------------------------------------ the image

    @property
    def _record_path(self) -> Path:
        return self.state_dir / f"{self.name}.image.json"

    def running_image(self, *, ask: bool = True) -> tuple[str | None, str]:
        """The sha256 of the image the DUT runs and how it is known: `banner`, `record` or `unknown`.

        The boot banner is the truth (`dut.banner_sha256`): the last one seen on the open UART, else
        (with `ask`) the one printed after a reset. A DUT that boots and talks but prints no banner
        falls back on the record this bench writes after each successful programming; a DUT that
        says nothing at all after a reset is `unknown` (blank or dead: its record cannot be trusted).
        """
        banner = self.banner
        if banner.watching and (seen := banner.current()) is not None:
            return seen, "banner"
        if banner.watching and ask and self.config.dut.reset.method != "none":
            since = time.monotonic()
            self.reset_dut()
            seen, reason, silent = banner.wait_after(since, self.config.timeouts.boot_s)
            if seen is not None:
                return seen, "banner"
            self.events.emit("banner_missing", "bench", reason=reason, pattern=self.config.dut.banner_sha256)
            if silent:
                return None, "unknown"
        if banner.error is not None:
            raise InfrastructureError(f"uart {self.uart.url}: {banner.error}")
        recorded = self._recorded()
        return recorded, "record" if recorded else "unknown"

    def _recorded(self) -> str | None:
        """The sha256 this bench last programmed, from its record in state_dir."""
        try:
            return str(json.loads(self._record_path.read_text(encoding="utf-8"))["sha256"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
            return None

    def ensure_image(
        self, variant: VariantConfig, out_dir: Path, *, force: bool = False, forensic: bool = False
    ) -> ProgramResult:
        """Program `variant`'s image unless the DUT already runs it (then `skipped=True`).

        A DUT that stays silent after its reset costs `timeouts.boot_s` before it is programmed (a
        blank part says nothing). `force` programs without asking the DUT (a DUT that prints a wrong
        banner, a suspect flash). `forensic`: the variant's forensic image (the same build at debug
        level 4) instead of its image.
        """
        image = self.config.forensic_image_for(variant) if forensic else self.config.image_for(variant)
        key = "forensic.hex" if forensic else "image.hex"
        if image is None:
            raise ConfigError(
                f"variant {variant.name}: no forensic image — name one in its file's `forensic.hex`"
            )
        if not image.is_file():
            where = (
                f"the bench's images.dir ({self.loaded.source.display})"
                if self.config.images is not None
                else f"its {key}"
            )
            raise ConfigError(f"variant {variant.name}: image {image} not found — build it or fix {where}")
        wanted = image_sha256(image)
        running, how = (None, "unknown") if force else self.running_image()
        if running is not None and running.lower() == wanted:
            self.events.emit("flash_skipped", "bench", variant=variant.name, sha256=wanted, known_by=how)
            return ProgramResult(True, True, 0.0, 0, None, wanted)
        self.banner.forget()  # the new image will announce itself
        pin = self.config.forensic_pin(variant) if forensic else self.config.image_pin(variant)
        result = self.programmer.program(image, out_dir=out_dir, sha256=pin)
        self._write_record(variant.name + (" (forensic)" if forensic else ""), wanted)
        return result

    def _write_record(self, variant: str, sha256: str) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        record = {"variant": variant, "sha256": sha256, "programmed": time.time()}
        tmp = self._record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        tmp.replace(self._record_path)


class BootBanner(Part):
    """Watches the open UART for the DUT's boot banner (`dut.banner_sha256`): the image it runs, and
    when it last printed anything. Opened after the UART, closed before it."""

    name = "banner-watch"

    def __init__(self, uart: Uart, pattern: str, *, bench: str) -> None:
        self.uart = uart
        self.bench = bench
        self._pattern = re.compile(pattern)
        self._cond = threading.Condition()
        self._seen: tuple[str, float] | None = None  # (sha256, monotonic time seen)
        self._last_line = 0.0  # monotonic time of the last UART line the watch saw
        self._subscription: UartSubscription | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # why the watch stopped (the UART reader died)

    @property
    def watching(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def open(self, timeout: float | None = None) -> None:
        if self.watching:
            return
        self.error = None
        self._seen = None
        self._subscription = self.uart.subscribe()
        self._thread = threading.Thread(
            target=self._watch, args=(self._subscription,), name="banner-watch", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5.0)

    def current(self) -> str | None:
        """The sha256 in the last banner seen (None: none since the watch began or `forget()`)."""
        with self._cond:
            return self._seen[0] if self._seen is not None else None

    def forget(self) -> None:
        """Drop the banner seen: the DUT is about to run another image."""
        with self._cond:
            self._seen = None

    def wait_after(self, since: float, boot_s: float) -> tuple[str | None, str, bool]:
        """Wait for a banner printed after `since` (monotonic), at most `boot_s` (timeouts.boot_s) from then.

        Returns (sha256, "", False) when one came; else (None, why not, whether the DUT said nothing at
        all since `since`). A DUT that spoke, then fell quiet for BANNER_QUIET_S, has no banner to print.
        """
        deadline = since + boot_s
        with self._cond:
            while True:
                if self._seen is not None and self._seen[1] >= since:
                    return self._seen[0], "", False
                now = time.monotonic()
                if self._last_line >= since and now - self._last_line >= BANNER_QUIET_S:
                    reason = f"the DUT printed no banner and fell quiet for {BANNER_QUIET_S:g} s"
                    break
                if now >= deadline:
                    reason = f"no banner within timeouts.boot_s = {boot_s:g} s"
                    break
                self._cond.wait(min(0.2, deadline - now))
            return None, reason, self._last_line < since

    def _watch(self, subscription: UartSubscription) -> None:
        try:
            for line in subscription:
                match = self._pattern.search(line.text)
                with self._cond:
                    self._last_line = line.mono
                    if match and match.groups():
                        self._seen = (match.group(1).lower(), line.mono)
                    self._cond.notify_all()
        except InfrastructureError as exc:  # the reader died: say so at the next ensure_image
            self.error = exc
            log.error("bench %s: boot-banner watch stopped: %s", self.bench, exc)
