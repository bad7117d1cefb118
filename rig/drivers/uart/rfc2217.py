"""RFC 2217 (ser2net) for the UART capture: pyserial's client with a reader that moves chunks, not bytes.

pyserial's `rfc2217://` client negotiates the port settings well but hands received data over one byte
at a time: its socket thread puts every byte into a queue and `read()` takes them out one by one. On
this kind of machine that tops out near 2 Mbit/s at most of a core (see `make bench-uart`), short of a
flooding DUT. `ChunkedRfc2217Serial` keeps pyserial's opening, negotiation and option handling (the
telnet commands are passed to the same methods) and replaces only the receive path: runs of data
between telnet commands go into the queue as one item, and `read_chunk()` returns what is there.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable

import serial
from serial import rfc2217

IAC, SB, SE = rfc2217.IAC, rfc2217.SB, rfc2217.SE
NEGOTIATION = (rfc2217.DO, rfc2217.DONT, rfc2217.WILL, rfc2217.WONT)
RECV_SIZE = 1 << 16


class ChunkedRfc2217Serial(rfc2217.Serial):
    """An `rfc2217://host:port[?options]` port whose received data travels in chunks."""

    _leftover = b""
    # Set by pyserial's open() (its type stubs leave the private parts out).
    _read_buffer: queue.Queue[bytes | None]
    _socket: socket.socket
    _thread: threading.Thread | None
    _timeout: float | None
    _telnet_negotiate_option: Callable[[bytes, bytes], None]
    _telnet_process_subnegotiation: Callable[[bytes], None]
    _telnet_process_command: Callable[[bytes], None]

    def _telnet_read_loop(self) -> None:
        """The socket thread: split each received block into data runs and telnet commands."""
        buffer: queue.Queue[bytes | None] = self._read_buffer
        iac_seen = False
        negotiation: bytes | None = None  # DO/DONT/WILL/WONT waiting for its option byte
        suboption: bytearray | None = None  # inside IAC SB … IAC SE
        try:
            while self.is_open:
                try:
                    data = self._socket.recv(RECV_SIZE)
                except TimeoutError:
                    continue  # the socket has a timeout so that a closed port ends this loop
                except OSError:
                    buffer.put(None)
                    break
                if not data:
                    buffer.put(None)  # ser2net went away
                    break
                out = bytearray()
                i, n = 0, len(data)
                while i < n:
                    if negotiation is not None:
                        self._telnet_negotiate_option(negotiation, data[i : i + 1])
                        negotiation = None
                        i += 1
                    elif iac_seen:
                        command = data[i : i + 1]
                        i += 1
                        iac_seen = False
                        if command == IAC:  # an escaped 0xFF data byte
                            (suboption if suboption is not None else out).extend(IAC)
                        elif command == SB:
                            suboption = bytearray()
                        elif command == SE:
                            self._telnet_process_subnegotiation(bytes(suboption or b""))
                            suboption = None
                        elif command in NEGOTIATION:
                            negotiation = command
                        else:
                            self._telnet_process_command(command)
                    else:
                        end = data.find(IAC, i)
                        stop = n if end < 0 else end
                        (suboption if suboption is not None else out).extend(data[i:stop])
                        i = stop
                        if end >= 0:
                            iac_seen = True
                            i += 1
                if out:
                    buffer.put(bytes(out))
        finally:
            if self.logger:
                self.logger.debug("read thread terminated")

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise serial.PortNotOpenError()
        waiting = len(self._leftover)
        for item in list(self._read_buffer.queue):
            waiting += len(item) if item is not None else 0
        return waiting

    def read_chunk(self, size: int, timeout: float) -> bytes:
        """Up to `size` bytes: what has arrived, waiting up to `timeout` s for the first of them."""
        if not self.is_open:
            raise serial.PortNotOpenError()
        data = bytearray(self._leftover)
        self._leftover = b""
        try:
            if not data:
                item = self._read_buffer.get(True, timeout)
                if item is None:
                    raise serial.SerialException("connection to the RFC 2217 server lost")
                data += item
            while len(data) < size:
                item = self._read_buffer.get_nowait()
                if item is None:
                    self._read_buffer.put(None)  # report the loss on the next call
                    break
                data += item
        except queue.Empty:
            pass
        if len(data) > size:
            self._leftover = bytes(data[size:])
            del data[size:]
        if not data and (self._thread is None or not self._thread.is_alive()):
            raise serial.SerialException("connection to the RFC 2217 server lost (reader thread ended)")
        return bytes(data)

    def read(self, size: int = 1) -> bytes:
        """pyserial's contract: up to `size` bytes, waiting at most the port's timeout for them."""
        timeout = self._timeout if self._timeout is not None else 1e9
        data = bytearray()
        deadline = time.monotonic() + timeout
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and data:
                break
            chunk = self.read_chunk(size - len(data), max(0.0, remaining))
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def reset_input_buffer(self) -> None:
        self._leftover = b""
        super().reset_input_buffer()


def open_rfc2217(url: str, baud: int, timeout: float) -> ChunkedRfc2217Serial:
    """Open `url` with the chunked client (same URL options as pyserial's: ign_set_control, …)."""
    port = ChunkedRfc2217Serial(None, baudrate=baud, timeout=timeout)
    port.port = url
    port.open()
    return port
