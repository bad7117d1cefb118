"""Find the Mbed TLS message inside whatever the application's debug callback put around it.

The library hands its callback only (level, file, line, text); the prefix is the application's
choice: timestamps, levels as digits/letters/words, component tags, ANSI colours, context pointers
(`0x7ffd1234: `, added by the library itself with MBEDTLS_THREADING_C), `|2|`, zero-padded,
bracketed or space-separated line numbers, full/relative/Windows paths, or no file:line at all.
`split_line` turns one physical line into a `LogLine`: which kind of line it is, the source file and
line when present, the bare message, and the host time when the line starts with a timestamp.
Everything here is a pure function of one line; joining hard-wrapped lines is the parser's job.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final, Literal, NamedTuple

LineKind = Literal["mbedtls", "app", "blank", "unknown"]

_ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")

# `ssl_tls.c:2760:`, `ssl_tls.c:0774`, `ssl_tls.c: 2760`, `ssl_tls.c:[2760]`, `ssl_tls.c(2760):`,
# `ssl_tls.c 2760:`, `ssl_tls.c, line 2760`, `ssl_tls.c::6484` (ESP-IDF 2.x), `ssl_tls.c]:[2640]:`
# (Aliyun IoT kit); the basename is what is kept.
_FILE_LINE: Final = re.compile(
    r"([A-Za-z_][\w.+-]*\.[ch])(?::\s*\[?|::|\]:\[|\(|\s+|,\s*line\s+|\s*\[)(\d{1,6})\]?\)?(?::|\s|$)"
)
# After the file:line: an optional level `|2|` / `[2]` / `<2>` / `2]: ` (OpenVPN 3) / `2  ` (ESP-IDF
# 2.x), and the context pointer.
_AFTER_FILE: Final = re.compile(
    r" *(?:\|(\d)\| *|\[(\d)\] +|<(\d)> +|(\d)(?:\]: +|  +))?(?:0x[0-9a-fA-F]{1,16}: +|[0-9a-fA-F]{8,16}: +)?"
)
# Message-only callbacks: where a known Mbed TLS message begins.
_KNOWN_MESSAGE: Final = re.compile(
    r"(?:=>|<=) (?:handshake|fetch input|flush output|read record|write record|parse|write|send|"
    r"decrypt|encrypt|calc|derive|ssl_)|"
    r"(?:tls13 )?(?:client|server) state: |handshake state: \d|handshake: done|"
    r"ssl->f_(?:recv|send)|in_left: |(?:input|output) record: |got an alert message|"
    r"is a (?:fatal alert|close notify) message|send alert level=|"
    r"\(\w*\)(?:\(\w*\))? returned -?\d|! Certificate verification flags|"
    r"Certificate verification flags clear|bad (?:message length|finished message)|"
    r"message mac does not match|got (?:no )?ciphersuites in common|"
    r"(?:server hello|client hello), |dumping '|0000:  [0-9a-f]{2} "
)
# A leading timestamp, possibly after a serial terminal's `[`, `<` or `【`. Besides dates and times
# of day: `Wed May 31 15:18:16.475 2017` / `[Nov 18 08:19:52.929]` (syslog style), ESP-IDF's
# `I (12345)` milliseconds or `I (12:30:14.197)` wall clock, FreeRTOS logging's `955 80413 [task]`
# (line count, then ticks), MediaTek's `[T: 3871 M: …]` and Arduino-ESP32's `[  3340][V]` milliseconds.
_TIMESTAMP: Final = re.compile(
    r"[\[<(【]?\s*(?:"
    r"(?P<y>\d{4})[-/](?P<mo>\d\d)[-/](?P<d>\d\d)[ T](?P<H>\d\d):(?P<M>\d\d):(?P<S>\d\d)(?:[.,:](?P<f>\d{1,9}))?"
    r"|(?P<mo2>\d\d)/(?P<d2>\d\d) (?P<H2>\d\d):(?P<M2>\d\d):(?P<S2>\d\d)(?:[.,](?P<f2>\d{1,9}))?"
    r"|(?P<H3>\d\d):(?P<M3>\d\d):(?P<S3>\d\d)(?:[.,](?P<f3>\d{1,9}))?"
    r"|(?P<rel>\d{1,9}\.\d{3,9})(?=[\]>)\s])"
    r"|[IWEDV] \((?:(?P<ms>\d{1,12})|(?P<H4>\d\d):(?P<M4>\d\d):(?P<S4>\d\d)[.,](?P<f4>\d{1,9}))\)"
    r"|(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) )?(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +"
    r"(?P<d5>\d{1,2}) (?P<H5>\d\d):(?P<M5>\d\d):(?P<S5>\d\d)(?:[.,](?P<f5>\d{1,9}))?"
    r"|\d{1,9} (?P<tick>\d{1,12}) (?=\[)"
    r"|T: (?P<mtk>\d{1,12}) "
    r"|(?P<ard>\d{1,12})\]\[[VDIWEN]\]"
    r")"
)
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Lines that an application prints: a timestamp, a `[TAG]`, `I (123) tag:`, `<info>`, `APP:`.
_APP_HINT: Final = re.compile(r"\s*(?:\[[\w .:-]{1,24}\]|<\w{1,10}>|[A-Z][A-Za-z0-9_]{1,15}:\s|#|//)")

_YEAR_FOR_DAY_MONTH: Final = 2000  # `06/04 07:51:41.888` has no year: any fixed year keeps deltas right


class LogLine(NamedTuple):
    """One physical line, classified: `message` is the Mbed TLS text without any prefix."""

    kind: LineKind
    message: str = ""
    file: str | None = None
    source_line: int | None = None
    level: int | None = None
    host_time: float | None = None
    head: int = 0  # where the Mbed TLS part starts in the cleaned line (the prefix's length)


def _fraction(digits: str | None) -> float:
    return int(digits) / 10 ** len(digits) if digits else 0.0


def parse_timestamp(text: str) -> float | None:
    """Seconds of the timestamp at the start of `text`, or None.

    Full dates give POSIX time (UTC); dates without a year use a fixed year; a bare time of day
    gives seconds since midnight; `[  12.345678]`, ESP-IDF `I (12345)`, FreeRTOS ticks (taken as the
    usual 1 ms) and the other millisecond counters give seconds since boot. Only differences between
    timestamps of one log are meaningful.
    """
    m = _TIMESTAMP.match(text)
    if m is None:
        return None
    g = m.groupdict()
    # Dates: (year, month, day, hours, minutes, seconds, fraction) of whichever style matched.
    date: tuple[int, int, str, str, str, str, str | None] | None = None
    if g["y"]:
        date = (int(g["y"]), int(g["mo"]), g["d"], g["H"], g["M"], g["S"], g["f"])
    elif g["mo2"]:
        date = (_YEAR_FOR_DAY_MONTH, int(g["mo2"]), g["d2"], g["H2"], g["M2"], g["S2"], g["f2"])
    elif g["mon"]:
        month = _MONTHS.index(g["mon"]) + 1
        date = (_YEAR_FOR_DAY_MONTH, month, g["d5"], g["H5"], g["M5"], g["S5"], g["f5"])
    if date is not None:
        year, month, day, hh, mm, ss, fraction = date
        try:
            stamp = datetime(year, month, int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
        except ValueError:  # 13th month, 61st second: not a timestamp after all
            return None
        return stamp.timestamp() + _fraction(fraction)
    for hours_key, minutes_key, seconds_key, fraction_key in (
        ("H3", "M3", "S3", "f3"),
        ("H4", "M4", "S4", "f4"),
    ):
        if g[hours_key]:
            hours, minutes, seconds = int(g[hours_key]), int(g[minutes_key]), int(g[seconds_key])
            if hours > 23 or minutes > 59 or seconds > 60:
                return None
            return hours * 3600 + minutes * 60 + seconds + _fraction(g[fraction_key])
    if g["rel"]:
        return float(g["rel"])
    milliseconds = g["ms"] or g["tick"] or g["mtk"] or g["ard"]
    return int(milliseconds) / 1000.0


def clean(raw: str | bytes) -> str:
    """Decode (undecodable bytes become U+FFFD), drop the line end, ANSI colours and NULs."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.rstrip("\r\n")
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


