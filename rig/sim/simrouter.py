"""`simrouter`: the simulated bench router's command, run over SSH like `mwan3` or `ip` on a real one.

    python -m rig.sim.simrouter --dir DIR select NAME | route | capture | status

- `select NAME` makes NAME the uplink of new connections (established ones stay, as with mwan3);
  an unknown name is an error listing the paths (exit 2).
- `route` prints the routing table the way `ip route` does; the default route names the active
  uplink as its device: `default via 10.64.1.1 dev satellite proto static metric 10` (a bench's
  `verify.expect` is `default via \\S+ dev <name>`).
- `capture` streams a pcap of the LAN side to stdout like `tcpdump -U -w -`, until killed.
- `status` prints one line: the active uplink, its profile and the open connections.

It talks to the router process (rig.sim.router) over DIR/router.sock; when the router is not running
it says so and exits 3.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from rig.sim.router import SOCKET_FILE

TIMEOUT_S = 5.0


class RouterDown(Exception):
    pass


def _connect(folder: Path, timeout: float = TIMEOUT_S) -> socket.socket:
    path = folder / SOCKET_FILE
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise RouterDown(
            f"the bench router is not running (control socket {path}: {exc.strerror or exc})"
        ) from None
    return sock


def request(folder: Path, message: dict[str, Any], timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """One control request to the bench router living in `folder`; its JSON answer."""
    with _connect(folder, timeout) as sock:
        sock.sendall(json.dumps(message).encode() + b"\n")
        reader = sock.makefile("rb")
        line = reader.readline()
    if not line:
        raise RouterDown("the bench router closed the control connection without answering")
    answer: dict[str, Any] = json.loads(line)
    return answer


def route_text(status: dict[str, Any]) -> str:
    """`ip route`-like lines for the router's status."""
    active = status["active"]
    paths: dict[str, Any] = status["paths"]
    lines = [f"default via {paths[active]['gateway']} dev {active} proto static metric 10"]
    for name, info in paths.items():
        network = info["gateway"].rsplit(".", 1)[0]
        lines.append(f"{network}.0/24 dev {name} proto kernel scope link src {network}.2")
    lines.append("192.168.8.0/24 dev lan proto kernel scope link src 192.168.8.1")
    return "\n".join(lines)


def status_text(status: dict[str, Any]) -> str:
    active = status["active"]
    flows = status.get("flows", [])
    on = ", ".join(f"{f['conn']}:{f['uplink']}" for f in flows) or "none"
    text = f"{active} ({status['paths'][active]['profile']}); connections: {on}"
    if status.get("down"):
        text += f"; uplinks down: {', '.join(status['down'])}"
    errors = status.get("errors") or []
    if errors:
        text += f"; {len(errors)} error(s), last: {errors[-1]} (see router.log)"
    return text


def _capture(folder: Path) -> int:
    sock = _connect(folder)
    sock.sendall(b'{"cmd": "capture"}\n')
    reader = sock.makefile("rb")
    first = reader.readline()
    if not first or not json.loads(first).get("ok"):
        print("simrouter: the router refused the capture", file=sys.stderr)
        return 3
    sock.settimeout(None)  # streams until the router stops or this command is killed
    out = sys.stdout.buffer
    while chunk := reader.read1(65536):
        out.write(chunk)
        out.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simrouter", description="the simulated bench router's command")
    parser.add_argument("--dir", type=Path, required=True, help="the router's folder")
    sub = parser.add_subparsers(dest="command", required=True)
    select = sub.add_parser("select", help="make NAME the uplink of new connections")
    select.add_argument("name")
    sub.add_parser("route", help="the routing table, like `ip route`")
    sub.add_parser("capture", help="pcap of the LAN side to stdout, like `tcpdump -U -w -`")
    sub.add_parser("status", help="active uplink and connections, one line")
    probe = sub.add_parser("probe", help="does uplink NAME reach the cloud endpoint (exit 0) or not (exit 1)")
    probe.add_argument("name")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        if args.command == "capture":
            return _capture(args.dir)
        if args.command == "select":
            answer = request(args.dir, {"cmd": "select", "path": args.name})
            if not answer.get("ok"):
                known = ", ".join(answer.get("paths", []))
                print(f"simrouter: unknown path {args.name!r}; this router has: {known}", file=sys.stderr)
                return 2
            print(f"uplink {args.name} selected for new connections")
            return 0
        if args.command == "probe":
            answer = request(args.dir, {"cmd": "probe", "path": args.name}, timeout=3 * TIMEOUT_S)
            if "paths" in answer:
                known = ", ".join(answer["paths"])
                print(f"simrouter: unknown path {args.name!r}; this router has: {known}", file=sys.stderr)
                return 2
            if answer.get("ok"):
                print(f"{args.name} reaches {answer['endpoint']} in {answer['ms']:.0f} ms")
                return 0
            print(f"{args.name}: {answer['endpoint']} unreachable: {answer.get('error')}")
            return 1
        answer = request(args.dir, {"cmd": "status"})
        print(route_text(answer) if args.command == "route" else status_text(answer))
        return 0
    except RouterDown as exc:
        print(f"simrouter: {exc}", file=sys.stderr)
        return 3
    except (OSError, json.JSONDecodeError) as exc:
        print(f"simrouter: talking to the bench router in {args.dir} failed: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
