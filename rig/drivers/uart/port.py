"""UART capture: a reader thread that owns the port, writes raw bytes to disk, and fans lines out.

The DUT's debug UART is the evidence of every attempt, so nothing it sends may be lost because nobody
was reading at that moment (labgrid's pull-only reading loses exactly that). One background thread owns
the port (`rig.drivers.uart.urls` opens each kind: a device path or `/dev/serial/by-id/…` link,
`socket://`, and `rfc2217://` including ser2net through `rig.drivers.uart.rfc2217`'s chunked client)
and hands every chunk it reads to `rig.drivers.uart.stream`, which:

1. appends the bytes to `uart.raw` of the current recording folder, before any decoding;
2. splits them into lines stamped with host monotonic and wall time (`UartLine`), appended to
   `uart.jsonl` as `{mono, wall, offset, text}` (offset: where the line starts in `uart.raw`);
3. puts each line into the unbounded queue of every subscriber (`subscribe()`), so the live log parser
   and `expect()` read the same stream without taking lines from each other, and a slow consumer never
   slows the reader.

When the port disappears (a USB CDC console re-enumerating after a reset or a flash) the reader records
`port_lost` and tries to reopen the same URL every RECONNECT_POLL_S, counted from the start of one try
to the start of the next (a try that failed fast waits for the next slot, one that took longer is
followed at once), for RECONNECT_FAST_S, then every RECONNECT_SLOW_S. Every try is bounded (a few
milliseconds against ser2net, whether the device is there or not), so the port is open again within a
few tens of milliseconds of the device's return — before a USB CDC device, which enumerates about a
second before its firmware prints, says its first word. `port_back` gives `gone_s`, `attempts` and
`return_to_back_s` (the device's return → the port open, see `UartGap`); every gap, lending included,
is kept in `gaps()` so that whoever judges a boot can tell missed lines from a silent device.

A reader that dies (a disk that fills, a port lost with `reconnect=False`) is reported with its cause
at the next call on the `Uart` or its subscriptions, never as a later timeout.
`lend()` closes the port for a programmer that needs it and takes it back afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import serial

from rig.drivers.part import Part
from rig.drivers.uart.gaps import GapLog, UartGap
from rig.drivers.uart.rfc2217 import ChunkedRfc2217Serial
from rig.drivers.uart.stream import TAIL_LINES, LineStream, UartLine, UartSubscription
from rig.drivers.uart.urls import appeared, open_url
from rig.errors import FirmwareFailure, InfrastructureError
from rig.events import EventLog

__all__ = ["Uart", "UartError", "UartGap", "UartLine", "UartSubscription", "UartTimeout", "UartUnexpected"]

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.05  # how long one read waits: bounds the reaction to close/lend requests
READ_SIZE = 1 << 16  # the most one read takes
# While the port is gone: one reopen try per RECONNECT_POLL_S (start to start) for RECONNECT_FAST_S after
# the loss — a reset's re-enumeration, a flash — then one per RECONNECT_SLOW_S (an unplugged adapter,
# a ser2net host that is down: a 50 Hz connect loop for hours would only fill ser2net's log).
RECONNECT_POLL_S = 0.02
RECONNECT_FAST_S = 60.0
RECONNECT_SLOW_S = 0.5
# expect() looks at lines since the last expect()/record(); on a port nobody expect()s on for hours this
# backlog would grow without end, so it keeps the newest lines only (about 10 MB of debug lines).
EXPECT_BACKLOG = 100_000


class UartError(InfrastructureError):
    """The port could not be opened, was lost for good, or the reader thread died."""

    part = "uart"


class UartTimeout(InfrastructureError):
    """`expect()` did not see its pattern in time; the message has the log path and the last lines."""

    part = "uart"

    def __init__(self, message: str, *, tail: list[str]) -> None:
        super().__init__(message)
        self.tail = tail


class UartUnexpected(FirmwareFailure):
    """`expect()` saw a `not_matching` line (the DUT said something it must not); carries that line."""

    def __init__(self, message: str, *, line: UartLine, tail: list[str]) -> None:
        super().__init__(message)
        self.line = line
        self.tail = tail


class Uart(Part):
    """The DUT's UART: open it, record it, subscribe to its lines, wait for patterns, lend it out."""

    def __init__(
        self,
        url: str,
        baud: int,
        *,
        events: EventLog | None = None,
        reconnect: bool = True,
        name: str = "uart",
        open_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.baud = baud
        self.name = name
        self.reconnect = reconnect
        self.events = events if events is not None else EventLog()
        self.error: BaseException | None = None
        self.connected = False
        self._stream = LineStream()
        self._port: serial.SerialBase | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lend_request = threading.Event()
        self._lent = threading.Event()
        self._give_back = threading.Event()
        self._back = threading.Event()
        self._lost_since: float | None = None
        self._gaps = GapLog()
        self._open_timeout = open_timeout
        self._fd: int | None = None  # the port's descriptor when it has one (device, socket://)
        self._expect_sub: UartSubscription | None = None

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def alive(self) -> bool:
        """The reader thread is running (the port may be momentarily lost and being reopened)."""
        return self._thread is not None and self._thread.is_alive() and self.error is None

    @property
    def raw_path(self) -> Path | None:
        """The `uart.raw` being written, if recording."""
        return self._stream.raw_path

    @property
    def bytes_read(self) -> int:
        """Bytes read from the port since this Uart was made."""
        return self._stream.bytes_read

    def gaps(self, since: float = 0.0) -> list[UartGap]:
        """Every time the port was gone (lost or lent) that lasted into or past `since` (monotonic),
        oldest first; the last one has `back` None while the port is still gone."""
        return self._gaps.since(since)

    def open(self, timeout: float | None = None) -> None:
        """Open the port and start the reader; tries every RECONNECT_POLL_S for up to `timeout` seconds."""
        if self._thread is not None:
            self._raise_if_dead()  # open and reading: nothing to do; a dead reader says why
            return
        if timeout is not None:
            self._open_timeout = timeout
        timeout = self._open_timeout
        self.error = None
        self._port = self._open_port(timeout)
        self.connected = True
        if self._gaps.current is not None:  # closed while the port was gone: that gap ends here
            self._gaps.end(time.monotonic(), 0, None, None)
            self._lost_since = None
        for flag in (self._stop, self._lend_request, self._lent, self._give_back, self._back):
            flag.clear()  # a close() during a lend may have left them set
        self._expect_sub = self.subscribe(limit=EXPECT_BACKLOG)
        self._thread = threading.Thread(target=self._run, name=f"uart-reader-{self.name}", daemon=True)
        self._thread.start()
        self.events.emit("uart_open", self.name, url=self.url, baud=self.baud)

    def close(self) -> None:
        """Stop the reader, close the port and the recording files. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._give_back.set()
            thread.join(timeout=5.0)
            if thread.is_alive():
                raise UartError(f"{self.name} {self.url}: the reader thread did not stop within 5 s")
            self.events.emit("uart_closed", self.name, url=self.url, bytes=self.bytes_read)
        self._close_port()
        self._stream.close(time.monotonic(), time.time())

    # ------------------------------------------------------------------------------------ recording

    def record(self, directory: Path | None) -> None:
        """From now on write raw bytes to `directory/uart.raw` and lines to `directory/uart.jsonl`.

        Called once per attempt with the attempt's folder (None stops recording). It also resets the
        `expect()` cursor: lines that arrived before the switch are not matched any more.
        """
        self._raise_if_dead()
        self._stream.record(directory)
        if self._expect_sub is not None:
            self._expect_sub.close()
            self._expect_sub = self.subscribe(limit=EXPECT_BACKLOG)
        self.events.emit("uart_record", self.name, directory=str(directory) if directory else None)

    # ------------------------------------------------------------------------------------ consumers

    def subscribe(self, *, limit: int | None = None) -> UartSubscription:
        """A new subscriber that receives every line from now on; it never slows the reader.

        Its queue is unbounded unless `limit` is given (then the oldest lines are dropped).
        """
        self._raise_if_dead()
        return self._stream.subscribe(self._raise_if_dead, limit)

    def last_lines(self, count: int = TAIL_LINES) -> list[str]:
        """The last lines received (at most TAIL_LINES), oldest first."""
        return self._stream.last_lines(count)

    def expect(
        self,
        pattern: str | re.Pattern[str],
        timeout: float,
        *,
        not_matching: str | re.Pattern[str] | None = None,
    ) -> re.Match[str]:
        """Wait up to `timeout` s for a line matching `pattern` (re.search) and return the match.

        Lines are taken from the Uart's own cursor: each line is looked at once, by the first
        `expect()` after it arrived (since `open()` or the last `record()`). A line matching
        `not_matching` first raises `UartUnexpected`; no match in time raises `UartTimeout`.
        """
        self._raise_if_dead()
        wanted = re.compile(pattern) if isinstance(pattern, str) else pattern
        forbidden = re.compile(not_matching) if isinstance(not_matching, str) else not_matching
        sub = self._expect_sub
        if sub is None:
            raise UartError(f"{self.name} {self.url}: expect() before open()")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UartTimeout(self._timeout_message(wanted, timeout), tail=self.last_lines())
            line = sub.get(timeout=min(remaining, 0.25))
            if line is None:
                continue
            if forbidden is not None and forbidden.search(line.text):
                raise UartUnexpected(
                    f"{self.name} {self.url}: unexpected line {line.text!r} (matches "
                    f"{forbidden.pattern!r}) while waiting for {wanted.pattern!r}; "
                    f"log: {self.raw_path or 'not recorded'}",
                    line=line,
                    tail=self.last_lines(),
                )
            found = wanted.search(line.text)
            if found is not None:
                return found

    def _timeout_message(self, wanted: re.Pattern[str], timeout: float) -> str:
        tail = self.last_lines(10)
        state = ""
        if self._lost_since is not None:
            state = f" (the port has been gone for {time.monotonic() - self._lost_since:.1f} s)"
        shown = "\n  ".join(tail) if tail else "(nothing received)"
        return (
            f"{self.name} {self.url}: no line matching {wanted.pattern!r} within {timeout:g} s{state}; "
            f"log: {self.raw_path or 'not recorded'}; last lines:\n  {shown}"
        )

    # ------------------------------------------------------------------------------------ lending

    @contextlib.contextmanager
    def lend(self) -> Iterator[None]:
        """Close the port for someone else (a programmer on the same USB device), reopen it afterwards.

        Everything the device sends after the port is open again is captured; what it sends while
        the port is lent is not (nobody holds the port). Reopening waits like a re-enumeration.
        """
        self._raise_if_dead()
        self._give_back.clear()
        self._back.clear()
        self._lend_request.set()
        if not self._lent.wait(timeout=5.0):
            self._raise_if_dead()
            raise UartError(f"{self.name} {self.url}: the reader did not release the port within 5 s")
        self.events.emit("port_lent", self.name, url=self.url)
        try:
            yield
        finally:
            self._give_back.set()
            wait = max(self._open_timeout, 10.0)
            if not self._back.wait(timeout=wait):
                self._raise_if_dead()
                raise UartError(
                    f"{self.name} {self.url}: the port did not come back within {wait:g} s after it was "
                    "lent; check the cable and that the programmer released it (the reader keeps trying)"
                )
            self._raise_if_dead()

    # ------------------------------------------------------------------------------------ internals

    def _raise_if_dead(self) -> None:
        if self.error is not None:
            raise UartError(
                f"{self.name} {self.url}: the UART reader stopped: {type(self.error).__name__}: {self.error}; "
                "capture is incomplete from here on (check the port and the recording folder)"
            ) from self.error

    def _serial_url(self) -> str:
        url = self.url
        # ser2net serving a device without modem lines (a pty, many USB bridges) never acknowledges
        # pyserial's SET_CONTROL, and the open fails with "timeout while waiting for option 'control'".
        if url.startswith("rfc2217://") and "ign_set_control" not in url:
            url += ("&" if "?" in url else "?") + "ign_set_control"
        return url

    def _open_port(self, timeout: float) -> serial.SerialBase:
        deadline = time.monotonic() + timeout
        while True:
            started = time.monotonic()
            try:
                return self._connect()
            except (serial.SerialException, OSError, ValueError) as exc:
                if started + RECONNECT_POLL_S >= deadline or isinstance(exc, ValueError):
                    raise UartError(
                        f"{self.name}: cannot open {self.url} at {self.baud} baud ({exc}); check the "
                        "adapter is plugged in and not held by another program (dut.uart.url)"
                    ) from exc
            time.sleep(max(0.0, started + RECONNECT_POLL_S - time.monotonic()))

    def _close_port(self) -> None:
        port, self._port = self._port, None
        self.connected = False
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def _run(self) -> None:
        try:
            self._read_loop()
        except BaseException as exc:  # reported: every call on the Uart raises it with this cause
            self.error = exc
            log.error("%s %s: reader thread died: %r", self.name, self.url, exc)
            with contextlib.suppress(OSError):
                self.events.emit("uart_reader_died", self.name, url=self.url, error=repr(exc))
            self._close_port()
            self._stream.wake_all()
            self._lent.set()
            self._back.set()

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            if self._lend_request.is_set():
                self._serve_lend()
                continue
            port = self._port
            if port is None:
                self._reopen(reason="lost")
                continue
            try:
                data = self._read_chunk(port)
            except (serial.SerialException, OSError) as exc:
                if not self.reconnect:
                    raise UartError(f"{self.name} {self.url}: port lost ({exc}); reconnect is off") from exc
                self._port_lost(exc)
                continue
            if data:
                self._stream.take(data, time.monotonic(), time.time())

    def _read_chunk(self, port: serial.SerialBase) -> bytes:
        """What the port has now, waiting at most READ_TIMEOUT_S for the first byte."""
        if isinstance(port, ChunkedRfc2217Serial):
            return port.read_chunk(READ_SIZE, READ_TIMEOUT_S)
        fd = self._fd
        if fd is None:
            # Other URL handlers without a descriptor: a queue filled by pyserial's own thread.
            waiting: int = port.in_waiting  # type: ignore[attr-defined]  # every URL handler has it
            return bytes(port.read(waiting or 1))
        # A device or socket:// port: wait for readability ourselves, then take everything there in
        # one non-blocking read (socket://'s in_waiting says 1 at most, and a timed read(n) would wait
        # for n bytes, delaying every line by the timeout).
        ready, _, _ = select.select([fd], [], [], READ_TIMEOUT_S)
        if not ready:
            return b""
        return bytes(port.read(READ_SIZE))

    def _connect(self) -> serial.SerialBase:
        """Open the URL (`rig.drivers.uart.urls`), then choose how to read it (see `_read_chunk`)."""
        port = open_url(self._serial_url(), self.baud, READ_TIMEOUT_S)
        fd: int | None = None
        if not isinstance(port, ChunkedRfc2217Serial):
            try:
                fd = port.fileno()
            except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
                fd = None
        if fd is not None:
            port.timeout = 0
        self._fd = fd
        return port

    def _port_lost(self, exc: BaseException) -> None:
        self._close_port()
        self._lost_since = time.monotonic()
        self._stream.cut(time.monotonic(), time.time())  # a reset cuts the line short
        self._gaps.begin(self._lost_since, time.time(), "lost", str(exc))
        self.events.emit("port_lost", self.name, url=self.url, error=str(exc))

    def _reopen(self, reason: str) -> None:
        """Reopen the same URL (one try per period, see RECONNECT_*) until it works or close()/lend() asks."""
        lost = self._lost_since if self._lost_since is not None else time.monotonic()
        absent_at = lost  # when the device was last known to be absent: the loss, then each failed try
        attempts = 0
        while not self._stop.is_set() and not self._lend_request.is_set():
            started = time.monotonic()
            try:
                self._port = self._connect()
            except (serial.SerialException, OSError) as exc:
                log.debug("%s: reopen %s failed: %s", self.name, self.url, exc)
                attempts += 1
                absent_at = started
                period = RECONNECT_POLL_S if started - lost < RECONNECT_FAST_S else RECONNECT_SLOW_S
                self._stop.wait(max(0.0, started + period - time.monotonic()))
                continue
            back, back_wall = time.monotonic(), time.time()
            self.connected = True
            self._lost_since = None
            returned, seen_by = back - absent_at, "polling"
            node = appeared(self.url)  # a device path: when its node (or link) was made
            if node is not None and back_wall - returned <= node <= back_wall:
                returned, seen_by = back_wall - node, "device node"
            gap = self._gaps.end(back, attempts + 1, round(returned, 4), seen_by)
            kind = "port_back" if reason == "lost" else "port_returned"
            self.events.emit(
                kind,
                self.name,
                url=self.url,
                gone_s=round(back - gap.lost, 3),
                attempts=attempts + 1,
                return_to_back_s=gap.return_to_back_s,
                return_seen_by=seen_by,
            )
            self._back.set()
            return

    def _serve_lend(self) -> None:
        self._close_port()
        self._stream.cut(time.monotonic(), time.time())
        self._lost_since = time.monotonic()
        self._gaps.begin(self._lost_since, time.time(), "lent")
        self._lent.set()
        while not self._give_back.wait(timeout=0.1):
            if self._stop.is_set():
                return
        self._lend_request.clear()
        self._lent.clear()
        if not self._stop.is_set():
            self._reopen(reason="lent")
