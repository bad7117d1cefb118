"""The bench router of the simulated bench: LAN side for the hub, uplinks to the cloud, control socket.

    python -m rig.sim.router --dir DIR --bench BENCH_FILE --lan-port P --cloud-port C

prints `router listening on 127.0.0.1:P` when ready. The hub's link (rig.sim.lan) ends here; each TCP
connection the hub opens is routed over the *active* uplink, chosen when the connection opens: like
mwan3, a switch moves new connections only. The endpoint name of the bench file (`cloud.endpoint`)
resolves to the AWS IoT Core stand-in on 127.0.0.1:C; anything else is refused as an unknown host.

An uplink is its bench-file profile (rig.sim.uplinks): delays and rates in userspace, and the way its
last hop sends to the hub (rig.sim.pep). A `split_tcp` path answers the hub's SYN at once (the
terminal spoofs the handshake) and opens the space leg behind it; a plain path answers after one RTT.

State in DIR: `active_uplink` (survives a restart), `uplinks_down` (paths whose uplink is cut, one per
line: the `uplink-down` fault), `router.sock` (control, one JSON line per request: `{"cmd": "status"}`,
`{"cmd": "select", "path": NAME}`, `{"cmd": "probe", "path": NAME}` (does that uplink reach the cloud
endpoint?), `{"cmd": "uplink", "path": NAME, "up": BOOL}`, `{"cmd": "capture"}` which then streams pcap
bytes), `router.log`. `rig.sim.simrouter` is the command-line side of that socket.

The capture holds the ACKs the router's side sends for the hub's bytes, as tcpdump on a real router's
LAN port shows them: a `split_tcp` path's terminal acknowledges each segment as it takes it (the PEP
is the hub's TCP peer on this side of the dish); on a plain path the acknowledgement is the cloud's
own, on the LAN one way after the bytes reached the cloud's TCP. Every router-side segment's ACK
number is the hub's bytes acknowledged so far that way, never more than the router received.

A cut uplink behaves like a dead satellite dish or a failed DSL line behind the router: nothing crosses
it. A `split_tcp` path's terminal still answers the hub's SYN and takes its bytes (the PEP is on this
side of the dish), then nothing ever comes back; a plain path's connection attempts time out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import struct
import sys
from pathlib import Path
from typing import Any

from rig.config import BenchConfig, load_bench
from rig.errors import RigError
from rig.sim import lan, pcap
from rig.sim.pep import SegmentSender
from rig.sim.uplinks import DelayLine, Uplink, uplinks_of

log = logging.getLogger(__name__)

QUIET_S = 0.002  # a short segment waits this long for more data (like autocork)
CLOUD_CONNECT_TIMEOUT_S = 10.0
STATE_FILE = "active_uplink"
DOWN_FILE = "uplinks_down"
SOCKET_FILE = "router.sock"
PROBE_TIMEOUT_S = 5.0  # how long a probe waits for the cloud endpoint to answer over an uplink


class Flow:
    """One TCP connection of the hub, carried over the uplink that was active when it opened."""

    def __init__(self, router: Router, session: LanSession, request: lan.Open, uplink: Uplink) -> None:
        self.router = router
        self.session = session
        self.request = request
        self.uplink = uplink
        self.conn = request.conn
        self.irs = (0x5EED0000 + request.conn * 0x1000) & 0xFFFFFFFF
        link = uplink.link
        self.sender = SegmentSender(self.irs, link.mss, link.segmentation, request.window)
        self.hub_next = (request.iss + 1) & 0xFFFFFFFF
        self.hub_acked = self.hub_next  # the hub's bytes the router's side has acknowledged on the LAN
        self.hub_to_cloud = 0  # the hub's bytes written to the cloud's TCP (a plain path acknowledges those)
        self.hub_window = request.window
        seed = request.conn * 7919 + uplink.index
        jitter = link.jitter_ms / 1000.0
        self.down = DelayLine(uplink.one_way_s, jitter, link.down_kbit_s, self._from_cloud, seed)
        self.up = DelayLine(uplink.one_way_s, jitter, link.up_kbit_s, self._to_cloud, seed + 1)
        self._writer: asyncio.StreamWriter | None = None
        self._early: list[bytes] = []
        self._eof_sent = False
        self._reader_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_data = 0.0
        self.cloud_eof = False
        self.fin_sent = False
        self.closed = False
        self.bytes_down = 0
        self.bytes_up = 0

    # ---------------------------------------------------------------- opening
    async def start(self) -> None:
        target = self.router.resolve(self.request.host, self.request.port)
        if target is None:
            self._refuse(
                f"{self.request.host}:{self.request.port}: unknown host (no route from the bench router)"
            )
            return
        rtt = self.uplink.link.rtt_ms / 1000.0
        if self.uplink.link.split_tcp:
            self._opened()
        if self.uplink.name in self.router.down:
            # Nothing crosses a cut uplink: the PEP holds the hub's bytes, a plain path's SYN goes unanswered.
            log.info("conn %d: uplink %s is down", self.conn, self.uplink.name)
            if not self.uplink.link.split_tcp:
                await asyncio.sleep(CLOUD_CONNECT_TIMEOUT_S)
                self._refuse(f"connection to {self.request.host}:{self.request.port} timed out (uplink down)")
            return
        try:
            await asyncio.sleep(rtt)  # SYN and SYN-ACK over the uplink
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), CLOUD_CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            log.info("conn %d: %s:%d refused: %s", self.conn, *target, exc)
            self._refuse(
                f"connection to {self.request.host}:{self.request.port} refused ({exc.__class__.__name__})"
            )
            return
        if self.closed:
            writer.close()
            return
        self._writer = writer
        for chunk in self._early:
            self._to_cloud(chunk)
        self._early.clear()
        if not self.uplink.link.split_tcp:
            self._opened()
        self._reader_task = asyncio.create_task(self._read_cloud(reader))

    def _opened(self) -> None:
        self.session.send(lan.opened(self.conn, self.irs))
        self.router.capture(
            from_hub=False, flow=self, seq=self.irs, ack=self.hub_next, flags=pcap.SYN | pcap.ACK_FLAG,
            window=65535, mss=self.uplink.link.mss,
        )  # fmt: skip
        self.router.capture(
            from_hub=True,
            flow=self,
            seq=self.hub_next,
            ack=self.irs + 1,
            flags=pcap.ACK_FLAG,
            window=self.hub_window,
        )

    def _refuse(self, reason: str) -> None:
        self.router.capture(
            from_hub=False, flow=self, seq=0, ack=self.hub_next, flags=pcap.RST_FLAG | pcap.ACK_FLAG, window=0
        )
        self.session.send(lan.reset(self.conn, reason))
        self.close()

    async def _read_cloud(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionError as exc:  # a reset by the cloud ends the stream like a close
                log.info("conn %d: the cloud side reset the connection: %s", self.conn, exc)
                data = b""
            self.down.send(data)  # b"" carries the end of the stream, in order
            if not data:
                return

    # ---------------------------------------------------------------- cloud -> hub
    def _from_cloud(self, data: bytes) -> None:
        if not data:
            self.cloud_eof = True
        else:
            self.sender.push(data)
            self._last_data = asyncio.get_running_loop().time()
        self.pump()

    def pump(self) -> None:
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._last_data >= QUIET_S
        segment = self.sender.next_segment(flush=quiet or self.cloud_eof)
        if segment is not None:
            self.session.send(lan.segment(self.conn, segment.seq, segment.payload))
            self.bytes_down += len(segment.payload)
            self.router.capture(
                from_hub=False, flow=self, seq=segment.seq, ack=self.hub_acked,
                flags=pcap.ACK_FLAG | pcap.PSH, window=65535, payload=segment.payload,
            )  # fmt: skip
            return
        if not self.sender.in_flight and self.sender.buffered and self._timer is None and not quiet:
            self._timer = loop.call_at(self._last_data + QUIET_S, self._flush)
        if self.cloud_eof and not self.sender.buffered and not self.sender.in_flight and not self.fin_sent:
            self.fin_sent = True
            self.session.send(lan.fin(self.conn))
            seq = self.sender.base_seq + self.sender.acked
            self.router.capture(
                from_hub=False,
                flow=self,
                seq=seq,
                ack=self.hub_acked,
                flags=pcap.FIN_FLAG | pcap.ACK_FLAG,
                window=65535,
            )

    def _flush(self) -> None:
        self._timer = None
        self.pump()

    def on_ack(self, ack: lan.Ack) -> None:
        before = len(self.sender.truncations)
        self.sender.on_ack(ack.ack, ack.window, ack.answers_segment)
        self.hub_window = ack.window
        for offset, sent, taken in self.sender.truncations[before:]:
            log.info(
                "conn %d via %s: segment at stream offset %d of %d bytes truncated by the hub to %d",
                self.conn, self.uplink.name, offset, sent, taken,
            )  # fmt: skip
        self.router.capture(
            from_hub=True, flow=self, seq=self.hub_next, ack=ack.ack, flags=pcap.ACK_FLAG, window=ack.window
        )
        self.pump()

    # ---------------------------------------------------------------- hub -> cloud
    def on_data(self, data: lan.Data) -> None:
        self.router.capture(
            from_hub=True, flow=self, seq=data.seq, ack=self.sender.base_seq + self.sender.acked,
            flags=pcap.ACK_FLAG | pcap.PSH, window=self.hub_window, payload=data.payload,
        )  # fmt: skip
        self.hub_next = (data.seq + len(data.payload)) & 0xFFFFFFFF
        self.bytes_up += len(data.payload)
        if self.uplink.link.split_tcp:
            self._acknowledge(self.hub_next)  # the PEP took the segment: its ACK is on the LAN at once
        self.up.send(data.payload)

    def _acknowledge(self, ack: int) -> None:
        """The router's side's pure ACK of the hub's bytes up to `ack`, in the capture."""
        if self.closed:
            return
        self.hub_acked = ack
        self.router.capture(
            from_hub=False, flow=self, seq=self.sender.next_seq, ack=ack, flags=pcap.ACK_FLAG, window=65535
        )

    def on_fin(self) -> None:
        self.router.capture(
            from_hub=True, flow=self, seq=self.hub_next, ack=self.sender.base_seq + self.sender.acked,
            flags=pcap.FIN_FLAG | pcap.ACK_FLAG, window=self.hub_window,
        )  # fmt: skip
        self.up.send(b"")

    def _to_cloud(self, data: bytes) -> None:
        if self._writer is None:
            self._early.append(data)
            return
        if self._writer.is_closing() or self._eof_sent:
            return
        if not data:
            self._eof_sent = True
            if self._writer.can_write_eof():
                self._writer.write_eof()
            return
        self._writer.write(data)
        if not self.uplink.link.split_tcp:
            # The cloud's TCP took the bytes (loopback: at once); its ACK crosses the uplink back.
            self.hub_to_cloud += len(data)
            ack = (self.request.iss + 1 + self.hub_to_cloud) & 0xFFFFFFFF
            asyncio.get_running_loop().call_later(self.uplink.one_way_s, self._acknowledge, ack)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.down.closed = self.up.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()
        self.session.flows.pop(self.conn, None)

    def status(self) -> dict[str, Any]:
        return {
            "conn": self.conn,
            "uplink": self.uplink.name,
            "endpoint": f"{self.request.host}:{self.request.port}",
            "bytes_down": self.bytes_down,
            "bytes_up": self.bytes_up,
            "truncated_segments": len(self.sender.truncations),
        }


