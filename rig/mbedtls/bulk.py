"""Whole-file parsing at C speed: skip, in bulk, the lines that cannot change the diagnosis.

`feed_blocks(parser, blocks)` gives a `LogParser` a whole log as binary blocks (a file read in
large pieces) with exactly the result of feeding it line by line (`LogParser.feed` on each piece
of `data.split(b"\\n")`, a final empty piece dropped). Most of a verbose log is lines that only
count: hex-dump rows, `dumping '…'` headers, `=>`/`<=` traces of functions the trace does not
follow, and messages holding none of the words `classify` (events.py) reacts to. One compiled
bytes regex consumes runs of such lines in C; `bytes.count` numbers them; only the last line of a
run is looked at in Python (a hard-wrapped message may continue after it). Every other line (a
state, a read, a record, an error, an application line, garbage) goes through `LogParser.feed`,
the same per-line code as the live path.

A skipped line is an empty line not followed by another (a blank), or one `feed` would treat as
an Mbed TLS line with no event: it starts with the `file.c:N:` prefix of a source file the version
fingerprint has already seen (the regex is rebuilt when a new file appears), has no ANSI escape or
NUL byte, and its message (from where the lexer's prefix ends) is a quiet line of the parser or
starts with none of `=> `, `<= `, `in_left`, `handshake: done`, `timeout` and contains none of
the words `classify` looks for. Lines with a timestamp before the prefix are all fed one by one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from rig.mbedtls.lexer import PREFIXED_BYTES, from_prefix
from rig.mbedtls.parser import BORING_PATTERN, LogParser

_BORING_BYTES = re.compile(BORING_PATTERN.encode())

# Inside a block a line's `\s` is any whitespace but `\n`, and its end (`$`) is the next `\n`.
_SPACE = rb"[ \t\r\f\v]"


def _in_block(pattern: bytes) -> bytes:
    return pattern.replace(rb"\s", _SPACE).replace(b"$", rb"(?=\n)")


# The lexer's own prefix, atomic: the message starts exactly where `feed` finds it.
_PREFIX = b"(?>" + _in_block(PREFIXED_BYTES.pattern) + b")"
# The usual prefix `file.c:N: |L| 0xPTR: ` with literals and few classes (much faster): when no
# space follows it, it ends where the lexer's prefix ends; otherwise the general one decides.
_FAST_PREFIX = rb"(?>:\d{1,6}: (?:\|\d\| |\[\d\] |<\d> )?(?:0x[0-9a-fA-F]{1,16}: |[0-9a-fA-F]{8,16}: )?)(?! )"
# A file name ends at one of the characters that may follow it in a prefix.
_NAME_END = rb"(?=[:\(,\[ \t\r\f\v])"
# `_BORING` (parser.py) inside a block, then the rest of the line.
_QUIET = b"(?:" + _in_block(BORING_PATTERN.encode()) + rb")[^\n]*"
# A message `classify` returns None for whatever else it holds: no word it reacts to, and none of the
# beginnings it tests (a record dump's first row may carry an alert's bytes).
_WORDLESS = (
    rb"(?!=> |<= |in_left|handshake: done|timeout|client hello|server hello|candidate certificate"
    rb"|dumping '|0000:  )"
    rb"(?:[^\n\x1b\x00sracCmbtloi]++|s(?!tate: )|r(?!eturned|ecord: )|a(?!lert)"
    rb"|c(?!lose notify message|iphersuite|eed)|C(?!ertificate verification flags)"
    rb"|m(?!ac does not match|emory)|b(?!ad finished message)|t(?!oo )|l(?!ength|loc)|o(?!verflow)"
    rb"|i(?!pher))*+"
)
# `=> fetch input` printed from ssl_tls.c is evidence for the fingerprint: only elsewhere is it quiet.
_FETCH = rb"=> fetch input[^\n]*"


@lru_cache(maxsize=32)
def _run_pattern(files: frozenset[str]) -> re.Pattern[bytes]:
    """A regex matching a run (maybe empty) of skippable lines, each with its `\\n`."""

    def prefix(names: list[str]) -> bytes:
        alternatives = b"(?:" + b"|".join(re.escape(n.encode()) for n in names) + b")"
        # Atomic: when the fast prefix matched, the general one would end at the same place.
        return (
            b"(?>" + alternatives + _FAST_PREFIX + b"|(?=" + alternatives + _NAME_END + b")" + _PREFIX + b")"
        )

    names = sorted(files, key=len, reverse=True)
    others = [n for n in names if n != "ssl_tls.c"]
    lines = []
    if others:
        lines.append(prefix(others) + b"(?:" + _QUIET + b"|" + _WORDLESS + b"|" + _FETCH + b")")
    if "ssl_tls.c" in files:
        lines.append(prefix(["ssl_tls.c"]) + b"(?:" + _QUIET + b"|" + _WORDLESS + b")")
    if not lines:
        return re.compile(b"")  # no file seen yet: nothing can be skipped
    # No capturing groups and possessive repeats: no state to keep per line (a quarter faster).
    # An empty line (blank) is skipped too when the next line is not empty: then `\n\n` counts them.
    pattern = b"(?:(?:" + b"|".join(lines) + b")\n|\n(?!\n))*+"
    pattern = re.sub(rb"(?<!\\)\((?!\?)", b"(?:", pattern).replace(rb"[^\n]*", rb"[^\n]*+")
    compiled = re.compile(pattern)
    assert compiled.groups == 0
    return compiled


def _dirty_line(data: bytes, start: int, end: int) -> int:
    """Where the first line at or after `start` holding an ESC or NUL byte begins (`end` if none)."""
    esc = data.find(b"\x1b", start, end)
    nul = data.find(b"\x00", start, end)
    hits = [i for i in (esc, nul) if i >= 0]
    if not hits:
        return end
    return data.rfind(b"\n", start, min(hits)) + 1 if min(hits) > start else start


def _settle_pending(parser: LogParser, data: bytes, start: int, end: int) -> None:
    """Leave `_pending` as `feed` would after the skipped lines data[start:end] (their last line)."""
    begin = data.rfind(b"\n", start, end - 1)
    last = data[begin + 1 if begin >= 0 else start : end - 1]
    if not last:
        parser._pending = None  # an empty line (blank)
        return
    prefix = PREFIXED_BYTES.match(last)
    if prefix is None:  # cannot happen (the run regex matched this very prefix); a join splits it then
        parser._pending = (last, parser.line_no, parser.last_time)
        return
    boring = _BORING_BYTES.match(last, prefix.end())
    if boring is not None:
        parser._pending = (last, parser.line_no, parser.last_time) if boring.group(1) is not None else None
        return
    parsed = from_prefix(last, prefix)
    message = parsed.message
    if len(message) > 6 and message[4] == ":" and message[5] == " ":
        parser._pending = None  # what `feed` does with a hex-dump-like row
    else:
        parser._pending = (parsed, parser.line_no, parser.last_time)


def _feed_lines(parser: LogParser, data: bytes, end: int) -> None:
    """Feed data[:end], whole lines only (it ends with `\\n`).

    After a skipped run `_pending` is only settled when the next line may read it: `feed` overwrites
    it unread for a line with the file:line prefix and no ESC or NUL (an Mbed TLS line).
    """
    fingerprint = parser.fingerprint
    feed = parser.feed
    counts = parser.counts
    prefixed = PREFIXED_BYTES.match
    count = data.count
    find = data.find
    files = frozenset(fingerprint.files)
    run = _run_pattern(files).match
    pos = 0
    dirty = _dirty_line(data, 0, end)
    while pos < end:
        if pos > dirty:
            dirty = _dirty_line(data, pos, end)
        matched = run(data, pos, dirty)  # `(?:…)*` always matches, maybe empty
        stop = matched.end() if matched is not None else pos
        newline = find(b"\n", stop, end)
        if stop > pos:
            parser._dump = None  # a skipped line ends any record dump's header
            n = count(b"\n", pos, stop)
            # data[pos - 1] ends the line before: each `\n\n` is an empty line (never two in a row).
            blank = count(b"\n\n", pos - 1, stop) if pos else count(b"\n\n", 0, stop) + (data[0] == 10)
            parser.line_no += n
            counts["lines"] += n
            counts["mbedtls"] += n - blank
            counts["blank"] += blank
            if newline < 0:
                _settle_pending(parser, data, pos, stop)
                return
            line = data[stop:newline]
            if stop == dirty or prefixed(line) is None:
                _settle_pending(parser, data, pos, stop)
        else:
            line = data[pos:newline]
        feed(line)
        pos = newline + 1
        if len(fingerprint.files) != len(files):
            files = frozenset(fingerprint.files)
            run = _run_pattern(files).match


def feed_blocks(parser: LogParser, blocks: Iterable[bytes]) -> None:
    """Feed a whole log given as consecutive binary blocks; same result as `feed` on every line."""
    pending: list[bytes] = []  # the start of a line not ended yet
    for block in blocks:
        cut = block.rfind(b"\n") + 1
        if not cut:
            pending.append(block)
            continue
        data = b"".join([*pending, block]) if pending else block
        cut += len(data) - len(block)
        _feed_lines(parser, data, cut)
        pending = [data[cut:]] if cut < len(data) else []
    rest = b"".join(pending)
    if rest:
        parser.feed(rest)
