"""Opening the UART's URL, one bounded open per kind, none of which throws away the device's bytes.

`rig.drivers.uart.port` reopens the port every few tens of milliseconds while it is lost (a USB CDC
console re-enumerating after a reset), so one open must be quick, bounded and honest about failing:

- **device path** (`/dev/serial/by-id/…`, `/dev/ttyACM0`): pyserial's own open, minus the input flush it
  ends with. Bytes a device sends in the first moments after it re-enumerated are the start of its boot;
  a flush right after the open would drop them. `appeared()` reads when the node (or the link to it)
  was made, which dates the device's return.
- **`socket://host:port`** (ser2net's raw `tcp` accepter): a connect bounded by STEP_TIMEOUT_S, no
  flush (pyserial's reads and discards what the socket already holds) and no 0.3 s pause on close.
  A raw TCP session has no way to say "the device is absent" but words: ser2net 4.3.11 accepts the
  connection, writes `Device open failure: Value or file not found\r\n` (or another of
  SER2NET_REFUSALS) as if the device had sent it, and hangs up. So the first bytes of a session are
  looked at before any is handed on: a refusal fails the open (the words are never recorded as the
  device's), anything else is the device speaking. ser2net answers within milliseconds; after
  CONFIRM_S of silence the device is taken as open and silent.
- **`rfc2217://`**: `rig.drivers.uart.rfc2217` (the negotiation itself tells an absent device apart).

Anything else `serial_for_url` knows (`loop://`, `spy://`, …) is opened by pyserial as it is.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time

import serial
from serial.urlhandler import protocol_socket

from rig.drivers.uart.rfc2217 import STEP_TIMEOUT_S, open_rfc2217

# What ser2net 4.3 writes into a new session before it hangs up instead of serving the device
# (dataxfer.c and port.c of ser2net 4.3.11: device absent or failing, port busy, refused address).
SER2NET_REFUSALS = (
    b"Device open failure: ",
    b"Port's device failed open",
    b"Port's device already in use",
    b"Port already in use",
    b"Port disabled",
    b"Port closing",
    b"Accessed denied due to your net address",
)
CONFIRM_S = 0.05  # silence after a raw TCP connect that means "ser2net opened the device"
SAID_BYTES = 200


class DevicePort(serial.Serial):
    """A local serial device, opened as pyserial does but keeping the bytes already received."""

    _opening = False

    def open(self) -> None:
        self._opening = True
        try:
            super().open()
        finally:
            self._opening = False

    def _reset_input_buffer(self) -> None:
        # pyserial's open() ends with this flush (tcflush TCIFLUSH): skipped while opening.
        if not self._opening:
            super()._reset_input_buffer()  # type: ignore[misc]  # private, not in pyserial's stubs


class RawTcpPort(protocol_socket.Serial):
    """`socket://host:port`: a bounded connect that recognises ser2net's refusals, and no flush."""

    _socket: socket.socket | None
    _undecided = False  # nothing handed on yet: a refusal may still come as the session's first bytes

    def open(self) -> None:
        url = self.port
        if url is None:
            raise serial.SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise serial.SerialException("Port is already open.")
        self.logger = None
        address = self.from_url(url)
        try:
            sock = socket.create_connection(address, timeout=STEP_TIMEOUT_S)
        except OSError as exc:
            raise serial.SerialException(f"could not connect to {url}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._confirm(sock, url)
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self._socket = sock
        self._undecided = True
        self.is_open = True

    def _confirm(self, sock: socket.socket, url: str) -> None:
        """Wait CONFIRM_S for the session's first bytes; a refusal or a hang-up fails the open."""
        deadline = time.monotonic() + CONFIRM_S
        while True:
            ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return  # silence: the device is open and has nothing to say yet
            try:
                head = sock.recv(SAID_BYTES, socket.MSG_PEEK)
            except OSError as exc:
                raise serial.SerialException(f"{url}: the connection failed at once ({exc})") from None
            if not head:
                raise serial.SerialException(
                    f"{url}: the server closed the connection at once (ser2net does so when it cannot "
                    "open the device: is it plugged in at the server, and not held by another program?)"
                )
            verdict = refusal(head)
            if verdict is None:
                return  # the device speaking: left in the socket for the first read
            if verdict:
                raise serial.SerialException(f"{url}: the server refused the session: {verdict!r}")
            # The beginning of what may be a refusal: wait for the rest of its line (or the hang-up).
            deadline = max(deadline, time.monotonic() + STEP_TIMEOUT_S)
            time.sleep(0.001)

    def read(self, size: int = 1) -> bytes:
        data = super().read(size)
        if self._undecided and data:
            self._undecided = False
            said = refusal(data)
            if said:  # the refusal came after CONFIRM_S: the session never served the device
                raise serial.SerialException(f"{self.port}: the server refused the session: {said!r}")
        return data

    def reset_input_buffer(self) -> None:
        """Nothing to do: what has arrived is the device's, and reading takes it."""

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(OSError):  # already disconnected
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.is_open = False


def refusal(head: bytes) -> str | None:
    """ser2net's refusal line if `head` is one, "" if it may still become one, None if it is not one."""
    for notice in SER2NET_REFUSALS:
        if head.startswith(notice):
            end = head.find(b"\n")
            if end < 0:
                return ""
            return head[:end].decode("utf-8", "replace").strip()
        if notice.startswith(head):
            return ""
    return None


def open_url(url: str, baud: int, read_timeout: float) -> serial.SerialBase:
    """Open the UART's `url` (see the module docstring); SerialException or OSError when it cannot be."""
    if url.startswith("rfc2217://"):
        return open_rfc2217(url, baud, read_timeout)
    if "://" in url and not url.startswith("socket://"):
        return serial.serial_for_url(url, baudrate=baud, timeout=read_timeout)
    port = (RawTcpPort if url.startswith("socket://") else DevicePort)(
        None, baudrate=baud, timeout=read_timeout
    )
    port.port = url
    port.open()
    return port


def appeared(url: str) -> float | None:
    """Wall time the device at `url` (a path) appeared: the newest ctime of its link and its node."""
    if "://" in url:
        return None
    times = []
    for stat in (os.lstat, os.stat):
        with contextlib.suppress(OSError):
            times.append(stat(url).st_ctime)
    return max(times) if times else None