class LanSession:
    """The hub's link to the router (one per hub boot)."""

    def __init__(self, router: Router, writer: asyncio.StreamWriter) -> None:
        self.router = router
        self.writer = writer
        self.flows: dict[int, Flow] = {}

    def send(self, frame: lan.Frame) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame.encode())

    async def run(self, reader: asyncio.StreamReader) -> None:
        frames = lan.FrameReader()
        try:
            while data := await reader.read(65536):
                for frame in frames.feed(data):
                    self.dispatch(frame)
        except ConnectionError as exc:
            log.info("LAN link lost: %s", exc)
        except struct.error as exc:  # a frame too short for its type: the hub and router disagree
            self.router.errors.append(f"malformed LAN frame from the hub ({exc}); link closed")
            log.error("malformed LAN frame: %s", exc)
        finally:
            for flow in list(self.flows.values()):
                flow.close()
            self.writer.close()

    def dispatch(self, frame: lan.Frame) -> None:
        if frame.kind == lan.OPEN:
            request = lan.parse_open(frame)
            old = self.flows.pop(request.conn, None)
            if old is not None:
                old.close()
            uplink = self.router.uplinks[self.router.active]
            flow = Flow(self.router, self, request, uplink)
            self.flows[request.conn] = flow
            log.info(
                "conn %d: %s:%d via %s (%s)",
                request.conn,
                request.host,
                request.port,
                uplink.name,
                uplink.describe(),
            )
            self.router.capture(
                from_hub=True,
                flow=flow,
                seq=request.iss,
                ack=0,
                flags=pcap.SYN,
                window=request.window,
                mss=request.mss,
            )
            self.router.spawn(flow.start())
            return
        known = self.flows.get(frame.conn)
        if known is None:
            return
        if frame.kind == lan.ACK:
            known.on_ack(lan.parse_ack(frame))
        elif frame.kind == lan.DATA:
            known.on_data(lan.parse_data(frame))
        elif frame.kind == lan.FIN:
            known.on_fin()


