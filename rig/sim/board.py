"""The virtual hub's board: flash, reset line and debug UART around the hub binary.

One long-lived process per sim (`python -m rig.sim.board …`) plays the PCB the firmware runs on:

- **Flash.** `flash.bin` in the board's folder; the hub binary runs with `--flash flash.bin`, so what the
  hub does comes only from the image programmed into it.
- **Reset line.** Held in reset the hub process does not exist; released, the board starts it with the
  current flash. A blank board (no flash yet) stays silent.
- **UART.** The board owns a pty master and a stable symlink to its slave (like `/dev/serial/by-id/…`),
  raw from the start (a fresh pty is cooked: it would echo and translate CR). The hub's stdout is its TX
  pin: the board takes bytes from it at the configured baud rate (10 bits per byte, 8N1) through a small
  pipe, so a chatty debug level slows the firmware as a blocking UART driver does on the PIC32. Bytes the
  receiving side has no room for are dropped, never queued: a real UART overruns (observed: a pty master
  takes ~18 KB with nobody reading, then a blocking writer would stall the device).
- **USB re-enumeration.** With `--reenumerate` a reset removes the port and brings a new pty back
  `--gap` seconds later (a USB CDC console does this; the pts number may change, the symlink does not);
  the firmware boots `--boot-delay` seconds after that, like a device that enumerates before it prints.
- **Control socket** (`board.sock`, one JSON request per connection, one JSON answer): `status`,
  `hold` (assert reset), `release` (deassert: boot), `reset` (pulse), `write_flash` (`file`, `source`:
  the programmer's image bytes, taken while held), `erase`, `reboot_after` (`seconds`: the next boot resets
  itself that long after it started, reset cause WDTO; 0 disarms), `uart_gone` (`seconds`: the port disappears and
  returns; the `uart-gone` fault).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rig.errors import InfrastructureError
from rig.sim.uartport import BITS_PER_BYTE, Uart

log = logging.getLogger("rig.sim.board")

PIPE_BYTES = 4096  # the firmware's UART TX ring: when it is full, the firmware's printf waits
_F_SETPIPE_SZ = 1031
CONTROL_TIMEOUT_S = 10.0


class Board:
    """The board's state machine: flash, reset line, the hub process and its UART pump."""

    def __init__(
        self,
        folder: Path,
        hub: Path,
        lan: str,
        uart: Uart,
        *,
        reenumerate: bool = False,
        gap_s: float = 0.5,
        boot_delay_s: float = 1.0,
    ) -> None:
        self.folder = folder
        self.hub = hub
        self.lan = lan
        self.uart = uart
        self.reenumerate = reenumerate
        self.gap_s = gap_s
        self.boot_delay_s = boot_delay_s
        self.flash = folder / "flash.bin"
        self.flash_meta = folder / "flash.json"
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self.held = False
        self.boots = 0
        self.last_exit: int | None = None
        self.errors: list[str] = []
        # What the boot ROM reports as the cause of the next boot (PIC32 RCON): power-on first, then the
        # reset line (MCLR) the programmer pulses; the `dut-reboot` fault's reboot is a watchdog (WDTO).
        self.next_cause = "POR"
        self.reboot_after_s: float | None = None  # the `dut-reboot` fault, armed for the next boot

    # ------------------------------------------------------------------ reset line and firmware

    def _start_hub(self) -> None:
        if not self.flash.is_file():
            log.info("blank board: no flash, nothing boots")
            return
        argv = [
            str(self.hub),
            "--flash",
            str(self.flash),
            "--lan",
            self.lan,
            "--reset-cause",
            self.next_cause,
        ]
        self.next_cause = "MCLR"
        stderr = (self.folder / "hub.stderr").open("ab")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        except OSError as exc:
            self.errors.append(f"cannot start the hub binary {self.hub}: {exc}")
            log.error(self.errors[-1])
            return
        finally:
            stderr.close()
        assert proc.stdout is not None
        with contextlib.suppress(OSError):
            fcntl.fcntl(proc.stdout.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
        self._proc = proc
        self.boots += 1
        self._pump = self.guarded("uart-pump", self._pump_bytes, proc)
        log.info("hub booted (pid %d, boot %d)", proc.pid, self.boots)
        if self.reboot_after_s is not None:
            seconds, self.reboot_after_s = self.reboot_after_s, None
            self.guarded("fault-reboot", self._reboot_later, proc, seconds)

    def _reboot_later(self, proc: subprocess.Popen[bytes], seconds: float) -> None:
        """The `dut-reboot` fault: `seconds` after its boot, the hub resets by itself (a watchdog reset)."""
        time.sleep(seconds)
        with self._lock:
            if self._proc is not proc or self.held:
                return  # reset or reprogrammed meanwhile: that boot is gone already
            log.info("fault: the hub resets itself %.1f s after its boot", seconds)
            self._stop_hub()
            self.next_cause = "WDTO"
            self._power_up()

    def _stop_hub(self) -> None:
        proc, pump = self._proc, self._pump
        self._proc = self._pump = None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()  # the reset line: the MCU stops at once, mid-instruction
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.errors.append(f"hub pid {proc.pid} did not die on SIGKILL within 5 s")
            log.error(self.errors[-1])
        if pump is not None:
            pump.join(timeout=5)
        self.last_exit = proc.returncode

    def hold(self) -> None:
        with self._lock:
            self.held = True
            self._stop_hub()
            if self.reenumerate and self.uart.present:
                self.uart.vanish()

    def release(self) -> None:
        with self._lock:
            if self._proc is not None and not self.held:
                return  # already running
            self.held = False
            self._power_up()

    def _power_up(self) -> None:
        """Boot the hub (a USB console first goes away and comes back, as it re-enumerates)."""
        if self.reenumerate:
            if self.uart.present:
                self.uart.vanish()
            time.sleep(self.gap_s)
            self.uart.appear()
            time.sleep(self.boot_delay_s)
        self._start_hub()

    def reset(self) -> None:
        self.hold()
        self.release()

    def write_flash(self, image: Path, source: str) -> dict[str, Any]:
        """Take the programmer's image bytes as the new flash content (the board is held meanwhile)."""
        with self._lock:
            if not self.held:
                self.hold()
            data = image.read_bytes()
            tmp = self.flash.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(self.flash)
            meta = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "source": source,
                "written": time.time(),
            }
            self.flash_meta.write_text(json.dumps(meta))
            return meta

    def erase(self) -> None:
        """Erase the flash: the board is held, and boots to nothing until programmed again."""
        with self._lock:
            if not self.held:
                self.hold()
            self.flash.unlink(missing_ok=True)
            self.flash_meta.unlink(missing_ok=True)

    def uart_gone(self, seconds: float) -> None:
        """The `uart-gone` fault: the port disappears for `seconds` while the firmware runs on."""
        self.uart.vanish()

        def back() -> None:
            time.sleep(seconds)
            with self._lock:
                if not self.uart.present:
                    self.uart.appear()

        self.guarded("uart-back", back)

    # ------------------------------------------------------------------ UART

    def guarded(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        """Start a daemon thread whose death is recorded in `status()["errors"]` and the board log."""

        def run() -> None:
            try:
                target(*args)
            except Exception as exc:  # recorded where the user looks, then re-raised
                self.errors.append(f"board thread {name} died: {exc!r}")
                log.exception("board thread %s died", name)
                raise

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    def _pump_bytes(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        byte_s = BITS_PER_BYTE / self.uart.baud
        chunk = max(16, int(0.01 / byte_s))  # about 10 ms of line time per step
        due = time.monotonic()
        while True:
            data = os.read(fd, chunk)
            if not data:
                break
            now = time.monotonic()
            due = max(due, now) + len(data) * byte_s
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.uart.transmit(data)
        proc.stdout.close()  # EOF: the hub stopped (reset) or closed its TX; status polls the exit

    def drain_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            master = self.uart.fileno()
            if master is None:
                stop.wait(0.05)
                continue
            try:
                ready, _, _ = select.select([master], [], [], 0.1)
            except (OSError, ValueError):
                continue  # the port was replaced under us
            if ready:
                self.uart.drain_host_input()

    # ------------------------------------------------------------------ status and control

    def status(self) -> dict[str, Any]:
        with self._lock:
            proc = self._proc
            running = proc is not None and proc.poll() is None
            if proc is not None and not running:
                self.last_exit = proc.returncode  # the firmware exited by itself (a crash)
            flash = json.loads(self.flash_meta.read_text()) if self.flash_meta.is_file() else None
            return {
                "state": "held" if self.held else ("running" if running else "stopped"),
                "hub_pid": proc.pid if running and proc is not None else None,
                "boots": self.boots,
                "reboot_after_s": self.reboot_after_s,
                "last_exit": self.last_exit,
                "flash": flash,
                "port": str(self.uart.link),
                "port_present": self.uart.present,
                "baud": self.uart.baud,
                "uart_written": self.uart.written,
                "uart_dropped": self.uart.dropped,
                "errors": list(self.errors),
            }

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            pass
        elif op == "hold":
            self.hold()
        elif op == "release":
            self.release()
        elif op == "reset":
            self.reset()
        elif op == "write_flash":
            self.write_flash(Path(str(request["file"])), str(request.get("source", "")))
        elif op == "erase":
            self.erase()
        elif op == "uart_gone":
            self.uart_gone(float(request["seconds"]))
        elif op == "reboot_after":
            seconds = float(request["seconds"])
            self.reboot_after_s = seconds if seconds > 0 else None
        else:
            return {"ok": False, "error": f"unknown board request {op!r}"}
        return {"ok": True, **self.status()}

    def shutdown(self) -> None:
        with self._lock:
            self._stop_hub()
            self.uart.vanish()


def serve(board: Board, sock_path: Path, stop: threading.Event) -> None:
    """Answer control requests on the board's unix socket until `stop` is set."""
    sock_path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(8)
    server.settimeout(0.2)
    try:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(CONTROL_TIMEOUT_S)
                try:
                    request = json.loads(_read_line(conn))
                    answer = board.handle(request)
                except (OSError, ValueError, KeyError) as exc:
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(answer).encode() + b"\n")
    finally:
        server.close()
        sock_path.unlink(missing_ok=True)


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        part = conn.recv(4096)
        if not part:
            break
        data += part
    return data


class BoardClient:
    """Talks to a running board through its control socket (the programmer and `rig sim` use this)."""

    def __init__(self, sock_path: Path, timeout: float = 30.0) -> None:
        self.sock_path = sock_path
        self.timeout = timeout

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        if len(os.fsencode(self.sock_path)) > 107:
            raise InfrastructureError(f"board socket path too long for a unix socket: {self.sock_path}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(self.timeout)
            try:
                conn.connect(str(self.sock_path))
                conn.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
                answer = json.loads(_read_line(conn) or b"{}")
            except (OSError, ValueError) as exc:
                raise InfrastructureError(
                    f"board control socket {self.sock_path}: {exc} — is the sim up (`rig sim status`)?"
                ) from None
        if not answer.get("ok"):
            raise InfrastructureError(f"board refused {op!r}: {answer.get('error', 'no answer')}")
        return dict(answer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rig.sim.board", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="the board's folder (flash, socket, log)")
    parser.add_argument("--hub", type=Path, required=True, help="the hub binary")
    parser.add_argument("--lan", required=True, help="the router's LAN side, 127.0.0.1:PORT")
    parser.add_argument("--port-link", type=Path, required=True, help="stable path of the UART port")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--reenumerate", action="store_true", help="a reset removes and re-creates the port")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds the port is gone on a reset")
    parser.add_argument("--boot-delay", type=float, default=1.0, help="port back → firmware boots (s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s board: %(message)s", stream=sys.stderr)
    args.dir.mkdir(parents=True, exist_ok=True)
    if shutil.which(str(args.hub)) is None:
        log.error("hub binary %s is missing or not executable", args.hub)
        return 2
    board = Board(
        args.dir,
        args.hub,
        args.lan,
        Uart(args.port_link, args.baud),
        reenumerate=args.reenumerate,
        gap_s=args.gap,
        boot_delay_s=args.boot_delay,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    board.uart.appear()
    board.release()  # power on: the firmware in flash boots
    board.guarded("uart-rx", board.drain_forever, stop)
    log.info("board up: port %s, baud %d, socket %s", args.port_link, args.baud, args.dir / "board.sock")
    try:
        serve(board, args.dir / "board.sock", stop)
    finally:
        board.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
