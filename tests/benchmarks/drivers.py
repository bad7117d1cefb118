"""Benchmark: what the bench drivers cost on top of the work they wrap (figures, same run).

- programmer: `Ipecmd.program()` with the ipecmd stand-in (a real child process printing the real
  success transcript) against a bare `subprocess.run` of the same command line; the difference is
  the harness's overhead per flash (transcript, markers, events, progress).
- lease: open + close (take and give back) of a free lease; and the time from an owner's SIGKILL to the next owner
  holding the lease (a killed CI job leaves no stale lock: this is how long the next one waits).
- cloud events: from a lifecycle event published on a real mosquitto (mutual TLS) to
  `wait_connected()` returning it.

Run: `make bench-drivers` (or `.venv/bin/python tests/benchmarks/drivers.py`).
"""

from __future__ import annotations

import getpass
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from rig.config import ProgrammerConfig  # noqa: E402
from rig.drivers.cloud import CloudEvents  # noqa: E402
from rig.drivers.lease import BenchLease  # noqa: E402
from rig.drivers.programmers import make_programmer  # noqa: E402
from tests.drivers.test_cloud import MOSQUITTO, Broker, _issue  # noqa: E402
from tests.peers.drivers import free_port, stop_process, wait_listening  # noqa: E402

STAND_INS = ROOT / "tests" / "drivers" / "stand_ins"
SERIAL = "BUR191234567"
IMAGE = ":020000040000FA\n:10000000000102030405060708090A0B0C0D0E0F78\n:00000001FF\n"


def timed(action: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        out.append(time.perf_counter() - start)
    return out


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:8.2f} ms  (min {min(values) * 1000:.2f}, max {max(values) * 1000:.2f}, n={len(values)})"


def bench_programmer(work: Path) -> None:
    os.environ["RIG_STAND_IN_DIR"] = str(work)
    os.environ["RIG_STAND_IN_SERIAL"] = SERIAL
    image = work / "image.hex"
    image.write_text(IMAGE)
    config = ProgrammerConfig(kind="ipecmd", tool="ICD4", serial=SERIAL, executable=str(STAND_INS / "ipecmd"))
    driver = make_programmer(config, "32MZ2048EFM100")
    argv = [
        str(STAND_INS / "ipecmd"),
        "-TPICD4",
        f"-TS{SERIAL}",
        "-P32MZ2048EFM100",
        f"-F{image}",
        "-M",
        "-OL",
    ]
    # Alternated, so that load from other processes on the machine hits both the same way.
    bare: list[float] = []
    driven: list[float] = []
    for n in range(30):
        bare += timed(lambda: subprocess.run(argv, capture_output=True, check=True, timeout=30), 1)
        driven += timed(lambda: driver.program(image, out_dir=work / f"out-{n}"), 1)  # noqa: B023
    overhead = statistics.median(driven) - statistics.median(bare)
    print("programmer (ipecmd stand-in, success transcript)")
    print(f"  bare subprocess.run      {ms(bare)}")
    print(f"  Ipecmd.program()         {ms(driven)}")
    print(
        f"  harness overhead         {overhead * 1000:8.2f} ms per flash  (ratio {statistics.median(driven) / statistics.median(bare):.2f}x)"
    )


HOLDER = """
import sys, time
from pathlib import Path
from rig.drivers.lease import BenchLease
BenchLease(Path(sys.argv[1]), "bench", "nightly").open(timeout=5)
print("held", flush=True)
time.sleep(60)
"""


def bench_lease(work: Path) -> None:
    lease = BenchLease(work, "bench", "bench")

    def cycle() -> None:
        lease.open(timeout=1)
        lease.close()

    cycles = timed(cycle, 200)
    takeovers = []
    for _ in range(5):
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(work)], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        holder.kill()
        holder.wait(timeout=5)
        holder.stdout.close()
        nxt = BenchLease(work, "bench", "next")
        nxt.open(timeout=60)
        takeovers.append(time.perf_counter() - start)
        nxt.close()
    print("bench lease")
    print(f"  open + close             {ms(cycles)}")
    print(f"  SIGKILL → next owner     {ms(takeovers)}")


def bench_cloud(work: Path) -> None:
    root = _issue(work, "root", "rig bench root", None, ca=True)
    for stem, name in (("server", "127.0.0.1"), ("observer", "rig-observer-test"), ("service", "aws-iot")):
        _issue(work, stem, name, root)
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\ncafile {work / 'root.pem'}\ncertfile {work / 'server.pem'}\n"
        f"keyfile {work / 'server.key'}\nrequire_certificate true\nallow_anonymous true\n"
        f"persistence false\nuser {getpass.getuser()}\n"
    )
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(port, 10, process)
        broker = Broker(port, work)  # the test suite's broker description: where and with which files
        cloud = CloudEvents(broker.cloud())
        start = time.perf_counter()
        cloud.open(timeout=10)
        started = time.perf_counter() - start
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="aws-iot-stand-in")
        publisher.tls_set(
            ca_certs=str(work / "root.pem"),
            certfile=str(work / "service.pem"),
            keyfile=str(work / "service.key"),
        )
        publisher.connect("127.0.0.1", port, keepalive=10)
        publisher.loop_start()
        latencies = []
        for n in range(50):
            since = time.time()
            begin = time.perf_counter()
            payload = json.dumps(
                {"clientId": f"hub-{n}", "eventType": "connected", "timestamp": int(since * 1000)}
            )
            publisher.publish(f"$aws/events/presence/connected/hub-{n}", payload, qos=1)
            assert cloud.wait_connected(f"hub-{n}", timeout=10, since=since) is not None
            latencies.append(time.perf_counter() - begin)
        publisher.disconnect()
        publisher.loop_stop()
        cloud.close()
    finally:
        stop_process(process)
    print("cloud events (mosquitto, mutual TLS)")
    print(f"  connect + subscribe      {started * 1000:8.2f} ms")
    print(f"  publish → seen by test   {ms(latencies)}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="rig-bench-drivers-") as tmp:
        base = Path(tmp)
        for name, run in (("programmer", bench_programmer), ("lease", bench_lease), ("cloud", bench_cloud)):
            folder = base / name
            folder.mkdir()
            run(folder)


if __name__ == "__main__":
    main()