class Router:
    """The router process: LAN server, uplinks, persisted active uplink, control socket, capture."""

    def __init__(self, folder: Path, bench: BenchConfig, lan_port: int, cloud_port: int) -> None:
        self.folder = folder
        self.bench = bench
        self.lan_port = lan_port
        self.cloud_port = cloud_port
        self.uplinks = uplinks_of(bench)
        self.active = self._load_active()
        self.down: set[str] = self._load_down()
        self.sessions: set[LanSession] = set()
        self._captures: set[asyncio.Queue[bytes | None]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ip_id = 0
        self.errors: list[str] = []  # shown by `simrouter status`: a failure is never only in the log

    # ---------------------------------------------------------------- state
    def _load_active(self) -> str:
        state = self.folder / STATE_FILE
        if state.is_file():
            name = state.read_text(encoding="utf-8").strip()
            if name in self.uplinks:
                return name
            log.warning("%s names %r, not a path of the bench; using the baseline", state, name)
        return self.bench.baseline

    def _load_down(self) -> set[str]:
        state = self.folder / DOWN_FILE
        names = state.read_text(encoding="utf-8").split() if state.is_file() else []
        return {name for name in names if name in self.uplinks}

    def set_uplink(self, name: str, up: bool) -> None:
        """Cut (`up=False`) or restore an uplink; kept in DOWN_FILE across restarts."""
        if name not in self.uplinks:
            raise KeyError(name)
        if up:
            self.down.discard(name)
        else:
            self.down.add(name)
        tmp = self.folder / (DOWN_FILE + ".tmp")
        tmp.write_text("".join(f"{n}\n" for n in sorted(self.down)), encoding="utf-8")
        os.replace(tmp, self.folder / DOWN_FILE)
        log.info("uplink %s %s", name, "restored" if up else "cut")

    async def probe(self, name: str) -> dict[str, Any]:
        """Whether uplink `name` reaches the cloud endpoint: a TCP connection over it, closed at once."""
        if name not in self.uplinks:
            raise KeyError(name)
        uplink = self.uplinks[name]
        endpoint = f"{self.bench.cloud.endpoint}:{self.bench.cloud.port}"
        started = asyncio.get_running_loop().time()
        if name in self.down:
            await asyncio.sleep(PROBE_TIMEOUT_S)
            return {
                "ok": False,
                "path": name,
                "endpoint": endpoint,
                "error": f"no answer within {PROBE_TIMEOUT_S:g} s",
            }
        await asyncio.sleep(uplink.link.rtt_ms / 1000.0)  # SYN and SYN-ACK over the uplink
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.cloud_port), PROBE_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            return {
                "ok": False,
                "path": name,
                "endpoint": endpoint,
                "error": f"{exc.__class__.__name__}: {exc}",
            }
        writer.close()
        ms = (asyncio.get_running_loop().time() - started) * 1000.0
        return {"ok": True, "path": name, "endpoint": endpoint, "ms": round(ms, 1)}

    def select(self, name: str) -> None:
        if name not in self.uplinks:
            raise KeyError(name)
        self.active = name
        tmp = self.folder / (STATE_FILE + ".tmp")
        tmp.write_text(name + "\n", encoding="utf-8")
        os.replace(tmp, self.folder / STATE_FILE)
        log.info("active uplink: %s (new connections)", name)

    def resolve(self, host: str, port: int) -> tuple[str, int] | None:
        if host == self.bench.cloud.endpoint and port == self.bench.cloud.port:
            return ("127.0.0.1", self.cloud_port)
        return None

    def status(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "paths": {
                name: {"gateway": u.gateway, "profile": u.describe()} for name, u in self.uplinks.items()
            },
            "flows": [flow.status() for s in self.sessions for flow in s.flows.values()],
            "down": sorted(self.down),
            "errors": self.errors[-5:],
        }

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            self.errors.append(f"{exc.__class__.__name__}: {exc}")
            log.error("router task failed", exc_info=exc)

    # ---------------------------------------------------------------- capture
    def capture(
        self, *, from_hub: bool, flow: Flow, seq: int, ack: int, flags: int, window: int,
        payload: bytes = b"", mss: int | None = None,
    ) -> None:  # fmt: skip
        if not self._captures:
            return
        self._ip_id += 1
        packet = pcap.tcp_packet(
            from_hub=from_hub, hub_port=49152 + flow.conn, cloud_port=flow.request.port, seq=seq, ack=ack,
            flags=flags, window=window, payload=payload, mss=mss, ip_id=self._ip_id,
        )  # fmt: skip
        data = pcap.record(packet)
        for queue in list(self._captures):
            if queue.qsize() > 10000:
                self._captures.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(data)

    # ---------------------------------------------------------------- servers
    async def _on_lan(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = LanSession(self, writer)
        self.sessions.add(session)
        log.info("hub link up")
        try:
            await session.run(reader)
        finally:
            self.sessions.discard(session)
            log.info("hub link down")

    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            request = json.loads(line or b"{}")
            command = request.get("cmd")
            if command == "status":
                await self._reply(writer, {"ok": True, **self.status()})
            elif command == "select":
                name = str(request.get("path"))
                try:
                    self.select(name)
                except KeyError:
                    await self._reply(
                        writer, {"ok": False, "error": f"unknown path {name!r}", "paths": list(self.uplinks)}
                    )
                else:
                    await self._reply(writer, {"ok": True, **self.status()})
            elif command in ("probe", "uplink"):
                name = str(request.get("path"))
                try:
                    if command == "probe":
                        answer = await self.probe(name)
                    else:
                        self.set_uplink(name, bool(request.get("up")))
                        answer = {"ok": True, **self.status()}
                except KeyError:
                    answer = {"ok": False, "error": f"unknown path {name!r}", "paths": list(self.uplinks)}
                await self._reply(writer, answer)
            elif command == "capture":
                await self._stream_capture(writer)
            else:
                await self._reply(writer, {"ok": False, "error": f"unknown command {command!r}"})
        except (TimeoutError, json.JSONDecodeError, ConnectionError) as exc:
            log.info("control request failed: %s", exc)
        finally:
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()

    async def _stream_capture(self, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._captures.add(queue)
        try:
            await self._reply(writer, {"ok": True})
            writer.write(pcap.file_header())
            await writer.drain()
            while (data := await queue.get()) is not None:
                writer.write(data)
                await writer.drain()
        finally:
            self._captures.discard(queue)

    async def run(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        sock_path = self.folder / SOCKET_FILE
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        lan_server = await asyncio.start_server(self._on_lan, "127.0.0.1", self.lan_port)
        control = await asyncio.start_unix_server(self._on_control, str(sock_path))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"router listening on 127.0.0.1:{self.lan_port}", flush=True)
        log.info("router up: LAN 127.0.0.1:%d, cloud %s -> 127.0.0.1:%d, active %s",
                 self.lan_port, self.bench.cloud.endpoint, self.cloud_port, self.active)  # fmt: skip
        await stop.wait()
        lan_server.close()
        control.close()
        for session in list(self.sessions):
            session.writer.close()
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        log.info("router stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rig.sim.router", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="the router's folder (state, socket, log)")
    parser.add_argument("--bench", type=Path, required=True, help="bench file with the paths' link profiles")
    parser.add_argument("--lan-port", type=int, required=True, help="port of the hub's LAN link")
    parser.add_argument("--cloud-port", type=int, required=True, help="port of the AWS IoT Core stand-in")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=str(args.dir / "router.log"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        bench = load_bench(args.bench).model
    except RigError as exc:
        for line in exc.lines():
            print(f"router: {line}", file=sys.stderr)
        return exc.exit_code
    try:
        asyncio.run(Router(args.dir, bench, args.lan_port, args.cloud_port).run())
    except OSError as exc:
        print(f"router: cannot listen on 127.0.0.1:{args.lan_port} or in {args.dir}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