# The patterns `split_line` searches, for the bulk reader's learned prefixes (bulk.py).
FILE_LINE_PATTERN: Final = _FILE_LINE.pattern
KNOWN_MESSAGE_PATTERN: Final = _KNOWN_MESSAGE.pattern

# A line that starts with the file:line (no timestamp before it): what `split_line` finds at 0.
PREFIXED_TEXT: Final = re.compile(_FILE_LINE.pattern + _AFTER_FILE.pattern)
PREFIXED_BYTES: Final = re.compile((_FILE_LINE.pattern + _AFTER_FILE.pattern).encode())


def from_prefix(raw: str | bytes, m: re.Match[str] | re.Match[bytes]) -> LogLine:
    """The LogLine of a line PREFIXED_* matched (without ANSI codes or NULs): as `split_line` makes it."""
    tail = raw[m.end() :]
    message = (tail.decode("utf-8", "replace") if isinstance(tail, bytes) else tail).rstrip()
    name, number = m.group(1), m.group(2)
    digits = m.group(3) or m.group(4) or m.group(5) or m.group(6)
    return LogLine(
        "mbedtls",
        message,
        name.decode() if isinstance(name, bytes) else name,
        int(number),
        int(digits) if digits else None,
        None,
    )


def split_line(raw: str | bytes) -> LogLine:
    """Classify one physical line and extract its Mbed TLS message, source location and time."""
    text = clean(raw)
    if not text.strip():
        return LogLine("blank")
    m = _FILE_LINE.search(text) if ".c" in text or ".h" in text else None  # most application lines: no
    if m is not None:
        head = text[: m.start()]
        after = _AFTER_FILE.match(text, m.end())
        level: int | None = None
        start = m.end()
        if after is not None:
            start = after.end()
            digits = after.group(1) or after.group(2) or after.group(3) or after.group(4)
            level = int(digits) if digits else None
        return LogLine(
            "mbedtls",
            text[start:].rstrip(),
            m.group(1),
            int(m.group(2)),
            level,
            parse_timestamp(head.lstrip()) if head else None,
            m.start(),
        )
    k = _KNOWN_MESSAGE.search(text)
    if k is not None:
        begin = k.start()
        if text[begin] == "(":  # `func() returned`: the message starts at the function's name
            while begin > 0 and (text[begin - 1].isalnum() or text[begin - 1] in "_>-."):
                begin -= 1
        head = text[:begin]
        return LogLine(
            "mbedtls",
            text[begin:].rstrip(),
            host_time=parse_timestamp(head.lstrip()) if head else None,
            head=begin,
        )
    stamp = parse_timestamp(text.lstrip())
    if stamp is not None or _APP_HINT.match(text):
        return LogLine("app", text, host_time=stamp)
    return LogLine("unknown", text)
