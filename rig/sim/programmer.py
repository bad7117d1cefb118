"""The simulated bench's programmer: an `ipecmd`-compatible executable in front of the board.

`rig sim up` writes `DIR/bin/ipecmd`, a script that runs `python -m rig.sim.programmer --sim-dir DIR`
with the caller's arguments. It accepts MPLAB IPE command lines (`-TP<tool> -TS<serial> -P<part>
-F<hex> -M -Y -E -OL -W…`, switch char `-` or `/`) and answers as the real tool does (bench.md §1.1):
the same progress lines and markers (`Programming/Verify complete`, `Program Succeeded.`,
`Operation Succeeded`) and the same untrustworthy exit codes — an unpowered target (here: the
`programmer-no-target` fault, or no board running) prints `Target device was not found …` then
`Operation Succeeded` and exits 0; an unknown tool serial gives `Programmer not found`, exit 9.

It programs the HEX the way the hardware would: the image's bytes (`rig.sim.image.flash_from_hex`)
go into the board's flash while the board is held in reset; the target is released from reset only
with `-OL`, otherwise it stays held and silent. Programming takes `program_s` seconds (default 3; the
real tool needs 20 s or more) so that skipping needless programming is measurable.

Settings live in `DIR/programmer.json` (`tool`, `serial`, `part`, `program_s`, `board_socket`);
faults are files in `DIR/faults/`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rig.errors import InfrastructureError
from rig.sim.board import BoardClient
from rig.sim.image import flash_from_hex

TOOL_NAMES = {
    "ICD3": "MPLAB ICD 3",
    "ICD4": "MPLAB ICD 4",
    "ICD5": "MPLAB ICD 5",
    "ICE4": "MPLAB ICE 4",
    "PK3": "PICkit 3",
    "PK4": "MPLAB PICkit 4",
    "PK5": "MPLAB PICkit 5",
    "SNAP": "MPLAB Snap",
    "PKOB": "PKOB",
    "PKOB4": "PKOB4",
    "PM3": "MPLAB PM3",
    "J32": "J-32",
    "RICE": "REAL ICE",
}

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_VERIFY_FAILED = 7
EXIT_NO_PROGRAMMER = 9
EXIT_BAD_ARGUMENT = 36
EXIT_TOOL_LIST = 50
DEFAULT_PROGRAM_S = 3.0


@dataclass
class Command:
    """One ipecmd command line, parsed."""

    tool: str | None = None
    serial: str | None = None
    part: str | None = None
    hex: Path | None = None
    program: bool = False
    verify: bool = False
    erase: bool = False
    release: bool = False
    list_tools: bool = False
    unknown: list[str] = field(default_factory=list)


def parse(argv: list[str]) -> Command:
    """Parse ipecmd's flags; they are case-insensitive letters glued to their values."""
    cmd = Command()
    for arg in argv:
        if not arg or arg[0] not in "-/":
            cmd.unknown.append(arg)
            continue
        flag, upper = arg[1:], arg[1:].upper()
        if upper.startswith("TP"):
            cmd.tool = flag[2:]
        elif upper.startswith("TS"):
            cmd.serial = flag[2:]
        elif upper == "T":
            cmd.list_tools = True
        elif upper.startswith("P"):
            cmd.part = flag[1:]
        elif upper.startswith("F"):
            cmd.hex = Path(flag[1:])
        elif upper.startswith("M"):
            cmd.program = True
        elif upper == "Y":
            cmd.verify = True
        elif upper == "E":
            cmd.erase = True
        elif upper == "OL":
            cmd.release = True
        elif upper.startswith(("W", "OD", "OH", "Z")):
            pass  # power from tool, VDD first, erase-all toggle, preserve EEData: no effect on the sim
        else:
            cmd.unknown.append(arg)
    return cmd


