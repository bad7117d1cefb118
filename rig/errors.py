"""The rig's error hierarchy and the exit code each kind of problem gives.

Every error a user can meet is a `RigError` whose message says what went wrong and what to check.
The CLI turns them into one or more lines on stderr and an exit code that tells the kind of problem:

    0  success                       1  the firmware did the wrong thing (`FirmwareFailure`)
    2  bad input: a file, a flag     3  the bench could not be used (`InfrastructureError`)
"""

from __future__ import annotations

from typing import Any, ClassVar


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
    """The bench could not do its job: programmer, UART, router, lease, cloud. Never a firmware verdict.

    `part` names the part of the bench that failed (`programmer`, `uart`, `router`, `cloud`, …) when it is
    known: a run stops trying a part that failed two attempts in a row.
    """

    exit_code = 3
    part: str | None = None

    def __init__(self, message: str, *, problems: list[str] | None = None, part: str | None = None) -> None:
        super().__init__(message, problems=problems)
        if part is not None:
            self.part = part


class FirmwareFailure(RigError):
    """The device under test did the wrong thing: a handshake failed or stalled."""

    exit_code = 1


class HandshakeFailed(FirmwareFailure, AssertionError):
    """The DUT did not complete its handshake and MQTT session; the message is the diagnosis summary.

    Raised as the subclass of the diagnosis category, `HandshakeFailed_<category>` (`of(category)`), so
    that pytest's strict xfail can expect exactly one category. Also an AssertionError: reports (allure)
    show it as a failed test, not a broken one.
    """

    category: ClassVar[str] = "other"
    _by_category: ClassVar[dict[str, type[HandshakeFailed]]] = {}

    def __init__(self, message: str, *, diagnosis: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.diagnosis = diagnosis or {}

    @classmethod
    def of(cls, category: str | None) -> type[HandshakeFailed]:
        """The class raised for a handshake that ended in `category` (the same class at every call)."""
        name = category if category and category.isidentifier() else "other"
        if name not in cls._by_category:
            cls._by_category[name] = type(
                f"HandshakeFailed_{name}", (HandshakeFailed,), {"category": name, "__module__": __name__}
            )
        return cls._by_category[name]
