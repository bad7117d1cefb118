"""Waiting for a started simulated-bench process to say it is ready (its first stdout line)."""

from __future__ import annotations

import selectors
import subprocess


def ready_line(process: subprocess.Popen[bytes], what: str, timeout: float = 15.0) -> str:
    """The first line `process` prints on stdout; AssertionError naming `what` if none comes in time."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=timeout):
            raise AssertionError(f"{what} printed nothing within {timeout:g} s")
    return process.stdout.readline().decode()