def hex_range(path: Path) -> tuple[int, int]:
    """Lowest and highest data address of an Intel HEX file (type 00 records, 04 extended addresses)."""
    base, low, high = 0, None, None
    for line in path.read_text(encoding="ascii").splitlines():
        if not line.startswith(":") or len(line) < 11:
            continue
        count, offset, kind = int(line[1:3], 16), int(line[3:7], 16), int(line[7:9], 16)
        if kind == 4:
            base = int(line[9:13], 16) << 16
        elif kind == 0 and count:
            start = base + offset
            low = start if low is None else min(low, start)
            high = start + count - 1 if high is None else max(high, start + count - 1)
    if low is None or high is None:
        raise ValueError("no data records")
    return low, high


class Session:
    """One run of the tool: prints as ipecmd does and returns its exit code."""

    def __init__(self, sim_dir: Path, out: TextIO) -> None:
        self.sim_dir = sim_dir
        self.out = out
        settings_file = sim_dir / "programmer.json"
        self.settings: dict[str, Any] = json.loads(settings_file.read_text())
        self.board = BoardClient(Path(self.settings["board_socket"]), timeout=30)

    def say(self, line: str = "") -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def fault(self, name: str) -> bool:
        return (self.sim_dir / "faults" / name).exists()

    def run(self, cmd: Command) -> int:
        if cmd.unknown:
            self.say(f"Invalid option(s): {' '.join(cmd.unknown)}")
            return self._usage()
        if cmd.list_tools:
            return self._list_tools()
        if not cmd.tool or not cmd.part:
            self.say("Device and Tool are mandatory")
            return self._usage()
        tool = cmd.tool.upper()
        if tool not in TOOL_NAMES:
            self.say(f"Invalid tool type: {cmd.tool}")
            return self._usage()
        self.say("*****************************************************")
        self.say()
        if tool != str(self.settings["tool"]).upper() or (
            cmd.serial is not None and cmd.serial != self.settings["serial"]
        ):
            self.say("Programmer not found")
            self.say("Operation Failed")
            return EXIT_NO_PROGRAMMER
        with self._tool_lock() as free:
            if not free:
                self.say("Wait for current operation to complete")
                self.say("Operation Failed")
                return EXIT_FAILED
            return self._operate(cmd, TOOL_NAMES[tool])

    @contextlib.contextmanager
    def _tool_lock(self) -> Iterator[bool]:
        with (self.sim_dir / "programmer.lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    def _operate(self, cmd: Command, tool_name: str) -> int:
        self.say(f"Connecting to {tool_name}...")
        self.say()
        self.say("Currently loaded versions:")
        self.say("Application version...........02.01.23")
        self.say("Boot version..................01.00.00")
        self.say("Tool pack version ............2.2.1077")
        if self.fault("programmer-no-target") or not self._board_answers():
            # The real tool's behaviour with an unpowered target: failure text, then success, exit 0.
            self.say("Target device was not found (could not detect target voltage VDD). ")
            self.say("Operation Succeeded")
            return EXIT_OK
        self.say("Target voltage detected")
        part = cmd.part or ""
        expected = str(self.settings["part"])
        if part.upper().removeprefix("PIC") != expected.upper():
            self.say(
                f"Target Device ID (0x{_device_id(expected):x}) does not match expected Device ID "
                f"(0x{_device_id(part):x}) for {part}"
            )
            self.say("Operation Failed")
            return EXIT_FAILED
        self.say(f"Target device PIC{expected} found.")
        self.say("Device Revision Id  = 0xa1")
        self.say("DFP Version Used : PIC32MZ-EF_DFP,1.4.168,Microchip")
        self.board.request("hold")
        code = self._memory(cmd)
        if code != EXIT_OK:
            return code
        if cmd.release:
            self.board.request("release")
        self.say("Operation Succeeded")
        return EXIT_OK

    def _memory(self, cmd: Command) -> int:
        image: bytes | None = None
        if cmd.hex is not None and (cmd.program or cmd.verify):
            try:
                image = flash_from_hex(cmd.hex)
                low, high = hex_range(cmd.hex)
            except (OSError, ValueError):
                self.say("Hex File could not be read.")
                self.say("Operation Failed")
                return EXIT_FAILED
        if cmd.erase and not cmd.program:
            self.say("Erasing...")
            time.sleep(float(self.settings.get("program_s", DEFAULT_PROGRAM_S)) / 3)
            self.board.request("erase")
            self.say("Erase successful")
        if cmd.program:
            if image is None:
                self.say("Hex File could not be read.")
                self.say("Operation Failed")
                return EXIT_FAILED
            self.say("Erasing...")
            self.say("The following memory area(s) will be programmed:")
            self.say(f"program memory: start address = 0x{low:x}, end address = 0x{high:x}")
            self.say("boot config memory")
            self.say("Programming...")
            time.sleep(float(self.settings.get("program_s", DEFAULT_PROGRAM_S)))
            written = self.sim_dir / "programmer" / "image.bin"
            written.parent.mkdir(parents=True, exist_ok=True)
            written.write_bytes(image)
            self.board.request("write_flash", file=str(written), source=str(cmd.hex))
            if not self._flash_is(image):
                self.say("Verify failed")
                self.say("Operation Failed")
                return EXIT_VERIFY_FAILED
            self.say("Programming/Verify complete")
            self.say("Program Succeeded.")
        if cmd.verify and image is not None:
            self.say("Verifying...")
            if not self._flash_is(image):
                self.say("Verify failed")
                self.say("Operation Failed")
                return EXIT_VERIFY_FAILED
            self.say("Verify Succeeded.")
        return EXIT_OK

    def _flash_is(self, image: bytes) -> bool:
        flash = self.board.request("status").get("flash") or {}
        return bool(flash.get("sha256") == hashlib.sha256(image).hexdigest())

    def _board_answers(self) -> bool:
        try:
            self.board.request("status")
        except InfrastructureError:
            return False
        return True

    def _list_tools(self) -> int:
        tool = str(self.settings["tool"]).upper()
        self.say("*****************************************************")
        self.say()
        self.say(f"1: {TOOL_NAMES.get(tool, tool)} S.No : {self.settings['serial']}")
        return EXIT_TOOL_LIST

    def _usage(self) -> int:
        self.say("Usage: ipecmd <deviceName> <toolName> [Options]")
        self.say("  -TP<tool> -TS<serial> -P<part> -F<hexfile> -M -Y -E -OL -W<volts>")
        self.say("Operation Failed")
        return EXIT_BAD_ARGUMENT


def _device_id(part: str) -> int:
    return int.from_bytes(hashlib.sha256(part.upper().encode()).digest()[:3], "big") | 0x7000000


def write_settings(
    sim_dir: Path,
    *,
    tool: str,
    serial: str,
    part: str,
    board_socket: Path,
    program_s: float = DEFAULT_PROGRAM_S,
) -> None:
    """Record what the simulated tool is and which board it is wired to (used by `rig sim up`)."""
    settings = {
        "tool": tool,
        "serial": serial,
        "part": part,
        "program_s": program_s,
        "board_socket": str(board_socket),
    }
    (sim_dir / "programmer.json").write_text(json.dumps(settings, indent=2))


def install(sim_dir: Path, python: str = sys.executable) -> Path:
    """Write the `ipecmd` executable of this sim into `DIR/bin`; the path a bench file names."""
    path = sim_dir / "bin" / "ipecmd"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec "{python}" -m rig.sim.programmer --sim-dir "{sim_dir}" "$@"\n')
    path.chmod(0o755)
    return path


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "--sim-dir":
        print("usage: python -m rig.sim.programmer --sim-dir DIR IPECMD-ARGS...", file=sys.stderr)
        return EXIT_BAD_ARGUMENT
    sim_dir = Path(args[1])
    try:
        return Session(sim_dir, sys.stdout).run(parse(args[2:]))
    except (OSError, KeyError, ValueError) as exc:
        print(f"Simulated programmer setup in {sim_dir} is broken: {exc}", file=sys.stderr)
        print("Operation Failed")
        return EXIT_FAILED
    except InfrastructureError as exc:
        print(f"Connection Failed. ({exc})")
        print("Operation Succeeded")  # as the real tool does when the link to the target breaks
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
