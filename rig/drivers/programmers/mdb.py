"""MPLAB's debugger shell, `mdb.sh <command file>`, used as a programmer.

MDB reads commands from a file: `Device`, any `Set` lines (they must precede `Hwtool`), `Hwtool <type>
-p <index>` (`-p` programs without the debug executive), `Program "<hex>"`, `Reset`, `Quit` (MDB User's
Guide). `Hwtool` selects a tool by its index in MDB's own list, so the tool is found by serial number
first: a short session runs `Hwtool` alone and reads lines such as `0  MPLAB ICD4 (BUR191234567)`.

MDB's exit code says nothing about programming, and it may throw `ChronicleHashClosedException` while
quitting after `Program succeeded.` (harmless, bench.md §1.2); the output markers decide. The bench
file's `programmer.extra_args` become `Set` lines (`["poweroptions.powerenable true"]`).
"""

from __future__ import annotations

import re
from pathlib import Path

from rig.drivers.programmers.commandline import AttemptFailed, CommandLineProgrammer, Marker, first_failure
from rig.drivers.programmers.ipecmd import (
    CONNECTION_FAILED,
    HEX_UNREADABLE,
    INVALID_DEVICE_ID,
    TARGET_NOT_FOUND,
    VERIFY_FAILED,
)

SUCCESS = (Marker("Program succeeded"), Marker("Programming/Verify complete"))
RESET_DONE = "rig: reset sent"
RESET_SUCCESS = (Marker(RESET_DONE),)

FAILURES = (
    TARGET_NOT_FOUND,
    CONNECTION_FAILED,
    INVALID_DEVICE_ID,
    VERIFY_FAILED,
    Marker("Programming failed", "the tool reported a programming failure: {tail}"),
    HEX_UNREADABLE,
)

_TOOL_LINE = re.compile(r"^\s*(?P<index>\d+)\s+(?P<name>.*?)\s*\((?P<serial>[^)]+)\)\s*$", re.MULTILINE)


class Mdb(CommandLineProgrammer):
    """MPLAB `mdb.sh` driven by a command file."""

    name = "mdb"
    success_markers = SUCCESS
    failure_markers = FAILURES
    reset_success_markers = RESET_SUCCESS
    trust_exit_code = False

    def _device(self) -> str:
        return self.part if self.part.upper().startswith("PIC") else f"PIC{self.part}"

    def _tool_index(self, out_dir: Path) -> str:
        """MDB's index of the tool with the configured serial number (`0` when none is configured)."""
        if not self.config.serial:
            return "0"
        script = out_dir / "mdb-list.txt"
        script.write_text("Hwtool\nQuit\n", encoding="utf-8")
        run = self._run([*self.executable(), str(script)], out_dir / "mdb-list.log", "listing programmers")
        if run.timed_out:
            raise AttemptFailed(
                f"listing the attached tools did not finish in {run.seconds:.0f} s", retry=True
            )
        failure = first_failure(run, self.failure_markers, self.context())
        if failure is not None:
            raise AttemptFailed(f"listing the attached tools: {failure.problem}", retry=failure.retry)
        listed = []
        for match in _TOOL_LINE.finditer(run.output):
            listed.append(f"{match['index']} {match['name']} ({match['serial']})")
            if match["serial"].strip().lower() == self.config.serial.lower():
                return match["index"]
        raise AttemptFailed(
            f"no programmer with serial {self.config.serial} is attached (MDB lists: "
            f"{'; '.join(listed) or 'none'}) — check the USB cable and programmer.serial",
            retry=True,
        )

    def _script(self, out_dir: Path, name: str, actions: list[str]) -> Path:
        tool = self.config.tool or ""
        index = self._tool_index(out_dir)
        lines = [f"Device {self._device()}"]
        lines += [f"Set {setting}" for setting in self.config.extra_args]
        lines += [f"Hwtool {tool} -p {index}", *actions, "Quit"]
        script = out_dir / name
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return script

    def program_argv(self, image: Path, out_dir: Path) -> list[str]:
        # The pause lets a PICkit 3 finish writing before Quit (observed: quitting at once corrupts EEPROM).
        script = self._script(out_dir, "mdb-program.txt", [f'Program "{image}"', "Sleep 1000", "Reset"])
        return [*self.executable(), str(script)]

    def reset_argv(self, out_dir: Path) -> list[str]:
        script = self._script(out_dir, "mdb-reset.txt", ["Reset", f"Echo {RESET_DONE}"])
        return [*self.executable(), str(script)]
