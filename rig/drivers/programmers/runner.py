"""Running a programming tool: a child process under a hard timeout, its output saved and shown live.

Every programmer is a command-line tool that prints what it does. `run_tool` starts it in its own
process group (so a timeout kills the tool and anything it started, such as the JVM behind
`ipecmd.sh`), copies every line to a transcript file as it arrives (a killed run keeps what the tool
said), and shows the last line under a rich spinner while it runs. It decides nothing: the tool
modules judge the output.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from rig.errors import InfrastructureError

# After SIGTERM, how long the tool gets to exit before SIGKILL.
_TERM_GRACE_S = 2.0
# How long the output reader may lag behind the process's exit (pipe drained by then).
_READER_JOIN_S = 5.0


@dataclass(frozen=True)
class ToolRun:
    """One run of a tool: its argv, exit code (None when killed), whole output, duration."""

    argv: list[str]
    exit_code: int | None
    output: str
    seconds: float
    timed_out: bool
    transcript: Path

    def tail(self, lines: int = 5) -> str:
        """The last non-empty lines of the output, for error messages."""
        kept = [line.strip() for line in self.output.splitlines() if line.strip()]
        return " | ".join(kept[-lines:]) if kept else "(no output)"


class _Reader(threading.Thread):
    """Copies the tool's output to the transcript line by line; never waits for anybody else."""

    def __init__(self, stream: IO[bytes], transcript: IO[str]) -> None:
        super().__init__(name="programmer-output", daemon=True)
        self._stream = stream
        self._transcript = transcript
        self.lines: list[str] = []
        self.last_line = ""
        self.error: BaseException | None = None
        self.abandoned = False

    def run(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self.lines.append(text)
                self._transcript.write(text + "\n")
                self._transcript.flush()
                shown = text.replace("\r", " ").strip()
                if shown:
                    self.last_line = shown
        except (OSError, ValueError) as exc:  # the pipe closed under us; reported by run_tool
            if not self.abandoned:
                self.error = exc


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the tool's process group, then SIGKILL what is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, _TERM_GRACE_S), (signal.SIGKILL, _TERM_GRACE_S)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_tool(
    argv: Sequence[str],
    *,
    timeout: float,
    transcript: Path,
    label: str,
    console: Console | None = None,
    cwd: Path | None = None,
) -> ToolRun:
    """Run `argv` to its end or until `timeout` seconds, saving its output to `transcript`.

    Raises `FileNotFoundError`/`PermissionError` when the executable cannot be started (the caller
    turns that into a message naming the bench-file key), `InfrastructureError` when its output
    could not be read.
    """
    argv = list(argv)
    console = console or Console(stderr=True)
    transcript.parent.mkdir(parents=True, exist_ok=True)
    with transcript.open("w", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(argv)}\n# started {datetime.now().isoformat(timespec='seconds')}\n")
        log.flush()
        start = time.monotonic()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
        assert process.stdout is not None
        reader = _Reader(process.stdout, log)
        reader.start()
        timed_out = False
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        try:
            with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
                task = bar.add_task(label, total=None)
                while True:
                    remaining = timeout - (time.monotonic() - start)
                    if remaining <= 0:
                        timed_out = True
                        _kill_group(process)
                        break
                    try:
                        process.wait(timeout=min(0.1, remaining))
                        break
                    except subprocess.TimeoutExpired:
                        bar.update(task, description=f"{label}: {reader.last_line[:80]}")
        except BaseException:
            # Ctrl-C or SIGTERM: the tool runs in its own session and did not see the signal.
            _kill_group(process)
            log.write("# stopped: the harness was interrupted\n")
            raise
        reader.join(_READER_JOIN_S)
        seconds = time.monotonic() - start
        if reader.is_alive():
            # Something outside the process group still holds the pipe open: stop reading.
            reader.abandoned = True
            process.stdout.close()
            reader.join(_READER_JOIN_S)
        else:
            process.stdout.close()
        if timed_out:
            log.write(f"# killed after the {timeout:g} s timeout\n")
        else:
            log.write(f"# exit code {process.returncode} after {seconds:.1f} s\n")
    if reader.error is not None:
        raise InfrastructureError(
            f"{label}: reading the tool's output failed ({reader.error}); transcript {transcript}"
        )
    return ToolRun(
        argv=argv,
        exit_code=None if timed_out else process.returncode,
        output="\n".join(reader.lines),
        seconds=seconds,
        timed_out=timed_out,
        transcript=transcript,
    )
