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

    `part` names the part of the bench that failed (`programmer`, `uart`, `router`, `cloud`, `uplink`…) when
    it is known, and `path` the network path when the problem is that path's alone (its uplink): a run
    stops trying a part that failed two attempts in a row, on that path only when it has one.
    """

    exit_code = 3
    part: str | None = None
    path: str | None = None  # the network path the problem concerns, when it is that path's alone

    def __init__(
        self,
        message: str,
        *,
        problems: list[str] | None = None,
        part: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, problems=problems)
        if part is not None:
            self.part = part
        self.path = path


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
    state: ClassVar[str | None] = None
    _classes: ClassVar[dict[tuple[str, str | None], type[HandshakeFailed]]] = {}

    def __init__(self, message: str, *, diagnosis: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.diagnosis = diagnosis or {}

    @classmethod
    def of(cls, category: str | None, state: str | None = None) -> type[HandshakeFailed]:
        """The class raised for a handshake that ended in `category` (in `state`); the same at every call.

        `HandshakeFailed_<category>_at_<STATE>` is a subclass of `HandshakeFailed_<category>`, so an
        expectation that names only the category accepts the failure in any state, and one that names the
        state accepts only that state.
        """
        name = category if category and category.isidentifier() else "other"
        place = state if state and state.isidentifier() else None
        key = (name, place)
        if key not in cls._classes:
            if place is None:
                base: type[HandshakeFailed] = HandshakeFailed
                title = f"HandshakeFailed_{name}"
            else:
                base = cls.of(name)
                title = f"HandshakeFailed_{name}_at_{place}"
            cls._classes[key] = type(
                title, (base,), {"category": name, "state": place, "__module__": __name__}
            )
        return cls._classes[key]
