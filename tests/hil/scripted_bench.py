"""A scripted bench for the plugin's own tests: replays Mbed TLS logs as a DUT would print them.

It implements `rig.hil.attempt.CellBench` (what one attempt needs) with no hardware and no simulator, so the
plugin's wiring — parametrization, order, xfail, errors, records — is tested in a second or two. The
drivers themselves are tested against real peers elsewhere; nothing here stands in for a driver's test.
Every action is appended to `actions.log` in the current folder, one word each, for the tests to read.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.config import BenchConfig, Loaded, VariantConfig, load_bench
from rig.drivers.programmers import ProgramResult
from rig.drivers.uart.gaps import UartGap
from rig.drivers.uart.port import UartLine
from rig.errors import InfrastructureError
from rig.events import EventLog

_PREFIX = "0x7ffd5a3c1e20: "


def _line(where: str, text: str) -> str:
    return f"{where}: {_PREFIX}{text}"


def _state_block(state: int) -> list[str]:
    return [
        _line("ssl_tls.c:5922", "=> handshake"),
        _line("ssl_cli.c:4272", f"client state: {state}"),
        _line("ssl_msg.c:2033", "=> flush output"),
        _line("ssl_msg.c:2047", "<= flush output"),
    ]


def _read(size: int, left: int = 0) -> list[str]:
    return [
        _line("ssl_msg.c:1835", "=> fetch input"),
        _line("ssl_msg.c:1881", f"in_left: {left}, nb_want: {left + size}"),
        _line("ssl_msg.c:1975", f"in_left: {left}, nb_want: {left + size}"),
        _line("ssl_msg.c:1998", f"ssl->f_recv(_timeout)() returned {size} (-0x{(1 << 32) - size:x})"),
        _line("ssl_msg.c:2019", "<= fetch input"),
    ]


def handshake_until(last_state: int) -> list[str]:
    """A client's log through `last_state` (each state entered once, with a read in the server's states)."""
    lines = ["[hub] boot image sha256=" + "0" * 64]
    for state in range(0, last_state + 1):
        lines += _state_block(state)
        if state in (2, 3, 4, 5, 6, 12, 13):
            lines += _read(5) + _read(90, 5)
        lines.append(_line("ssl_tls.c:5933", "<= handshake"))
    return lines


COMPLETED = [
    *handshake_until(15),
    _line("ssl_cli.c:3911", "handshake: done"),
    _line("ssl_tls.c:5933", "<= handshake"),
    "[hub] TLS ok: TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384",
    "[hub] MQTT CONNACK rc=0 accepted",
]

STALLED_AT_12 = [
    *handshake_until(11),
    *_state_block(12),
    _line("ssl_tls.c:6034", "=> parse change cipher spec"),
    _line("ssl_msg.c:3792", "=> read record"),
    _line("ssl_msg.c:1835", "=> fetch input"),
    _line("ssl_msg.c:1881", "in_left: 0, nb_want: 5"),
    _line("ssl_msg.c:1975", "in_left: 0, nb_want: 5"),
    _line("ssl_tls.c:5933", "<= handshake"),
]

RECORD_TOO_BIG = [
    *handshake_until(2),
    _line("ssl_msg.c:3538", "input record: msgtype = 22, version = [3:3], msglen = 16384"),
    _line("ssl_msg.c:3764", "bad message length"),
    _line("ssl_msg.c:4020", "mbedtls_ssl_fetch_input() returned -29184 (-0x7200)"),
    _line("ssl_cli.c:1530", "mbedtls_ssl_read_record() returned -29184 (-0x7200)"),
    _line("ssl_tls.c:5933", "<= handshake"),
    "[hub] mbedtls_ssl_handshake returned -0x7200",
]


class Flaky(list[str]):
    """A script that stalls on its second play and completes otherwise (a flaky cell)."""


FLAKY = Flaky(COMPLETED)


@dataclass
class Script:
    """What the DUT prints after a reset in one cell, and bench faults to raise first."""

    lines: list[str]
    pause_s: float = 0.002  # between lines
    reset_faults: int = 0  # how many resets fail with an InfrastructureError before one works
    plays: int = 0


class ScriptedBench:
    """Plays `scripts[(variant, path)]` (or `scripts[variant]`) after each reset of the DUT."""

    def __init__(self, loaded: Loaded[BenchConfig], scripts: dict[Any, Script], actions: Path) -> None:
        self._config = loaded.model
        self.scripts = scripts
        self.actions = actions
        self.on_dut: str | None = None
        self.path = self._config.baseline
        self._queue: queue.SimpleQueue[UartLine] | None = None
        self._player: threading.Thread | None = None
        self._stop = threading.Event()
        self.folder: Path | None = None
        self.events = EventLog()  # the core's event log, as a real bench has: files, logging, progress

    @property
    def config(self) -> BenchConfig:
        return self._config

    def _act(self, text: str) -> None:
        with self.actions.open("a") as file:
            file.write(text + "\n")

    def _script(self) -> Script:
        assert self.on_dut is not None
        # A forensic image ("<variant> (forensic)") plays its own script if it has one, else its variant's.
        base = self.on_dut.removesuffix(" (forensic)")
        script = (
            self.scripts.get((self.on_dut, self.path))
            or self.scripts.get(self.on_dut)
            or self.scripts.get((base, self.path))
            or self.scripts[base]
        )
        script.plays += 1
        if isinstance(script.lines, Flaky) and script.plays == 2:
            return Script(STALLED_AT_12)
        return script

    def attach(self, folder: Path | None) -> None:
        if folder is None:
            self._stop_player()
        self.folder = folder
        self.events.attach(folder / "events.jsonl" if folder is not None else None)

    def ensure_image(self, variant: VariantConfig, out_dir: Path, *, forensic: bool = False) -> ProgramResult:
        name = variant.name + (" (forensic)" if forensic else "")
        if self.on_dut == name:
            self.events.emit("flash_skipped", "bench", variant=variant.name, known_by="banner")
            return ProgramResult(True, True, 0.0, 0, None, "0" * 64)
        self.events.emit("flash_started", "scripted", variant=variant.name)
        self._act(f"program {name}")
        self.on_dut = name
        return ProgramResult(True, False, 0.01, 1, None, "0" * 64)

    def select_path(self, name: str) -> None:
        if name != self.path:
            self.events.emit("path_select", "router", path=name)
            self._act(f"path {name}")
            self.path = name
            self.events.emit("path_selected", "router", path=name, seconds=0.0)
        else:
            self.events.emit("path_kept", "router", path=name)

    def subscribe(self) -> _Lines:
        self._queue = queue.SimpleQueue()
        return _Lines(self._queue)

    def reset_dut(self) -> None:
        script = self._script()
        if script.reset_faults > 0:
            script.reset_faults -= 1
            self._act("reset-fault")
            raise InfrastructureError("programmer ICD4 BURSIM000001: Connection Failed. — replug the tool")
        self._act("reset")
        self.events.emit("reset", "scripted", via="command")
        self._stop_player()
        self._stop.clear()
        queue_, folder = self._queue, self.folder
        assert queue_ is not None and folder is not None

        def play() -> None:
            with (folder / "uart.raw").open("ab") as raw:
                for text in script.lines:
                    if self._stop.wait(script.pause_s):
                        return
                    raw.write(text.encode() + b"\r\n")
                    queue_.put(UartLine(text, text.encode(), time.monotonic(), time.time(), 0))

        self._player = threading.Thread(target=play, daemon=True)
        self._player.start()

    def _stop_player(self) -> None:
        self._stop.set()
        if self._player is not None:
            self._player.join(timeout=5)
            self._player = None

    @contextmanager
    def capture(self, out: Path) -> Iterator[None]:
        yield

    def wait_cloud_connected(self, timeout: float, since: float) -> bool | None:
        return None

    def uart_gaps(self, since: float) -> list[UartGap]:
        return []

    def emit(self, kind: str, **fields: Any) -> None:
        self.events.emit(kind, "harness", **fields)


class _Lines:
    def __init__(self, lines: queue.SimpleQueue[UartLine]) -> None:
        self._lines = lines

    def get(self, timeout: float) -> UartLine | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        pass


@contextmanager
def scripted(
    path: Path, scripts: dict[Any, Script], *, preflight: str | None = None
) -> Iterator[ScriptedBench]:
    """A factory for the plugin's `rig_bench_factory`: the bench of `path`, playing `scripts`."""
    if preflight is not None:
        raise InfrastructureError(f"preflight failed — {preflight}")
    bench = ScriptedBench(load_bench(path), scripts, Path("actions.log").resolve())
    bench._act("open")
    try:
        yield bench
    finally:
        bench._act("restore")
