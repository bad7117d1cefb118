"""Property tests: no input crashes the parser, and noise never turns a completed handshake into a failure."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.mbedtls import LogParser, diagnose_lines, diagnose_parser
from rig.mbedtls import parser as parser_module
from tests.mbedtls.conftest import LOGS
from tests.mbedtls.test_categories import COMPLETED

COMPLETED_LINES = COMPLETED.splitlines()
REAL_LINES = (LOGS / "mbedtls-2.28-complete-level4.log").read_bytes().splitlines()
KEYS = ("outcome", "category", "last_state", "error", "inbound_reads", "want_read_retries")


def _key(lines: list[str] | list[bytes] | list[str | bytes]) -> tuple[object, ...]:
    d = diagnose_lines(lines).to_json()
    return tuple(d[k] for k in KEYS)


# Prefixes built from what debug callbacks and terminals really add.
_numbers = st.integers(min_value=0, max_value=59).map(lambda n: f"{n:02d}")
_timestamp = st.one_of(
    st.builds(lambda h, m, s, ms: f"{h}:{m}:{s}.{ms:03d}", _numbers, _numbers, _numbers, st.integers(0, 999)),
    st.builds(lambda d, s: f"2026-06-{d} 07:51:{s}", st.sampled_from(["01", "04", "28"]), _numbers),
    st.builds(lambda n: f"[{n / 1000:10.6f}]", st.integers(0, 10**9)),
    st.builds(lambda n: f"I ({n})", st.integers(0, 10**7)),
)
_level = st.sampled_from(["", "D", "I", "W", "[2]", "<debug>", "DEBUG", "dbg:", "|3|", "V/"])
_tag = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=10).map(
    lambda t: f"{t}:"
)
_pointer = st.integers(0, 2**48).map(lambda n: f"0x{n:x}:")
_prefix = st.lists(st.one_of(_timestamp, _level, _tag, _pointer), max_size=4).map(
    lambda parts: " ".join(parts)
)
_ansi = st.sampled_from(["", "\x1b[0;32m", "\x1b[1;31m", "\x1b[0m"])


@settings(max_examples=60, deadline=None)
@given(prefix=_prefix, colour=_ansi)
def test_any_callback_prefix_keeps_the_diagnosis(prefix: str, colour: str) -> None:
    prefixed = [f"{colour}{prefix} {line}" if prefix else f"{colour}{line}" for line in COMPLETED_LINES]
    assert _key(prefixed) == _key(COMPLETED_LINES)


_noise_line = st.text(st.characters(blacklist_categories=("Cs",)), max_size=100).filter(
    lambda t: "\n" not in t
)


@settings(max_examples=60, deadline=None)
@given(noise=st.lists(st.tuples(st.integers(0, len(COMPLETED_LINES)), _noise_line), max_size=20))
def test_interleaved_noise_never_turns_a_completed_handshake_into_a_failure(
    noise: list[tuple[int, str]],
) -> None:
    lines = list(COMPLETED_LINES)
    for position, text in sorted(noise, reverse=True):
        lines.insert(position, text)
    assert diagnose_lines(lines).outcome == "completed"


@settings(max_examples=60, deadline=None)
@given(drop=st.sets(st.integers(0, len(REAL_LINES) - 1), max_size=200))
def test_dropped_lines_never_turn_a_completed_handshake_into_a_failure(drop: set[int]) -> None:
    kept = [line for i, line in enumerate(REAL_LINES) if i not in drop]
    assert diagnose_lines(kept).outcome in ("completed", "incomplete")


@settings(max_examples=60, deadline=None)
@given(garbage=st.lists(st.tuples(st.integers(0, len(REAL_LINES)), st.binary(max_size=120)), max_size=30))
def test_byte_garbage_lines_never_turn_a_completed_handshake_into_a_failure(
    garbage: list[tuple[int, bytes]],
) -> None:
    lines = list(REAL_LINES)
    for position, blob in sorted(garbage, reverse=True):
        lines.insert(position, blob.replace(b"-", b"~"))  # a '-' could forge `returned -N` from a cut line
    assert diagnose_lines(lines).outcome == "completed"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=200), st.text(max_size=200)), max_size=50))
def test_arbitrary_input_never_crashes_the_parser_or_the_verdict(lines: list[str | bytes]) -> None:
    parser = LogParser()
    for line in lines:
        parser.feed(line)
    diagnose_parser(parser)
    diagnose_parser(parser, now=1e9, stall_after=1.0)
    assert parser.counts["lines"] == len(lines)


@settings(max_examples=30, deadline=None)
@given(cut=st.integers(0, len(REAL_LINES)))
def test_the_provisional_verdict_of_a_completing_handshake_is_never_failed(cut: int) -> None:
    parser = LogParser()
    parser.feed_all(REAL_LINES[:cut])
    assert diagnose_parser(parser).outcome != "failed"


_NEVER = re.compile("(?!)")
_NEVER_BYTES = re.compile(b"(?!)")


def _full_parse(lines: list[bytes] | list[str], fast: bool, each: bool = False) -> tuple[object, ...]:
    parser = LogParser()
    if each:  # line by line, as the live harness feeds
        for line in lines:
            parser.feed(line)
    elif fast:
        parser.feed_all(lines)
    else:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(parser_module, "PREFIXED_TEXT", _NEVER)
            patch.setattr(parser_module, "PREFIXED_BYTES", _NEVER_BYTES)
            patch.setattr(parser_module, "_QUIET_TEXT", _NEVER)
            patch.setattr(parser_module, "_QUIET_BYTES", _NEVER_BYTES)
            parser.feed_all(lines)
    events = [(e.kind, e.line_no, e.data) for trace in parser.attempts for e in trace.events]
    return diagnose_parser(parser).to_json(), parser.counts, events, parser.version


@settings(max_examples=40, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(REAL_LINES) - 1), st.sampled_from(["drop", "wrap", "garble", "stamp"])),
        max_size=40,
    )
)
def test_the_fast_path_for_file_line_prefixed_lines_changes_nothing(edits: list[tuple[int, str]]) -> None:
    lines = list(REAL_LINES)
    for index, edit in sorted(set(edits), reverse=True):
        if index >= len(lines):
            continue
        line = lines[index]
        if edit == "drop":
            del lines[index]
        elif edit == "wrap":
            lines[index : index + 1] = [line[:30], line[30:]]
        elif edit == "garble":
            lines[index] = line[:20] + b"\xff\x00" + line[22:]
        else:
            lines[index] = b"12:00:01.250 " + line
    general = _full_parse(lines, fast=False)
    assert _full_parse(lines, fast=True) == general
    assert _full_parse(lines, fast=True, each=True) == general
    text = [line.decode("utf-8", "replace") for line in lines]  # the live harness feeds str
    assert _full_parse(text, fast=True, each=True) == _full_parse(text, fast=False)
