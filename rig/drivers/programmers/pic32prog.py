"""`pic32prog` (sergev/pic32prog): PICkit 2/3, JTAG adapters and serial bootloaders, one command.

`pic32prog [-d DEVICE] [extra args] image.hex` erases, programs and verifies (unless `-S`); it prints
`Program flash: … done`, `Verify flash: … done` and finally ` Program rate: N bytes per second`, which
is the success marker. Failures (all exit 1): `Error detecting device -- check cable!`, `DEVCFG values
are missing -- check your HEX file!`, and a verify mismatch `error at address …: file=…, mem=…`.

The tool has no serial-number switch: the bench file's `programmer.serial` is passed as `-d`, the
adapter's device (a `/dev/serial/by-id/…` path for a bootloader or bit-bang adapter), so the right
board is programmed. A reset is a probe run (`pic32prog` with no image): it enters and leaves
programming mode, after which the target runs.
"""

from __future__ import annotations

from pathlib import Path

from rig.drivers.programmers.commandline import CommandLineProgrammer, Marker

SUCCESS = (Marker("Program rate:"),)
RESET_SUCCESS = (Marker("Processor:"),)

FAILURES = (
    Marker(
        "No target found",
        "no programming adapter found — check the USB cable and programmer.serial (the adapter's device, -d)",
        retry=True,
    ),
    Marker(
        "Error detecting device",
        "the adapter found no target — check that the hub is powered and the ICSP/JTAG cable is seated",
        retry=True,
    ),
    Marker(
        "DEVCFG values are missing", "the HEX file has no configuration words (DEVCFG) — rebuild the image"
    ),
    Marker(
        "error at address",
        "verification failed: the flash does not hold the image ({tail}) — check the hub's supply voltage",
    ),
)


class Pic32prog(CommandLineProgrammer):
    """sergev's `pic32prog`."""

    name = "pic32prog"
    success_markers = SUCCESS
    failure_markers = FAILURES
    reset_success_markers = RESET_SUCCESS

    def _base(self) -> list[str]:
        argv = self.executable()
        if self.config.serial:
            argv += ["-d", self.config.serial]
        return argv

    def program_argv(self, image: Path, out_dir: Path) -> list[str]:
        return [*self._base(), *self.config.extra_args, str(image)]

    def reset_argv(self, out_dir: Path) -> list[str]:
        return [*self._base(), *self.config.extra_args]
