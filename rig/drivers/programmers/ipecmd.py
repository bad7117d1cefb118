"""MPLAB IPE's command-line programmer, `ipecmd`: flags, and the output that says what happened.

`ipecmd -TP<tool> -TS<serial> -P<part> -F<hex> -M -OL`: program the whole device (`-M` verifies what
it wrote), the tool chosen by its serial number, then release the target from reset (`-OL`; without
it the board stays silent). Its exit codes cannot be trusted (bench.md §1.1, measured with a PICkit 3):
an unpowered target prints `Target device was not found` then `Operation Succeeded` and exits 0; a
wedged programmer prints `Connection Failed.` then `Operation Succeeded` and exits 0. So the output
decides: success needs `Programming/Verify complete` or `Program Succeeded` and no failure text.

A reset is the same command without an image: connect, then release the target from reset.
"""

from __future__ import annotations

from pathlib import Path

from rig.drivers.programmers.commandline import CommandLineProgrammer, Marker

SUCCESS = (Marker("Programming/Verify complete"), Marker("Program Succeeded"))
RESET_SUCCESS = (Marker("Operation Succeeded"),)

# Messages of MPLAB's tool layer, which IPE and MDB share (rig.drivers.programmers.mdb uses them too).
TARGET_NOT_FOUND = Marker(
    "Target device was not found",
    "the programmer found no target (could not detect VDD) — check that the hub is powered and "
    "the ICSP cable is seated",
    retry=True,
)
CONNECTION_FAILED = Marker(
    "Connection Failed",
    "the programmer's connection failed — a wedged tool needs a USB replug; close MPLAB X or IPE "
    "if one of them holds the tool",
    retry=True,
)
INVALID_DEVICE_ID = Marker(
    "Invalid Device ID",
    "the target answered with an invalid device ID — check the ICSP wiring and that dut.part "
    "({part}) is the hub's part",
    retry=True,
)
VERIFY_FAILED = Marker(
    "Verify failed",
    "verification failed: the flash does not hold the image — check the hub's supply voltage, "
    "then program again",
)
HEX_UNREADABLE = Marker("could not be read", "the tool could not read the HEX file ({tail})")

# Checked in this order; the first that appears names the problem.
FAILURES = (
    Marker(
        "Programmer not found",
        "no programmer found — check the USB cable, that programmer.serial ({serial}) is the tool's "
        "serial number (`ipecmd -T` lists attached tools) and the USB permissions (udev rules or root)",
        retry=True,
    ),
    TARGET_NOT_FOUND,
    CONNECTION_FAILED,
    Marker(
        "Wait for current operation to complete",
        "the tool is busy with another operation — stop other IPE sessions; stale IPE server state "
        "lives in ~/.mchp_ipe/",
        retry=True,
    ),
    INVALID_DEVICE_ID,
    Marker(
        "does not match expected Device ID",
        "the target is not the part the bench file names — check dut.part ({part}): {tail}",
    ),
    VERIFY_FAILED,
    HEX_UNREADABLE,
    Marker("Operation Failed", "the tool reported a failure: {tail}"),
)


class Ipecmd(CommandLineProgrammer):
    """MPLAB IPE `ipecmd` (also `ipecmd.sh`, `ipecmd.jar`, `ipecmdboost.jar`)."""

    name = "ipecmd"
    success_markers = SUCCESS
    failure_markers = FAILURES
    reset_success_markers = RESET_SUCCESS

    def _target(self) -> list[str]:
        part = self.part[3:] if self.part.upper().startswith("PIC") else self.part
        argv = [*self.executable(), f"-TP{self.config.tool}"]
        if self.config.serial:
            argv.append(f"-TS{self.config.serial}")
        return [*argv, f"-P{part}"]

    def program_argv(self, image: Path, out_dir: Path) -> list[str]:
        return [*self._target(), f"-F{image}", "-M", "-OL", *self.config.extra_args]

    def reset_argv(self, out_dir: Path) -> list[str]:
        return [*self._target(), "-OL", *self.config.extra_args]
