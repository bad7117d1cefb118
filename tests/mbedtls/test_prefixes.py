"""Whatever the application's debug callback puts around a message, the diagnosis is the same.

Each variation rewrites every line of three reference logs (the incident's two fragments and a
complete 2.16 handshake) the way a real callback or terminal would, and the diagnosis must keep
its outcome, category, state, error, reads, records and retries.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from rig.mbedtls import diagnose_lines
from tests.mbedtls.conftest import LOGS
from tests.mbedtls.test_categories import COMPLETED, FATAL_ALERT

REFERENCES = {
    "incident-good": (LOGS / "incident-good.log").read_text().splitlines(),
    "incident-bad": (LOGS / "incident-bad.log").read_text().splitlines(),
    "completed": COMPLETED.splitlines(),
    "fatal-alert": FATAL_ALERT.splitlines(),
}
KEYS = (
    "outcome",
    "category",
    "last_state",
    "error",
    "alert",
    "want_read_retries",
    "inbound_reads",
    "records_in",
    "records_out",
    "role",
)

_SOURCE = re.compile(r"^(ssl_\w+\.c):(\d+): ")

Lines = list[str | bytes]


def _each_source_line(rewrite: Callable[[str, str, str], str]) -> Callable[[list[str]], Lines]:
    """A variation that rewrites `file:line: message` lines and keeps the others."""

    def apply(lines: list[str]) -> Lines:
        out: Lines = []
        for line in lines:
            m = _SOURCE.match(line)
            out.append(rewrite(m.group(1), m.group(2), line[m.end() :]) if m else line)
        return out

    return apply


def _every_line(rewrite: Callable[[int, str], str | bytes]) -> Callable[[list[str]], Lines]:
    return lambda lines: [rewrite(i, line) for i, line in enumerate(lines)]


def _wrapped(width: int) -> Callable[[list[str]], Lines]:
    def apply(lines: list[str]) -> Lines:
        out: Lines = []
        for line in lines:
            out.extend(textwrap.wrap(line, width, drop_whitespace=False, break_on_hyphens=False) or [""])
        return out

    return apply


def _interleaved(lines: list[str]) -> Lines:
    out: Lines = []
    for i, line in enumerate(lines):
        out.append(line)
        if i % 3 == 1:
            out.append("[wifi] rssi -61 dBm, channel 6")
    return out


VARIATIONS: dict[str, Callable[[list[str]], Lines]] = {
    "iso timestamps": _every_line(lambda i, line: f"2026-06-04 07:51:{i % 60:02d}.{i % 1000:03d} {line}"),
    "bracketed time of day": _every_line(lambda i, line: f"[07:51:{i % 60:02d}.{i % 1000:03d}] {line}"),
    "seconds since boot": _every_line(lambda i, line: f"[{i * 0.013 + 5:12.6f}] {line}"),
    "level digit": _every_line(lambda i, line: f"[2] {line}"),
    "level letter": _every_line(lambda i, line: f"D {line}"),
    "level word and tag": _every_line(lambda i, line: f"<debug> mbedtls: {line}"),
    "esp-idf": _each_source_line(lambda f, n, msg: f"I ({1000 + int(n)}) mbedtls: {f}:{n} {msg}"),
    "ansi colours": _every_line(lambda i, line: f"\x1b[0;32m{line}\x1b[0m"),
    "context pointer": _each_source_line(lambda f, n, msg: f"{f}:{n}: 0x7ffd1234: {msg}"),
    "bare context pointer": _each_source_line(lambda f, n, msg: f"{f}:{n}: 20006e58: {msg}"),
    "level bars": _each_source_line(lambda f, n, msg: f"{f}:{n}: |2| {msg}"),
    "zero padded line": _each_source_line(lambda f, n, msg: f"{f}:{int(n):06d}: {msg}"),
    "bracketed line": _each_source_line(lambda f, n, msg: f"{f}:[{n}]: {msg}"),
    "parenthesised line": _each_source_line(lambda f, n, msg: f"{f}({n}): {msg}"),
    "space separated line": _each_source_line(lambda f, n, msg: f"{f} {n}: {msg}"),
    "full path": _each_source_line(lambda f, n, msg: f"/home/ci/mbedtls-2.16.5/library/{f}:{n}: {msg}"),
    "windows path": _each_source_line(lambda f, n, msg: f"C:\\work\\mbedtls\\library\\{f}({n}): {msg}"),
    "serial terminal": _every_line(lambda i, line: f"> {line}"),
    "crlf": _every_line(lambda i, line: f"{line}\r\n"),
    "blank line after each entry": lambda lines: [x for line in lines for x in (line, "")],
    "bytes with non-utf8 noise in app lines": _every_line(
        lambda i, line: line.encode() if _SOURCE.match(line) else b"\xff\xfe" + line.encode() + b"\x80"
    ),
    "other tasks interleaved": _interleaved,
    "hard wrapped at 40 columns": _wrapped(40),
}
MESSAGE_ONLY = _each_source_line(lambda f, n, msg: msg)


def _fields(lines: Lines) -> dict[str, Any]:
    d = diagnose_lines(lines).to_json()
    return {key: d[key] for key in KEYS} | {"version": d["mbedtls_version"]}


@pytest.mark.parametrize("variation", VARIATIONS, ids=list(VARIATIONS))
@pytest.mark.parametrize("reference", REFERENCES, ids=list(REFERENCES))
def test_a_callback_prefix_variation_does_not_change_the_diagnosis(reference: str, variation: str) -> None:
    lines = REFERENCES[reference]
    assert _fields(VARIATIONS[variation](lines)) == _fields(list(lines))


@pytest.mark.parametrize("reference", REFERENCES, ids=list(REFERENCES))
def test_a_message_only_callback_gives_the_same_verdict_without_a_version(reference: str) -> None:
    lines = REFERENCES[reference]
    plain = _fields(list(lines))
    bare = _fields(MESSAGE_ONLY(lines))
    assert bare == plain | {"version": None}


def test_timestamps_on_every_line_give_the_stall_its_duration() -> None:
    lines = REFERENCES["incident-bad"]
    stamped = [f"2026-06-04 07:54:{19 + i * 0.5:06.3f} {line}" for i, line in enumerate(lines)]
    d = diagnose_lines(stamped)
    assert d.outcome == "stalled"
    assert d.stall_seconds == 11.5  # from state 12 (line 32) to the last line (55): 23 lines × 0.5 s
