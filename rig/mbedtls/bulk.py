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
fingerprint has already seen (the regex is rebuilt, after a growing number of fed lines, when a new
file or style appears), has no ANSI escape or
NUL byte, and its message (from where the lexer's prefix ends) is a quiet line of the parser or
starts with none of `=> `, `<= `, `in_left`, `handshake: done`, `timeout` and contains none of
the words `classify` looks for. A record dump's header and first row are skipped together unless the
row shows an alert record.

Lines whose prefix does not start with the file name (an ESP-IDF `I (123) mbedtls: `, a timestamp, a
component tag, or a callback that prints no file:line) are fed until their style has lasted a few
lines; then the style is learned as a pattern (`_Heads`) and its quiet lines are skipped the same
way, the clock moved to the last skipped timestamp.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from rig.mbedtls.events import APPLICATION_DATA_STEPS, STEP_FUNCTIONS
from rig.mbedtls.lexer import (
    KNOWN_MESSAGE_PATTERN,
    PREFIXED_BYTES,
    LogLine,
    from_prefix,
    parse_timestamp,
    split_line,
)
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
_FAST_PREFIX = (
    rb"(?>:\d{1,6}: (?:\|\d\| |\[\d\] |<\d> )?(?:0x[0-9a-fA-F]{1,16}: |[0-9a-fA-F]{8,16}: )?)"
    rb"(?! |\d(?:\]: |  ))"
)
# A file name ends at one of the characters that may follow it in a prefix.
_NAME_END = rb"(?=[:\(,\[ \t\r\f\v])"
# `_BORING` (parser.py) inside a block, then the rest of the line.
_QUIET = b"(?:" + _in_block(BORING_PATTERN.encode()) + rb")[^\n]*"
# A message `classify` returns None for whatever else it holds: no word it reacts to, and none of the
# beginnings it tests (a record dump's first row may carry an alert's bytes).
_WORDLESS = (
    rb"(?!=> |<= |in_left|handshake: done|timeout|client hello, (?:max version|got |total extension)|client hello v3,"
    rb"|server hello, (?:current time|total extension)|candidate certificate"
    rb"|dumping ')"
    rb"(?:[^\n\x1b\x00sracCmbtloi]++|s(?!tate: )|r(?!eturned|ecord: )|a(?!lert)"
    rb"|c(?!lose notify message|iphersuite|eed)|C(?!ertificate verification flags)"
    rb"|m(?!ac does not match|emory)|b(?!ad finished message)|t(?!oo )|l(?!ength|loc)|o(?!verflow)"
    rb"|i(?!pher))*+"
)
# `=> fetch input` printed from ssl_tls.c is evidence for the fingerprint: only elsewhere is it quiet.
_FETCH = rb"=> fetch input[^\n]*"
_FETCH_DONE = rb"<= fetch input[^\n]*"
# The lines of handshake steps (events.STEPS but application data), quiet once state lines show.
_STEP_LINES = (
    rb"(?:=> (?:"
    + b"|".join(
        re.escape(n.encode())
        for n in sorted(STEP_FUNCTIONS, key=len, reverse=True)
        if n not in APPLICATION_DATA_STEPS
    )
    + rb")[ \t\r\f\v]*(?=\n)|client hello, (?:max version|got |total extension)|client hello v3,"
    rb"|server hello, (?:current time|total extension)|trying ciphersuite|ciphersuite requires certificate"
    rb"|candidate certificate chain)[^\n]*"
)
_RECORD_HEADER = rb"dumping '(?:input record header|input record from network|output record sent to network)'"


# A known message (what `split_line` looks for in a line without file:line) and, for such lines, a
# file-like token anywhere (the lexer would take that as the file: the line is fed, not skipped).
_KNOWN = b"(?=" + _in_block(KNOWN_MESSAGE_PATTERN.encode()) + b")"
_NO_FILE = rb"(?![^\n]*\.[ch][:( \t\[,\]])"
_MAX_HEADS = 16  # prefix styles learned per log at most (a log has a handful)
_LEARN_AFTER = 8  # lines of a style fed within _LEARN_WINDOW fed lines before it is learned
_LEARN_WINDOW = 256
_DIGITS = re.compile(rb"\d+")
_REBUILD_MAX = 1024
_STAMP_BYTES = 64  # the longest timestamp a line starts with, and more


@dataclass
class _Heads:
    """The prefix styles learned from a log's lines: what comes before the file:line, or before the
    message when the callback prints no file:line, as patterns (digits and spaces generalised)."""

    file: frozenset[bytes] = frozenset()
    message: frozenset[bytes] = frozenset()
    timed: bool = False  # some style starts with a timestamp (skipped lines move the clock)
    known: re.Pattern[bytes] | None = None  # every style learned, to tell a new one in one match
    changed: bool = False  # learned a style the run pattern does not have yet
    fed: int = 0  # lines fed since the run pattern was built
    rebuild_after: int = 8  # fed lines before the next rebuild (doubling: a log's styles show early)
    candidates: dict[bytes, int] = field(default_factory=dict)  # styles seen lately, by lines
    tries: int = 0

    def learn(self, line: str | bytes, parsed: LogLine) -> bool:
        """Add the style of a line the lexer split; True when it is new (the run pattern changes)."""
        if len(self.file) + len(self.message) >= _MAX_HEADS:
            return False
        raw = line if isinstance(line, bytes) else line.encode()
        head = raw[: parsed.head]
        if self.known is not None and self.known.fullmatch(head):
            return False  # the usual case: a style already learned (of a line that was not skippable)
        if b"\x1b" in raw or b"\x00" in raw or not head.isascii():
            return False
        # Learn a style that lasts (a long log's prefix), not one of a few lines among others: a
        # pattern with more styles is slower on every line.
        key = _DIGITS.sub(b"0", head)
        self.tries += 1
        if self.tries > _LEARN_WINDOW:
            self.tries, self.candidates = 1, {}
        seen = self.candidates.get(key, 0) + 1
        self.candidates[key] = seen
        if seen < _LEARN_AFTER:
            return False
        shape = _shape(head)
        if shape in (self.file if parsed.file is not None else self.message):
            return False
        if parsed.file is not None:
            self.file = self.file | {shape}
        else:
            self.message = self.message | {shape}
        self.timed = self.timed or parsed.host_time is not None
        self.known = re.compile(b"|".join(_longest_first(self.file | self.message)))
        return True


def _longest_first(patterns: frozenset[bytes]) -> list[bytes]:
    """Alternatives in a stable order, the longest first (a longer head is tried before its prefix)."""
    return sorted(patterns, key=lambda pattern: (-len(pattern), pattern))


def _shape(head: bytes) -> bytes:
    """A head as a pattern: digit runs, space runs and lone capitals (a level letter: ESP-IDF's
    `I (123) `, Zephyr's `W: `) generalised, everything else literal.

    None of these can make a file:line or a known message appear where the lexer found none (both
    need lower-case letters and punctuation the pattern keeps), so every line the pattern matches is
    split by the lexer exactly where this one was.
    """
    parts = []
    for token in re.finditer(rb"\d+| +|(?<![A-Za-z])[A-Z](?![A-Za-z])|[^\d ]", head):
        text = token.group()
        if text[:1].isdigit():
            parts.append(rb"\d++")
        elif text[:1] == b" ":
            parts.append(rb" ++")
        elif len(text) == 1 and text.isupper():
            parts.append(b"[A-Z]")
        else:
            parts.append(re.escape(text))
    return b"".join(parts)


@lru_cache(maxsize=128)
def _run_pattern(
    files: frozenset[str],
    heads: frozenset[bytes],
    message_heads: frozenset[bytes],
    fetch_seen: bool,
    quiet_steps: bool,
    quiet_fetch: bool,
) -> re.Pattern[bytes]:
    """A regex matching a run (maybe empty) of skippable lines, each with its `\n`.

    `quiet_steps`/`quiet_fetch`: the parser reads handshake-message lines and `<= fetch input` as
    quiet from now on (LogParser.state_lines, recv_lines), so they are skipped too.
    """

    def prefix(names: list[str]) -> bytes:
        alternatives = b"(?:" + b"|".join(re.escape(n.encode()) for n in names) + b")"
        # Atomic: when the fast prefix matched, the general one would end at the same place.
        return (
            b"(?>" + alternatives + _FAST_PREFIX + b"|(?=" + alternatives + _NAME_END + b")" + _PREFIX + b")"
        )

    head = b"(?:" + b"".join(h + b"|" for h in _longest_first(heads)) + b")"
    names = sorted(files, key=len, reverse=True)
    others = [n for n in names if n != "ssl_tls.c"]
    quiet = _QUIET + b"|" + _WORDLESS + (b"|" + _STEP_LINES if quiet_steps else b"")
    quiet += b"|" + _FETCH_DONE if quiet_fetch else b""
    starts = []  # where the message of a skippable line begins, per kind of line
    lines = []
    if names:
        starts.append(head + prefix(names))
    if others:
        lines.append(head + prefix(others) + b"(?:" + quiet + b"|" + _FETCH + b")")
    if "ssl_tls.c" in files:
        # Its `=> fetch input` is evidence for the fingerprint until the fingerprint has it.
        fetch = b"|" + _FETCH if fetch_seen else b""
        lines.append(head + prefix(["ssl_tls.c"]) + b"(?:" + quiet + fetch + b")")
    if message_heads:
        start = b"(?:" + b"|".join(_longest_first(message_heads)) + b")" + _NO_FILE + _KNOWN
        starts.append(start)
        lines.append(start + b"(?:" + quiet + b"|" + _FETCH + b")")
    if not lines:
        return re.compile(b"")  # no file seen yet: nothing can be skipped
    # A record dump whose first row shows no alert record: its header and that row say nothing.
    any_start = b"(?:" + b"|".join(starts) + b")"
    lines.insert(0, any_start + _RECORD_HEADER + rb"[^\n]*\n" + any_start + rb"0000:  (?!15 )[^\n]*")
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


def _settle_time(parser: LogParser, data: bytes, start: int, end: int) -> None:
    """Move the clock as `feed` would over the skipped lines data[start:end]: to the last timestamp.

    Only lines with a head carry one (`feed` reads no time from a line that starts with the file
    name), and a timestamp match stays inside the head, so the line's start is enough to read it.
    """
    stop = end - 1
    while stop > start:
        begin = data.rfind(b"\n", start, stop) + 1 or start
        line = data[begin:stop]
        if line and PREFIXED_BYTES.match(line) is None:
            stamp = parse_timestamp(line[:_STAMP_BYTES].decode("utf-8", "replace").lstrip())
            if stamp is not None:
                parser.last_time = stamp
                return
        stop = begin - 1


def _settle_pending(parser: LogParser, data: bytes, start: int, end: int) -> None:
    """Leave `_pending` as `feed` would after the skipped lines data[start:end] (their last line)."""
    begin = data.rfind(b"\n", start, end - 1)
    last = data[begin + 1 if begin >= 0 else start : end - 1]
    if not last:
        parser._pending = None  # an empty line (blank)
        return
    prefix = PREFIXED_BYTES.match(last)
    if prefix is None:  # a line with a learned head: the lexer splits it
        parsed = split_line(last)
    else:
        boring = _BORING_BYTES.match(last, prefix.end())
        if boring is not None:
            parser._pending = (
                (last, parser.line_no, parser.last_time) if boring.group(1) is not None else None
            )
            return
        parsed = from_prefix(last, prefix)
    message = parsed.message
    if len(message) > 6 and message[4] == ":" and message[5] == " ":
        parser._pending = None  # what `feed` does with a hex-dump-like row
    else:
        parser._pending = (parsed, parser.line_no, parser.last_time)


def _feed_lines(parser: LogParser, data: bytes, end: int, heads: _Heads) -> None:
    """Feed data[:end], whole lines only (it ends with `\n`), learning the log's prefix styles.

    After a skipped run `_pending` is only settled when the next line may read it: `feed` overwrites
    it unread for a line with the file:line prefix and no ESC or NUL (an Mbed TLS line). A line fed
    that the lexer had to search for its Mbed TLS part teaches its prefix style, and lines of that
    style are skipped from then on like those that start with a file name.
    """
    fingerprint = parser.fingerprint
    feed = parser.feed
    counts = parser.counts
    prefixed = PREFIXED_BYTES.match
    count = data.count
    find = data.find
    files = frozenset(fingerprint.files)
    fetch_seen = fingerprint.fetch_in_ssl_tls
    quiet = (parser.state_lines, parser.recv_lines)
    run = _run_pattern(files, heads.file, heads.message, fetch_seen, *quiet).match
    pos = 0
    dirty = _dirty_line(data, 0, end)
    while pos < end:
        if pos > dirty:
            dirty = _dirty_line(data, pos, end)
        if parser._dump is None:
            matched = run(data, pos, dirty)  # `(?:…)*` always matches, maybe empty
            stop = matched.end() if matched is not None else pos
        else:
            stop = pos  # a record dump's header: its first row (type, length, alert bytes) is read
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
            if heads.timed:
                _settle_time(parser, data, pos, stop)
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
        if parser.split is not None:
            heads.changed |= heads.learn(*parser.split)
            parser.split = None
        heads.fed += 1
        # A pattern that does not know the latest files, styles or quiet lines only skips fewer lines
        # (they are fed): rebuilding it can wait until enough lines were fed to be worth a compile.
        if heads.fed >= heads.rebuild_after and (
            heads.changed
            or len(fingerprint.files) != len(files)
            or fingerprint.fetch_in_ssl_tls != fetch_seen
            or (parser.state_lines, parser.recv_lines) != quiet
        ):
            files = frozenset(fingerprint.files)
            fetch_seen = fingerprint.fetch_in_ssl_tls
            quiet = (parser.state_lines, parser.recv_lines)
            run = _run_pattern(files, heads.file, heads.message, fetch_seen, *quiet).match
            heads.changed, heads.fed = False, 0
            heads.rebuild_after = min(heads.rebuild_after * 2, _REBUILD_MAX)


def feed_blocks(parser: LogParser, blocks: Iterable[bytes]) -> None:
    """Feed a whole log given as consecutive binary blocks; same result as `feed` on every line."""
    pending: list[bytes] = []  # the start of a line not ended yet
    heads = _Heads()
    for block in blocks:
        cut = block.rfind(b"\n") + 1
        if not cut:
            pending.append(block)
            continue
        data = b"".join([*pending, block]) if pending else block
        cut += len(data) - len(block)
        _feed_lines(parser, data, cut, heads)
        pending = [data[cut:]] if cut < len(data) else []
    rest = b"".join(pending)
    if rest:
        parser.feed(rest)
