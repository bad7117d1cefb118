"""What the stand-in programmers share: which transcript to print, and a record of each call.

A test points `RIG_STAND_IN_DIR` at a folder holding `scenarios` (one scenario name per line). Each
call of a stand-in takes the first line (the last one stays for every later call), appends its argv
to `calls.jsonl`, and its pid to `pids`, then prints that scenario's transcript, taken from the real
tools' output (bench.md §1): the markers, the order and the exit codes the real tools give.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def folder() -> Path:
    return Path(os.environ["RIG_STAND_IN_DIR"])


def next_scenario(tool: str) -> str:
    """The scenario for this call; records the call first."""
    base = folder()
    with (base / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps({"tool": tool, "argv": sys.argv[1:]}) + "\n")
    with (base / "pids").open("a") as pids:
        pids.write(f"{os.getpid()}\n")
    path = base / "scenarios"
    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    if not lines:
        return "success"
    if len(lines) > 1:
        path.write_text("\n".join(lines[1:]) + "\n")
    return lines[0].strip()


def attached_serial() -> str:
    """The serial number of the tool 'attached' to this host."""
    return os.environ.get("RIG_STAND_IN_SERIAL", "BUR191234567")


def say(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


def hang() -> None:
    """A wedged tool: prints its banner, then never finishes (ignores SIGTERM like a stuck JVM)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)
