"""The hub's UART port on the simulated board: a pty pair behind a stable symlink, raw, overrunning.

`rig.sim.board` owns one `Uart`. The symlink plays `/dev/serial/by-id/…`: readers open it with pyserial
as they would a USB-UART bridge. The pty is put in raw mode the moment it is created (a fresh pty is
cooked: it would echo into the master and turn CR into LF; sim-notes §3). `transmit()` never waits:
what the reader's side has no room for is counted as dropped, as a real UART overruns when nobody
reads (observed: a pty master takes ~18 KB, then a blocking writer would stall the firmware).
`vanish()` and `appear()` model a USB CDC port re-enumerating: the path disappears, readers get an
error, and a new pty (possibly another /dev/pts number) comes back under the same path.
"""

from __future__ import annotations

import contextlib
import os
import threading
import tty
from pathlib import Path

BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit


class Uart:
    """The pty pair behind the stable port path: raw, paced, drop-on-overrun, re-creatable."""

    def __init__(self, link: Path, baud: int) -> None:
        self.link = link
        self.baud = baud
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self.written = 0
        self.dropped = 0

    @property
    def present(self) -> bool:
        return self._master is not None

    def appear(self) -> None:
        """Create a new pty, raw from the first moment, and point the symlink at it."""
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        with self._lock:
            self._master, self._slave = master, slave
        tmp.replace(self.link)

    def vanish(self) -> None:
        """Remove the port: readers get an error, the path stops existing (USB unplugged)."""
        self.link.unlink(missing_ok=True)
        with self._lock:
            fds = [fd for fd in (self._master, self._slave) if fd is not None]
            self._master = self._slave = None
        for fd in fds:
            os.close(fd)

    def transmit(self, data: bytes) -> None:
        """Put bytes on the wire now; what the receiver cannot take is lost."""
        with self._lock:
            master = self._master
            sent = 0
            if master is not None:
                try:
                    while sent < len(data):
                        sent += os.write(master, data[sent:])
                except (BlockingIOError, OSError):
                    pass  # receiver buffer full (nobody reads) or port going away: overrun
            self.written += sent
            self.dropped += len(data) - sent

    def drain_host_input(self) -> None:
        """Read and discard what the host sends to the hub's RX pin (the firmware has no console)."""
        with self._lock:
            master = self._master
            if master is None:
                return
            with contextlib.suppress(BlockingIOError, OSError):
                while os.read(master, 4096):
                    pass

    def fileno(self) -> int | None:
        return self._master
