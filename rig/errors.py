"""The rig's error hierarchy and the exit code each kind of problem gives.

Every error a user can meet is a `RigError` whose message says what went wrong and what to check.
The CLI turns them into one or more lines on stderr and an exit code that tells the kind of problem:

    0  success                       1  the firmware did the wrong thing (`FirmwareFailure`)
    2  bad input: a file, a flag     3  the bench could not be used (`InfrastructureError`)
"""

from __future__ import annotations


class RigError(Exception):
    """Base of every error the rig raises on purpose; `exit_code` is what the CLI exits with."""

    exit_code = 2

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]

    def lines(self) -> list[str]:
        """One line per problem, for the terminal."""
        return list(self.problems)


class ConfigError(RigError):
    """A bench or variant file (or a command-line value) is wrong: names the file and key path."""

    exit_code = 2


class InfrastructureError(RigError):
    """The bench could not do its job: programmer, UART, router, lease, cloud. Never a firmware verdict."""

    exit_code = 3


class FirmwareFailure(RigError):
    """The device under test did the wrong thing: a handshake failed or stalled."""

    exit_code = 1
