"""What every command-line programmer shares: attempts, one retry, transcripts, events, errors.

A tool module (ipecmd, mdb, pic32prog) says only how to call its tool and how to read its output:
`program_argv`, `reset_argv`, and a table of output markers. This module runs the attempts: the
image is checked, each attempt's output is saved as `programmer-<n>.log` in the attempt folder, a
problem that a second try can fix (no programmer, no target, connection failed, a hung tool) is
retried once, and anything else ends as an `InfrastructureError` that quotes the tool and names the
transcript.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from rig.config import ProgrammerConfig
from rig.drivers.programmers.programmer import ProgramResult, image_sha256
from rig.drivers.programmers.runner import ToolRun, run_tool
from rig.errors import ConfigError, InfrastructureError
from rig.events import EventLog

log = logging.getLogger(__name__)

# Pause between a failed attempt and the retry: a programmer that just lost its connection needs a
# moment before it enumerates again.
RETRY_PAUSE_S = 1.0


@dataclass(frozen=True)
class Marker:
    """Text a tool prints that means something: success, or a problem with what to check."""

    text: str
    problem: str = ""
    retry: bool = False


@dataclass(frozen=True)
class Judgement:
    """The reading of one tool run: fine, or a problem (and whether trying again may help)."""

    ok: bool
    problem: str = ""
    retry: bool = False


def judge_output(
    run: ToolRun,
    *,
    success: tuple[Marker, ...],
    failures: tuple[Marker, ...],
    trust_exit_code: bool = True,
    context: dict[str, str] | None = None,
) -> Judgement:
    """Success only when a success marker appears, no failure marker does, and (if trusted) exit 0.

    Failure markers are looked for first: `ipecmd` prints `Operation Succeeded` after
    `Connection Failed.` and `Target device was not found`, and exits 0 (bench.md §1.1).
    A marker's problem text may name `{tail}` (the last output lines) and the keys of `context`.
    """
    if run.timed_out:
        return Judgement(
            False,
            f"did not finish within {run.seconds:.0f} s and was killed — a wedged programmer "
            "usually needs a USB replug; check programmer.timeout_s if the image is large",
            retry=True,
        )
    failure = first_failure(run, failures, context)
    if failure is not None:
        return failure
    if not any(marker.text.lower() in run.output.lower() for marker in success):
        return Judgement(
            False,
            f"exited {run.exit_code} without a success message (last output: {run.tail()})",
        )
    if trust_exit_code and run.exit_code != 0:
        return Judgement(False, f"reported success but exited {run.exit_code} (last output: {run.tail()})")
    return Judgement(True)


def first_failure(
    run: ToolRun, failures: tuple[Marker, ...], context: dict[str, str] | None = None
) -> Judgement | None:
    """The problem named by the first failure marker found in the output, if any."""
    for marker in failures:
        if marker.text.lower() in run.output.lower():
            return Judgement(False, marker.problem.format(tail=run.tail(), **(context or {})), marker.retry)
    return None


class AttemptFailed(Exception):
    """Raised by a tool module while preparing an attempt (e.g. the tool with the serial is absent)."""

    def __init__(self, problem: str, *, retry: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry = retry


class CommandLineProgrammer(ABC):
    """A programmer driven through a command-line tool; subclasses say how to call it and read it."""

    name = "programmer"
    success_markers: tuple[Marker, ...] = ()
    failure_markers: tuple[Marker, ...] = ()
    reset_success_markers: tuple[Marker, ...] = ()
    trust_exit_code = True

    def __init__(
        self,
        config: ProgrammerConfig,
        part: str,
        *,
        events: EventLog | None = None,
        console: Console | None = None,
    ) -> None:
        self.config = config
        self.part = part
        self.events = events if events is not None else EventLog()
        self.console = console or Console(stderr=True)
        self._reset_dir: Path | None = None

    # -- what a tool module provides

    @abstractmethod
    def program_argv(self, image: Path, out_dir: Path) -> list[str]:
        """The tool's command line that programs and verifies `image`."""

    @abstractmethod
    def reset_argv(self, out_dir: Path) -> list[str]:
        """The tool's command line that resets the target and lets it run."""

    # -- shared behaviour

    @property
    def who(self) -> str:
        """How errors name this programmer: tool kind, type and serial."""
        parts = [self.name, self.config.tool or "", self.config.serial or ""]
        return " ".join(p for p in parts if p)

    def context(self) -> dict[str, str]:
        """Values the failure messages may name."""
        return {"part": self.part, "tool": self.config.tool or "", "serial": self.config.serial or "(none)"}

    def executable(self) -> list[str]:
        """The argv prefix that starts the tool (`java -jar` for a jar)."""
        exe = self.config.executable
        if exe.endswith(".jar"):
            return ["java", "-jar", exe]
        return [exe]

    def program(self, image: Path, *, out_dir: Path, sha256: str | None = None) -> ProgramResult:
        if not image.is_file():
            raise ConfigError(f"{image}: image file not found — build the variant or check its image.hex")
        digest = image_sha256(image)
        if sha256 is not None and sha256.lower() != digest:
            raise ConfigError(
                f"{image}: sha256 is {digest}, the variant file says {sha256.lower()} — "
                "rebuild the image or update image.sha256"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        self.events.emit("flash_started", self.name, image=str(image), sha256=digest, tool=self.who)
        problems: list[str] = []
        transcript: Path | None = None
        for attempt in (1, 2):
            transcript = _next_transcript(out_dir, "programmer")
            try:
                argv = self.program_argv(image, out_dir)
                run = self._run(argv, transcript, f"programming {image.name}")
                verdict = judge_output(
                    run,
                    success=self.success_markers,
                    failures=self.failure_markers,
                    trust_exit_code=self.trust_exit_code,
                    context=self.context(),
                )
            except AttemptFailed as exc:
                transcript.write_text(f"# not started: {exc.problem}\n", encoding="utf-8")
                verdict = Judgement(False, exc.problem, exc.retry)
            if verdict.ok:
                seconds = time.monotonic() - start
                self.events.emit(
                    "flash_done", self.name, sha256=digest, seconds=round(seconds, 3), attempts=attempt
                )
                return ProgramResult(True, False, seconds, attempt, transcript, digest)
            problems.append(verdict.problem)
            self.events.emit(
                "flash_attempt_failed",
                self.name,
                attempt=attempt,
                problem=verdict.problem,
                retry=verdict.retry and attempt == 1,
                transcript=str(transcript),
            )
            log.warning("%s: attempt %d: %s", self.who, attempt, verdict.problem)
            if not verdict.retry:
                break
            if attempt == 1:
                time.sleep(RETRY_PAUSE_S)
        self.events.emit("flash_failed", self.name, problem=problems[-1], attempts=len(problems))
        tried = "twice" if len(problems) == 2 else "once"
        raise InfrastructureError(
            f"{self.who}: programming {image.name} failed ({tried}): {problems[-1]}; "
            f"the tool's output is in {transcript}"
        )

    def reset(self) -> None:
        if self._reset_dir is None:
            self._reset_dir = Path(tempfile.mkdtemp(prefix="rig-reset-"))
        transcript = _next_transcript(self._reset_dir, "reset")
        try:
            run = self._run(self.reset_argv(self._reset_dir), transcript, "resetting the DUT")
            verdict = judge_output(
                run,
                success=self.reset_success_markers or self.success_markers,
                failures=self.failure_markers,
                trust_exit_code=self.trust_exit_code,
                context=self.context(),
            )
        except AttemptFailed as exc:
            transcript.write_text(f"# not started: {exc.problem}\n", encoding="utf-8")
            verdict = Judgement(False, exc.problem, exc.retry)
        if not verdict.ok:
            self.events.emit("reset_failed", self.name, problem=verdict.problem, transcript=str(transcript))
            raise InfrastructureError(
                f"{self.who}: resetting the DUT failed: {verdict.problem}; the tool's output is in {transcript}"
            )
        self.events.emit("reset", self.name, via="programmer", seconds=round(run.seconds, 3))

    def _run(self, argv: list[str], transcript: Path, label: str) -> ToolRun:
        if shutil.which(argv[0]) is None:
            raise InfrastructureError(
                f"{self.who}: executable {argv[0]!r} not found or not executable — check "
                "programmer.executable in the bench file and that the tool is installed"
            )
        try:
            return run_tool(argv, timeout=self.config.timeout_s, transcript=transcript, label=label)
        except (FileNotFoundError, PermissionError) as exc:
            raise InfrastructureError(
                f"{self.who}: cannot start {argv[0]!r} ({exc.strerror}) — check programmer.executable "
                "in the bench file"
            ) from None


def _next_transcript(folder: Path, stem: str) -> Path:
    """`folder/<stem>-<n>.log` with the first n not yet used (attempts and retries never overwrite)."""
    n = 1
    while (folder / f"{stem}-{n}.log").exists():
        n += 1
    return folder / f"{stem}-{n}.log"
