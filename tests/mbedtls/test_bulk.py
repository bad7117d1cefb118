"""The bulk reader of whole files (`feed_blocks`) gives exactly what feeding every line gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.cli.logs import parse_log
from rig.mbedtls import Event, LogParser, diagnose_parser
from rig.mbedtls.bulk import feed_blocks
from tests.mbedtls.conftest import LOGS
from tests.mbedtls.real_logs import CORPUS

# The project's own logs and the public corpus (every prefix style the posts show).
LOG_FILES = sorted(LOGS.glob("*.log")) + sorted(CORPUS.glob("*.log"))
LOG_BYTES = {path.name: path.read_bytes() for path in LOG_FILES}


def _state(parser: LogParser) -> tuple[object, ...]:
    events = [e.to_json() for trace in parser.attempts for e in trace.events]
    states = [(v.number, v.name, v.line_no) for trace in parser.attempts for v in trace.states]
    return (
        diagnose_parser(parser).to_json(),
        diagnose_parser(parser, now=1e12, stall_after=5.0).to_json(),
        dict(parser.counts),
        parser.line_no,
        parser.last_time,
        parser.version,
        sorted(parser.fingerprint.files),
        events,
        states,
    )


def _line_by_line(data: bytes) -> LogParser:
    parser = LogParser()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    for line in lines:
        parser.feed(line)
    return parser


def _bulk(data: bytes, block: int) -> LogParser:
    parser = LogParser()
    feed_blocks(parser, (data[i : i + block] for i in range(0, len(data), block)))
    return parser


@pytest.mark.parametrize("path", LOG_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("block", [1 << 22, 4096, 97])
def test_every_test_log_gives_the_same_diagnosis_and_trace_in_bulk_as_line_by_line(
    path: Path, block: int
) -> None:
    data = LOG_BYTES[path.name]
    assert _state(_bulk(data, block)) == _state(_line_by_line(data))


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8, 0.95])
def test_hard_wrapped_messages_are_joined_the_same_way_in_bulk(fraction: float) -> None:
    lines = LOG_BYTES["mbedtls-2.28-stall-ticket-level2.log"].splitlines()
    wrapped = [
        part
        for line in lines
        for part in (line[: int(len(line) * fraction)], line[int(len(line) * fraction) :])
    ]
    data = b"\n".join(wrapped) + b"\n"
    assert _state(_bulk(data, 1 << 22)) == _state(_line_by_line(data))


@pytest.mark.parametrize("block", [1 << 22, 97])
@pytest.mark.parametrize("blanks", [b"", b"\n", b"\r", b" "])
def test_blank_lines_after_each_entry_are_counted_the_same_way_in_bulk(block: int, blanks: bytes) -> None:
    lines = LOG_BYTES["mbedtls-2.28-complete-level4.log"].splitlines()
    data = b"\n" + b"".join(line + b"\n" + blanks + b"\n" for line in lines)
    bulk = _bulk(data, block)
    assert bulk.counts["blank"] == len(lines) * (2 if blanks == b"\n" else 1) + 1
    assert _state(bulk) == _state(_line_by_line(data))


def test_a_216_log_with_fetch_input_in_ssl_tls_c_is_fingerprinted_the_same_way_in_bulk() -> None:
    data = LOG_BYTES["mbedtls-2.28-complete-level4.log"].replace(b"ssl_msg.c", b"ssl_tls.c")
    bulk = _bulk(data, 1 << 22)
    assert bulk.version == "2.16"
    assert _state(bulk) == _state(_line_by_line(data))


def test_rig_diagnose_reads_a_log_the_same_way_as_the_line_by_line_parser() -> None:
    path = LOGS / "mbedtls-2.28-complete-level4.log"
    assert _state(parse_log(path)) == _state(_line_by_line(path.read_bytes()))


_GARBAGE = st.sampled_from(
    [
        b"",
        b"\x1b[31m",
        b"\x00",
        b"\xff\xfe",
        b"\r",
        b"  ",
        b"\t",
        b"0000:  ",
        b"=> ",
        b"returned -5",
        b"state: ",
    ]
)
_EDIT = st.sampled_from(["drop", "wrap", "garble", "stamp", "blank", "app", "newfile", "double", "spaces"])


def _edited(lines: list[bytes], edits: list[tuple[int, str, bytes, int]]) -> list[bytes]:
    out = list(lines)
    for index, edit, blob, cut in sorted(edits, reverse=True):
        if index >= len(out):
            continue
        line = out[index]
        at = cut % (len(line) + 1)
        if edit == "drop":
            del out[index]
        elif edit == "wrap":
            out[index : index + 1] = [line[:at], line[at:]]
        elif edit == "garble":
            out[index] = line[:at] + blob + line[at:]
        elif edit == "stamp":
            out[index] = b"06/04 07:51:%02d.%03d " % (cut % 60, cut % 1000) + line
        elif edit == "blank":
            out.insert(index, blob if not blob.strip() else b"")
        elif edit == "app":
            out.insert(index, b"[APP] mbed TLS 3.6.0 " + blob)
        elif edit == "newfile":
            out[index] = line.replace(b"ssl_msg.c", b"ssl_tls13_client.c").replace(b"ssl_cli.c", b"x.c")
        elif edit == "double":
            out.insert(index, line)
        elif edit == "spaces":
            out[index] = line.replace(b": ", b":  ", 1 + cut % 3)
    return out


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(sorted(LOG_BYTES)),
    edits=st.lists(
        st.tuples(st.integers(0, 900), _EDIT, _GARBAGE, st.integers(0, 200)),
        max_size=30,
    ),
    block=st.integers(1, 5000),
    trailing_newline=st.booleans(),
)
def test_edited_logs_give_the_same_result_in_bulk_as_line_by_line(
    name: str, edits: list[tuple[int, str, bytes, int]], block: int, trailing_newline: bool
) -> None:
    lines = _edited(LOG_BYTES[name].splitlines(), edits)
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    assert _state(_bulk(data, block)) == _state(_line_by_line(data))


@settings(max_examples=80, deadline=None)
@given(
    data=st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.sampled_from(LOG_BYTES["mbedtls-2.28-complete-level4.log"].splitlines()),
            st.sampled_from(LOG_BYTES["incident-bad.log"].splitlines()),
        ),
        max_size=60,
    ).map(b"\n".join),
    block=st.integers(1, 300),
)
def test_arbitrary_bytes_give_the_same_result_in_bulk_as_line_by_line(data: bytes, block: int) -> None:
    assert _state(_bulk(data, block)) == _state(_line_by_line(data))


def _esp_idf_style(data: bytes) -> bytes:
    """The level-4 log as ESP-IDF prints it: `I (ms) mbedtls: file:line message`, a blank line after each."""
    out = []
    for number, line in enumerate(data.splitlines()):
        m = re.match(rb"(ssl_\w+\.c):(\d+): \|(\d)\| 0x[0-9a-f]+: (.*)", line)
        if m:
            level = b"IDVV"[int(m.group(3)) - 1 : int(m.group(3))]
            line = b"%s (%d) mbedtls: %s:%s %s" % (
                level,
                1000 + 3 * number,
                m.group(1),
                m.group(2),
                m.group(4),
            )
        out += [line, b""]
    return b"\n".join(out * 3) + b"\n"


class _CountingParser(LogParser):
    fed = 0

    def feed(self, line: str | bytes, host_time: float | None = None) -> list[Event]:
        self.fed += 1
        return super().feed(line, host_time)


def test_a_prefix_style_the_log_keeps_is_learned_and_skipped_like_a_bare_file_name() -> None:
    data = _esp_idf_style(LOG_BYTES["mbedtls-2.28-complete-level4.log"])
    bulk = _CountingParser()
    feed_blocks(bulk, [data])
    assert _state(bulk) == _state(_line_by_line(data))
    assert bulk.fed < bulk.counts["lines"] / 5  # most lines never reach `feed`: the style was learned
