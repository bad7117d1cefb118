"""A Python `ssl` (OpenSSL) TLS 1.2 server that misbehaves on purpose, one connection per instance.

Modes, each producing one failure class in the Mbed TLS client's log:

- complete: a normal mutual-TLS handshake, then a few bytes of application data.
- hold: the handshake runs over a MemoryBIO; once the client's Finished has arrived the server's
  ChangeCipherSpec and Finished are withheld and the connection is held open — the incident's
  signature (client waits in state 12).
- silent: reads the ClientHello and never answers (client waits in state 2).
- close: reads the ClientHello and closes the connection (EOF under the handshake).
- no_shared_cipher: offers only suites the client did not propose (handshake_failure alert).
- untrusted: presents a certificate from a CA the client does not trust.

The server runs in a thread of the test process; `stop()` joins it and re-raises whatever killed it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time

from tests.mbedtls.peers.certs import Pki

MODES = ("complete", "hold", "silent", "close", "no_shared_cipher", "untrusted")


class TlsServer:
    """Listens on 127.0.0.1 (free port), serves one connection in `mode`, then stops."""

    def __init__(self, pki: Pki, mode: str, hold_s: float = 5.0, tickets: bool | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown server mode {mode!r}; one of {', '.join(MODES)}")
        self.pki = pki
        self.mode = mode
        self.hold_s = hold_s
        # Like the incident's endpoint, `hold` sends no session ticket: the client then waits in state 12.
        self.tickets = tickets if tickets is not None else mode != "hold"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10.0)
        self.port: int = self.listener.getsockname()[1]
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tlsserver-{mode}", daemon=True)
        self._thread.start()

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        if self.mode == "untrusted":
            context.load_cert_chain(self.pki.rogue_cert, self.pki.rogue_key)
        else:
            context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(self.pki.device_ca)
        if not self.tickets:
            context.options |= ssl.OP_NO_TICKET
        if self.mode == "no_shared_cipher":
            context.set_ciphers("ECDHE-RSA-CHACHA20-POLY1305")
        else:
            context.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256")
        return context

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError as exc:  # includes the accept timeout
            if not self._stop.is_set():
                self.error = exc
            return
        try:
            with conn:
                conn.settimeout(10.0)
                self._serve(conn)
        except (OSError, ssl.SSLError) as exc:
            # Expected for the failure modes: the client gives up or rejects us.
            if self.mode in ("complete", "hold"):
                self.error = exc
        except BaseException as exc:
            self.error = exc

    def _serve(self, conn: socket.socket) -> None:
        if self.mode in ("silent", "close"):
            conn.recv(4096)
            if self.mode == "silent":
                self._hold(conn)
            return
        if self.mode == "hold":
            self._serve_withholding_finished(conn)
            return
        with self._context().wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"hello from the server\n")
            with contextlib.suppress(OSError):
                tls.unwrap()

    def _serve_withholding_finished(self, conn: socket.socket) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._context().wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = outgoing.read()
                if pending:
                    conn.sendall(pending)
                data = conn.recv(16384)
                if not data:
                    raise ConnectionError("client closed before its Finished arrived") from None
                incoming.write(data)
        outgoing.read()  # the server's ChangeCipherSpec and Finished: withheld
        self._hold(conn)

    def _hold(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + self.hold_s
        conn.settimeout(0.05)
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                if conn.recv(4096) == b"":
                    return  # the client gave up and closed
            except TimeoutError:
                continue

    def stop(self) -> None:
        """Stop serving, close the port, and re-raise an unexpected error of the server thread."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes a thread still waiting in accept()
        self.listener.close()
        self._thread.join(timeout=15.0)
        if self._thread.is_alive():
            raise RuntimeError(f"TLS server thread ({self.mode}) did not stop within 15 s")
        if self.error is not None:
            raise RuntimeError(f"TLS server ({self.mode}) failed: {self.error!r}") from self.error
