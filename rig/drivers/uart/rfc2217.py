"""RFC 2217 (ser2net) for the UART capture: pyserial's client with a reader that moves chunks, not bytes.

pyserial's `rfc2217://` client hands received data over one byte at a time: its socket thread puts
every byte into a queue and `read()` takes them out one by one. On this kind of machine that tops out
near 2 Mbit/s at most of a core (see `make bench-uart`), short of a flooding DUT. `ChunkedRfc2217Serial`
keeps pyserial's option handling (the telnet commands are passed to the same methods) and replaces the
receive path: runs of data between telnet commands go into the queue as one item, and `read_chunk()`
returns what is there.

It replaces the opening too, so that a reconnect after a USB re-enumeration costs milliseconds, not
seconds. pyserial's `open()` polls every 50 ms for each answer, sleeps 0.1 s after each SET_CONTROL
whose answer it ignores (`ign_set_control`: three per open), purges the server's buffers (throwing
away what ser2net has already read from the device), and when ser2net hangs up because the device is
absent it either fails on a broken pipe or waits out its 3 s network timeout; its `close()` sleeps
0.3 s. Measured against ser2net 4.3.11 on a pty: pyserial opens in 0.50 s and closes in 0.30 s, and
an absent device costs it 0.3 s or 3.3 s per try; on the simulated bench a 0.5 s re-enumeration was
back 10.7 s after the loss. Here an open takes about 2 ms, fails within a few milliseconds when the
server hangs up (saying what it said, e.g. ser2net's `Device open failure: Value or file not found`),
waits at most STEP_TIMEOUT_S for any one answer, and leaves the device's bytes alone.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import serial
from serial import rfc2217
from serial.serialutil import Timeout

IAC, SB, SE = rfc2217.IAC, rfc2217.SB, rfc2217.SE
NEGOTIATION = (rfc2217.DO, rfc2217.DONT, rfc2217.WILL, rfc2217.WONT)
RECV_SIZE = 1 << 16
# Each network step of an open: the TCP connect, then every answer of the server (ser2net on a bench PC
# answers within milliseconds). `?timeout=S` in the URL changes it, as it does pyserial's 3 s.
STEP_TIMEOUT_S = 1.0
GREETING_WAIT_S = 0.05  # how long an open listens for the server's first words before it speaks
SAID_BYTES = 200  # how much of what a server said before hanging up is quoted in the error
QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class ChunkedRfc2217Serial(rfc2217.Serial):
    """An `rfc2217://host:port[?options]` port whose received data travels in chunks."""

    _leftover = b""
    _said = b""  # data the server sent before the negotiation completed (kept for the error message)
    _hung_up = False  # the socket thread saw the connection end
    _heard = False  # the server has sent something (options or data)
    _batch: bytearray | None = None  # requests collected to be sent as one segment (see _batched)
    _changed: threading.Condition  # the socket thread notifies it after each block it processed
    _mandatory: list[rfc2217.TelnetOption]  # the options an open cannot do without
    # Set by pyserial's Serial (its type stubs leave the private parts out).
    _read_buffer: queue.Queue[bytes | None]
    _socket: socket.socket | None
    _thread: threading.Thread | None
    _timeout: float | None
    _network_timeout: float
    _ignore_set_control_answer: bool
    _poll_modem_state: bool
    _telnet_options: list[rfc2217.TelnetOption]
    _rfc2217_port_settings: dict[str, rfc2217.TelnetSubnegotiation]
    _rfc2217_options: dict[str, rfc2217.TelnetSubnegotiation]
    _write_lock: threading.Lock
    _telnet_negotiate_option: Callable[[bytes, bytes], None]
    _update_dtr_state: Callable[[], None]
    _update_rts_state: Callable[[], None]
    _telnet_process_subnegotiation: Callable[[bytes], None]
    _telnet_process_command: Callable[[bytes], None]

    # ------------------------------------------------------------------------------------ open, close

    def open(self) -> None:
        """Connect and negotiate BINARY, COM-PORT and the port settings, each answer bounded."""
        url = self.port
        if url is None:
            raise serial.SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise serial.SerialException("Port is already open.")
        self.logger = None
        self._ignore_set_control_answer = False
        self._poll_modem_state = False
        self._network_timeout = STEP_TIMEOUT_S
        address = self.from_url(url)  # also applies ?ign_set_control, ?timeout=…
        try:
            sock = socket.create_connection(address, timeout=self._network_timeout)
        except OSError as exc:
            raise serial.SerialException(f"could not connect to {self.portstr}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(0.5)  # the socket thread's recv wakes this often to see a close()
        self._socket = sock
        self._leftover = self._said = b""
        self._hung_up = self._heard = False
        self._changed = threading.Condition()
        self._read_buffer = queue.Queue()
        self._write_lock = threading.Lock()
        self._setup_options()
        self.is_open = True
        self._thread = threading.Thread(
            target=self._telnet_read_loop, name=f"rfc2217-{self.portstr}", daemon=True
        )
        self._thread.start()
        try:
            self._negotiate()
        except serial.SerialException:
            self.close()
            raise
        except OSError:  # a request could not be sent: the server hung up first
            self.close()  # also ends the socket thread, which has kept what the server said
            raise serial.SerialException(self._hung_up_message("the negotiation ended")) from None

    def _setup_options(self) -> None:
        """The telnet options and RFC 2217 settings pyserial's client tracks, all not yet agreed."""
        t = rfc2217
        mandatory = [
            t.TelnetOption(self, "we-BINARY", t.BINARY, t.WILL, t.WONT, t.DO, t.DONT, t.INACTIVE),
            t.TelnetOption(self, "we-RFC2217", t.COM_PORT_OPTION, t.WILL, t.WONT, t.DO, t.DONT, t.REQUESTED),
        ]
        self._mandatory = mandatory
        self._telnet_options = [
            t.TelnetOption(self, "ECHO", t.ECHO, t.DO, t.DONT, t.WILL, t.WONT, t.REQUESTED),
            t.TelnetOption(self, "we-SGA", t.SGA, t.WILL, t.WONT, t.DO, t.DONT, t.REQUESTED),
            t.TelnetOption(self, "they-SGA", t.SGA, t.DO, t.DONT, t.WILL, t.WONT, t.REQUESTED),
            t.TelnetOption(self, "they-BINARY", t.BINARY, t.DO, t.DONT, t.WILL, t.WONT, t.INACTIVE),
            t.TelnetOption(
                self, "they-RFC2217", t.COM_PORT_OPTION, t.DO, t.DONT, t.WILL, t.WONT, t.REQUESTED
            ),
            *mandatory,
        ]
        settings = {
            "baudrate": (t.SET_BAUDRATE, t.SERVER_SET_BAUDRATE),
            "datasize": (t.SET_DATASIZE, t.SERVER_SET_DATASIZE),
            "parity": (t.SET_PARITY, t.SERVER_SET_PARITY),
            "stopsize": (t.SET_STOPSIZE, t.SERVER_SET_STOPSIZE),
        }
        self._rfc2217_port_settings = {
            name: t.TelnetSubnegotiation(self, name, option, ack) for name, (option, ack) in settings.items()
        }
        self._rfc2217_options = {
            "purge": t.TelnetSubnegotiation(self, "purge", t.PURGE_DATA, t.SERVER_PURGE_DATA),
            "control": t.TelnetSubnegotiation(self, "control", t.SET_CONTROL, t.SERVER_SET_CONTROL),
            **self._rfc2217_port_settings,
        }
        self._linestate = 0
        self._modemstate = None
        self._modemstate_timeout = Timeout(-1)
        self._remote_suspend_flow = False

    def _negotiate(self) -> None:
        # ser2net speaks first (its own option offers, or why it refuses and hangs up). Requests sent
        # into a connection the server has already closed come back as a reset, which discards what
        # it said before we read it; so listen briefly first (a server that waits for us costs this).
        with self._changed:
            self._changed.wait_for(lambda: self._heard or self._hung_up, timeout=GREETING_WAIT_S)
        with self._batched():
            for option in self._telnet_options:
                if option.state is rfc2217.REQUESTED:
                    self.telnet_send_option(option.send_yes, option.option)
        self._wait_for(
            "the telnet options BINARY and COM-PORT",
            lambda: (
                sum(o.active for o in self._mandatory)
                == sum(o.state != rfc2217.INACTIVE for o in self._mandatory)
            ),
        )
        self._reconfigure_port()
        # Modem lines as pyserial sets them (a device without them is what `ign_set_control` is for).
        if not self.dsrdtr:
            self._update_dtr_state()
        if not self.rtscts:
            self._update_rts_state()

    def _reconfigure_port(self) -> None:
        """Send baud rate, data size, parity and stop bits together, then wait for all four answers."""
        if self._socket is None:
            raise serial.SerialException("Can only operate on open ports")
        if not 0 < self.baudrate < 2**32:
            raise ValueError(f"invalid baudrate: {self.baudrate!r}")
        settings = self._rfc2217_port_settings
        with self._batched():
            settings["baudrate"].set(struct.pack("!I", self.baudrate))
            settings["datasize"].set(struct.pack("!B", self.bytesize))
            settings["parity"].set(struct.pack("!B", rfc2217.RFC2217_PARITY_MAP[self.parity]))
            settings["stopsize"].set(struct.pack("!B", rfc2217.RFC2217_STOPBIT_MAP[self.stopbits]))
        self._wait_for("the port settings (baud rate, data size, parity, stop bits)", self._settings_agreed)
        if self.rtscts and self.xonxoff:
            raise ValueError("xonxoff and rtscts together are not supported")
        if self.rtscts:
            self.rfc2217_set_control(rfc2217.SET_CONTROL_USE_HW_FLOW_CONTROL)
        elif self.xonxoff:
            self.rfc2217_set_control(rfc2217.SET_CONTROL_USE_SW_FLOW_CONTROL)
        else:
            self.rfc2217_set_control(rfc2217.SET_CONTROL_USE_NO_FLOW_CONTROL)

    def _settings_agreed(self) -> bool:
        settings = self._rfc2217_port_settings.values()
        refused = [s.name for s in settings if s.state == rfc2217.REALLY_INACTIVE]
        if refused:
            raise serial.SerialException(f"{self.portstr}: the server refused the {', '.join(refused)}")
        return all(s.state == rfc2217.ACTIVE for s in settings)

    def rfc2217_set_control(self, value: bytes) -> None:
        """Send a SET_CONTROL; wait for its answer unless `ign_set_control` says none will come."""
        item = self._rfc2217_options["control"]
        item.set(value)
        if not self._ignore_set_control_answer:
            self._wait_for("SET_CONTROL", lambda: item.state == rfc2217.ACTIVE)

    def _wait_for(self, what: str, agreed: Callable[[], bool]) -> None:
        """Wait until `agreed()`; the server hanging up or staying silent is a SerialException."""
        deadline = time.monotonic() + self._network_timeout
        with self._changed:
            while not agreed():
                if self._hung_up:
                    raise serial.SerialException(self._hung_up_message(f"agreeing to {what}"))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise serial.SerialException(
                        f"{self.portstr}: no answer about {what} within {self._network_timeout:g} s "
                        "(is it an RFC 2217 server? `?timeout=S` in the URL gives it longer)"
                    )
                self._changed.wait(remaining)

    def _hung_up_message(self, during: str) -> str:
        said = self._said[:SAID_BYTES].decode("utf-8", "replace").strip()
        why = (
            f"; it said: {said!r}"
            if said
            else " (ser2net does so when it cannot open the device: is the device plugged in at the"
            " server, and not held by another program?)"
        )
        return f"{self.portstr}: the server closed the connection before {during}{why}"

    def close(self) -> None:
        """Close the connection and end the socket thread (without pyserial's 0.3 s pause)."""
        self.is_open = False
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(OSError):  # already disconnected
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    @contextlib.contextmanager
    def _batched(self) -> Iterator[None]:
        """Send the requests made inside as one segment.

        ser2net answers a segment's requests with one write; requests sent one by one are answered
        one by one, and with Nagle on ser2net's side the second answer waits for our (delayed, 40 ms)
        ACK of the first: measured, 45 ms per open instead of 2 ms.
        """
        self._batch = bytearray()
        try:
            yield
            batch = bytes(self._batch)
        finally:
            self._batch = None
        if batch:
            self._internal_raw_write(batch)

    def _internal_raw_write(self, data: bytes) -> None:
        if self._batch is not None:
            self._batch += data
            return
        sock = self._socket
        if sock is None:
            raise serial.PortNotOpenError()
        with self._write_lock:
            sock.sendall(data)

    # ------------------------------------------------------------------------------------ receiving

    def _telnet_read_loop(self) -> None:
        """The socket thread: split each received block into data runs and telnet commands."""
        buffer: queue.Queue[bytes | None] = self._read_buffer
        changed = self._changed
        iac_seen = False
        negotiation: bytes | None = None  # DO/DONT/WILL/WONT waiting for its option byte
        suboption: bytearray | None = None  # inside IAC SB … IAC SE
        sock = self._socket
        try:
            while self.is_open and sock is not None:
                try:
                    data = sock.recv(RECV_SIZE)
                except TimeoutError:
                    continue  # the socket has a timeout so that a closed port ends this loop
                except OSError:
                    data = b""
                if not data:
                    break  # the server went away (or close() shut the socket)
                if QUICKACK is not None:  # see _batched: ACK at once (Linux clears it after each ACK)
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
                out = bytearray()
                i, n = 0, len(data)
                try:
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
                except OSError:
                    break  # an answer to the server could not be sent: the connection is gone
                finally:
                    if out:
                        buffer.put(bytes(out))
                        if len(self._said) < SAID_BYTES:
                            self._said += bytes(out[:SAID_BYTES])
                    with changed:
                        self._heard = True
                        changed.notify_all()
        finally:
            buffer.put(None)
            with changed:
                self._hung_up = True
                changed.notify_all()

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
