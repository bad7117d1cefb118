"""The UART's byte stream once read: raw file, timestamped lines, and every subscriber's queue.

`rig.drivers.uart.port` owns the port and its reader thread; everything the thread reads goes through one
`LineStream.take()`, which appends the bytes to the recording's `uart.raw` before any decoding, cuts
them into `UartLine`s (host monotonic and wall time, offset in `uart.raw`), appends those to
`uart.jsonl`, and puts each into the queue of every `UartSubscription`. A queue never blocks the
reader: a consumer that falls behind only makes its own queue longer (or, with a limit, drops its
own oldest lines).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import IO, Any

MAX_LINE_BYTES = 64 * 1024  # a line longer than this (binary noise, no newline) is cut into pieces
TAIL_LINES = 20  # lines kept for error messages


@dataclass(frozen=True)
class UartLine:
    """One line the DUT sent: text without the line ending, its bytes, and when it was complete."""

    text: str
    raw: bytes
    mono: float  # time.monotonic() when the line's last byte was read
    wall: float  # time.time() at the same moment
    offset: int  # byte offset of the line's first byte in the current uart.raw (negative: began before)


_CLOSED = object()  # queue sentinel: the subscription's stream ended (closed, or the reader died)


class UartSubscription:
    """A reader's own view of the line stream, from the moment it subscribed on."""

    def __init__(self, stream: LineStream, check: Callable[[], None], limit: int | None = None) -> None:
        self._stream = stream
        self._check = check  # raises if the reader thread died
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.closed = False
        self.limit = limit  # None: unbounded; else the oldest lines are dropped beyond it
        self.dropped = 0

    def _put(self, item: Any) -> None:
        if self.limit is not None and item is not _CLOSED and self._queue.qsize() >= self.limit:
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
                self.dropped += 1
        self._queue.put(item)

    def get(self, timeout: float) -> UartLine | None:
        """The next line, or None after `timeout` seconds without one (or once closed).

        Raises `UartError` at once if the reader thread has died, with its cause.
        """
        if self.closed:
            return None
        try:
            item = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            self._check()
            return None
        if item is _CLOSED:
            self.closed = True
            self._queue.put(_CLOSED)  # later get() calls see it too
            self._check()
            return None
        line: UartLine = item
        return line

    def __iter__(self) -> Iterator[UartLine]:
        """Every line until the subscription or the Uart is closed."""
        while not self.closed:
            line = self.get(timeout=0.5)
            if line is not None:
                yield line

    def close(self) -> None:
        """Stop receiving lines; the reader forgets this subscription."""
        self._stream.unsubscribe(self)
        self.closed = True
        self._queue.put(_CLOSED)


class _Recording:
    """The files of one recording folder; written only by the reader thread (under the stream's lock)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.raw_path = directory / "uart.raw"
        self.jsonl_path = directory / "uart.jsonl"
        # Unbuffered: bytes are on their way to disk before any decoding happens.
        self.raw: IO[bytes] = open(self.raw_path, "ab", buffering=0)  # noqa: SIM115 - lives until switched
        self.jsonl: IO[str] = open(self.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115
        self.offset = self.raw_path.stat().st_size

    def close(self) -> None:
        self.raw.close()
        self.jsonl.close()


class LineStream:
    """Bytes in; `uart.raw`, `uart.jsonl` and subscribers' lines out. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[UartSubscription] = []
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._pending = bytearray()
        self._pending_offset = 0
        self._recording: _Recording | None = None
        self.bytes_read = 0

    @property
    def raw_path(self) -> Path | None:
        rec = self._recording
        return rec.raw_path if rec is not None else None

    def record(self, directory: Path | None) -> None:
        """Switch the recording files to `directory` (None: stop recording)."""
        new = _Recording(directory) if directory is not None else None
        with self._lock:
            old, self._recording = self._recording, new
            # A line that began before the switch keeps its bytes in the old file: its offset says so.
            self._pending_offset = (new.offset if new else 0) - len(self._pending)
        if old is not None:
            old.close()

    def subscribe(self, check: Callable[[], None], limit: int | None = None) -> UartSubscription:
        sub = UartSubscription(self, check, limit)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: UartSubscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def wake_all(self) -> None:
        """End every subscriber's wait (the reader died: their next get() says why)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub._put(_CLOSED)

    def last_lines(self, count: int = TAIL_LINES) -> list[str]:
        """The last lines received (at most TAIL_LINES), oldest first."""
        with self._lock:
            return list(self._tail)[-count:]

    def close(self, mono: float, wall: float) -> None:
        """Flush the unfinished line, close the files, end every subscription."""
        with self._lock:
            self._flush(mono, wall)
            if self._recording is not None:
                self._recording.close()
                self._recording = None
            subscribers, self._subscribers = self._subscribers, []
        for sub in subscribers:
            sub.closed = True
            sub._put(_CLOSED)

    def cut(self, mono: float, wall: float) -> None:
        """End the unfinished line here (the port went away: a reset cuts the line short)."""
        with self._lock:
            self._flush(mono, wall)

    def take(self, data: bytes, mono: float, wall: float) -> None:
        """Raw bytes to disk first, then lines to the file, then to the subscribers.

        Subscribers get a chunk's lines only once `uart.jsonl` holds them: whoever reacts to a line
        (an `expect()`, the live verdict) can rely on the evidence being on disk already.
        """
        with self._lock:
            self.bytes_read += len(data)
            rec = self._recording
            if rec is not None:
                rec.raw.write(data)
            lines: list[UartLine] = []
            start = 0
            while True:
                end = data.find(b"\n", start)
                if end < 0:
                    break
                self._pending += data[start : end + 1]
                lines.append(self._emit(mono, wall))
                start = end + 1
            self._pending += data[start:]
            while len(self._pending) >= MAX_LINE_BYTES:
                rest = self._pending[MAX_LINE_BYTES:]
                del self._pending[MAX_LINE_BYTES:]
                lines.append(self._emit(mono, wall))
                self._pending += rest
            if rec is not None:
                rec.offset += len(data)
                rec.jsonl.flush()
            self._deliver(lines)

    def _deliver(self, lines: list[UartLine]) -> None:
        for line in lines:
            for sub in self._subscribers:
                sub._put(line)

    def _flush(self, mono: float, wall: float) -> None:
        if self._pending:
            line = self._emit(mono, wall)
            if self._recording is not None:
                self._recording.jsonl.flush()
            self._deliver([line])

    def _emit(self, mono: float, wall: float) -> UartLine:
        raw = bytes(self._pending)
        self._pending.clear()
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        line = UartLine(text=text, raw=raw, mono=mono, wall=wall, offset=self._pending_offset)
        self._pending_offset += len(raw)
        self._tail.append(text)
        rec = self._recording
        if rec is not None:
            # The same as json.dumps({"mono", "wall", "offset", "text"}) at a third of the cost, which
            # is most of the reader's time at a flood (floats' repr is their JSON form).
            rec.jsonl.write(
                f'{{"mono": {mono!r}, "wall": {wall!r}, "offset": {line.offset}, '
                f'"text": {encode_basestring_ascii(text)}}}\n'
            )
        return line
