"""Which Mbed TLS release wrote a log: file names, message styles and `__LINE__` numbers.

The state enum and several error codes changed between releases, so the diagnosis needs the
version before it names a number. Evidence, strongest first: the line number of a message that
moved with every release (`client state`, `server state`, `=> handshake`), the source file names
(`ssl_cli.c` until 3.1, `ssl_msg.c` from 2.21, `ssl_tls12_client.c` from 3.2), the state style
(name-only client states from 3.2, `NAME(N)` from 3.1, transition lines from 3.6.4) and the
record-version notation (`[0x303]` from 3.2). Vendor forks move lines by a few, so line numbers
match the nearest known release within a tolerance.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

ALL_VERSIONS: Final = (
    "2.3",
    "2.4",
    "2.7",
    "2.8",
    "2.14",
    "2.16",
    "2.22",
    "2.26",
    "2.28",
    "3.0",
    "3.1",
    "3.2",
    "3.3",
    "3.4",
    "3.5",
    "3.6",
)
_V2_OLD: Final = frozenset({"2.3", "2.4", "2.7", "2.8", "2.14", "2.16"})  # before ssl_msg.c (2.21)
_V2_NEW: Final = frozenset({"2.22", "2.26", "2.28"})
_V30_31: Final = frozenset({"3.0", "3.1"})
_V32_UP: Final = frozenset({"3.2", "3.3", "3.4", "3.5", "3.6"})

# File name → the releases that have it.
_FILES: Final[dict[str, frozenset[str]]] = {
    "ssl_cli.c": _V2_OLD | _V2_NEW | _V30_31,
    "ssl_srv.c": _V2_OLD | _V2_NEW | _V30_31,
    "ssl_msg.c": _V2_NEW | _V30_31 | _V32_UP,
    "ssl_tls12_client.c": _V32_UP,
    "ssl_tls12_server.c": _V32_UP,
    "ssl_client.c": _V32_UP,
    "ssl_misc.h": _V30_31 | _V32_UP,
    "ssl_tls13_client.c": frozenset({"3.1"}) | _V32_UP,
    "ssl_tls13_server.c": frozenset({"3.1"}) | _V32_UP,
    "ssl_tls13_generic.c": frozenset({"3.1"}) | _V32_UP,
    "ssl_tls13_keys.c": frozenset({"2.28"}) | _V30_31 | _V32_UP,
}

# (file, message kind) → [(line, release)] from the release tags (domain notes, fingerprint table).
_LINES: Final[dict[tuple[str, str], list[tuple[int, str]]]] = {
    ("ssl_cli.c", "client_state"): [
        (3254, "2.3"),
        (3279, "2.4"),
        (3321, "2.7"),
        (3336, "2.8"),
        (3500, "2.14"),
        (3510, "2.16"),
        (3522, "2.16"),
        (3785, "2.16"),
        (3787, "2.16"),
        (3929, "2.22"),
        (4417, "2.26"),
        (4406, "2.28"),
        (4261, "2.28"),
        (4215, "3.0"),
        (4192, "3.1"),
    ],
    ("ssl_tls.c", "client_state"): [
        (3005, "3.2"),
        (3709, "3.3"),
        (3859, "3.4"),
        (3838, "3.5"),
        (4525, "3.6"),
        (4586, "3.6"),
    ],
    ("ssl_srv.c", "server_state"): [
        (3782, "2.3"),
        (3806, "2.4"),
        (3811, "2.4"),
        (3976, "2.7"),
        (4255, "2.14"),
        (4259, "2.16"),
        (4285, "2.16"),
        (4458, "2.22"),
        (4663, "2.26"),
        (4664, "2.28"),
        (4499, "2.28"),
        (4263, "3.0"),
        (4241, "3.1"),
    ],
    ("ssl_tls12_server.c", "server_state"): [(4322, "3.2"), (4228, "3.4"), (4319, "3.6"), (4304, "3.6")],
    ("ssl_tls13_server.c", "server_state"): [(3451, "3.6"), (3463, "3.6")],
    ("ssl_tls.c", "handshake_start"): [
        (6306, "2.3"),
        (6335, "2.4"),
        (6344, "2.4"),
        (6647, "2.7"),
        (6659, "2.8"),
        (8081, "2.14"),
        (8084, "2.16"),
        (8098, "2.16"),
        (8194, "2.16"),
        (8203, "2.16"),
        (5670, "2.22"),
        (5805, "2.26"),
        (5868, "2.28"),
        (5922, "2.28"),
        (5060, "3.0"),
        (5312, "3.1"),
        (3085, "3.2"),
        (3939, "3.4"),
        (4606, "3.6"),
        (4667, "3.6"),
    ],
}
_TOLERANCE: Final = 60  # vendor patches and patch releases move lines by a few dozen


class VersionFingerprint:
    """Accumulates evidence line by line; `best` is the current guess (None when undecided)."""

    def __init__(self) -> None:
        self.allowed: set[str] = set(ALL_VERSIONS)
        self.votes: Counter[str] = Counter()
        self.files: set[str] = set()
        self._best: str | None = None
        self._dirty = False
        self.banner: str | None = None
        self._seen_lines: set[tuple[str, str, int]] = set()
        self.fetch_in_ssl_tls = False  # `=> fetch input` seen from ssl_tls.c (more of it adds nothing)

    def _restrict(self, versions: frozenset[str] | set[str]) -> None:
        narrowed = self.allowed & versions
        if narrowed and narrowed != self.allowed:  # contradicting evidence (a fork) is ignored
            self.allowed = narrowed
            self._dirty = True

    def observe_file(self, name: str) -> None:
        """A source file name seen in a prefix (basename)."""
        if name in self.files:
            return
        self.files.add(name)
        versions = _FILES.get(name)
        if versions is not None:
            self._restrict(versions)
        if name == "ssl_tls.c":
            return
        if name.startswith("ssl_tls13"):
            self._restrict({"3.1"} | _V32_UP if name != "ssl_tls13_keys.c" else set(ALL_VERSIONS))

    def observe_line(self, name: str, kind: str, line: int) -> None:
        """A message of `kind` printed from `name`:`line` (client_state, server_state, handshake_start).

        Each distinct source location votes once: a log of a thousand retries is no more certain.
        """
        table = _LINES.get((name, kind))
        if not table or (name, kind, line) in self._seen_lines:
            return
        self._seen_lines.add((name, kind, line))
        candidates = [(abs(known - line), v) for known, v in table if v in self.allowed]
        distance, version = min(candidates or [(abs(known - line), v) for known, v in table])
        if distance <= _TOLERANCE:
            self.votes[version] += 2 if distance == 0 else 1
            self._dirty = True

    def observe_banner(self, major: int, minor: int) -> None:
        """The firmware printed the library's version (`mbed TLS 2.28.3`): the strongest evidence."""
        self.banner = f"{major}.{minor}"
        self._dirty = True

    def observe_fetch_in_ssl_tls(self) -> None:
        """`=> fetch input` printed from ssl_tls.c: a release before ssl_msg.c existed (≤ 2.20)."""
        self.fetch_in_ssl_tls = True
        self._restrict(_V2_OLD)

    def observe_style(self, style: str) -> None:
        """A version-specific print style: name_state, name_number_state, transition, hex_record_version."""
        if style == "name_state" or style == "hex_record_version":
            self._restrict(_V32_UP)
        elif style == "name_number_state":
            self._restrict({"3.1"} | _V32_UP)
        elif style == "transition":
            self._restrict({"3.6"})

    @property
    def best(self) -> str | None:
        """The best guess ("2.16", "2.28", "3.6", …) or None when the evidence does not decide."""
        if not self._dirty:
            return self._best
        self._dirty = False
        if self.banner is not None:
            self._best = self.banner
            return self._best
        voted = [(count, v) for v, count in self.votes.items() if v in self.allowed]
        if voted:
            self._best = max(voted)[1]
        elif len(self.allowed) == 1:
            self._best = next(iter(self.allowed))
        elif self.allowed <= _V2_OLD:
            self._best = "2.16"  # the last and by far the most common release before ssl_msg.c
        elif self.allowed <= _V2_NEW:
            self._best = "2.28"
        else:
            self._best = None
        return self._best

    @property
    def major(self) -> str | None:
        """ "2" or "3" when all remaining candidates agree, else None."""
        majors = {v.split(".")[0] for v in self.allowed}
        return majors.pop() if len(majors) == 1 else None
