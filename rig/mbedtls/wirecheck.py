"""Wire against stack: the bytes Mbed TLS read (its level-4 dumps) beside the bytes on the wire.

Pure: it takes the log's lines and the server-to-hub stream as plain bytes (the wire module
reassembles it from a capture; this module never imports it). `input_dumps` collects every
`dumping 'input record from network'` dump in any prefix style the lexer reads; `compare` lays
them end to end, as Mbed TLS read the records in order, and compares each byte with the stream.
`mbedtls_debug_print_buf` prints at most 4096 bytes of a buffer, so a longer record (AWS's first
flight is one 5.4 KB record) is also read from the `remaining content in record` dumps Mbed TLS
prints after each handshake message it parsed: each is the record's tail. A dump whose rows stop
short of its announced size (a UART overrun) is compared as far as it goes; every byte no dump
holds is reported as not compared, with why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rig.mbedtls.events import DUMP_HEADER
from rig.mbedtls.lexer import split_line

_NETWORK: Final = "input record from network"
# The rest of the record being read, after the message just parsed: its last N bytes (Mbed TLS 2.x,
# `mbedtls_ssl_handle_message_type`…). It reaches past the first 4096 bytes of a long record.
_REMAINING: Final = "remaining content in record"
# `mbedtls_debug_print_buf` (debug.c) prints at most this many bytes of any buffer.
DUMP_LIMIT: Final = 4096
_ROW: Final = re.compile(r"^([0-9a-f]{4}):\s+((?:[0-9a-f]{2} ?){1,16})")
# The first state of a client handshake: a log of several boots or reconnects holds several.
_FIRST_STATE: Final = re.compile(r"^client state: (?:0|(?:MBEDTLS_SSL_)?HELLO_REQUEST)\b")


@dataclass
class Dump:
    """One record as Mbed TLS dumped it: announced size and the bytes the log kept."""

    size: int
    data: bytes
    line_no: int
    kind: str = "record"  # "record": a whole record from its header; "remaining": its last `size` bytes

    @property
    def complete(self) -> bool:
        return len(self.data) == self.size


def input_dumps(
    lines: Iterable[str | bytes], *, last_handshake: bool = False, first_line: int = 1
) -> list[Dump]:
    """Every `input record from network` dump of a log, in order, with the rows it kept.

    The `remaining content in record` dumps come with them (kind `remaining`): the tail of the record
    read last, which holds bytes past the first DUMP_LIMIT of a long record. Any other dump's header
    ends the one being read. `last_handshake`: only the dumps after the log's
    last `client state: 0`, the handshake a capture's last connection is (a log that holds the boot
    before the judged one, or a reconnect, holds earlier handshakes too). `first_line`: the number of
    the first of `lines` in the log file they come from (a dump names its header's line).
    """
    dumps: list[Dump] = []
    current: Dump | None = None
    rows = bytearray()

    def close() -> None:
        if current is not None:
            dumps.append(Dump(current.size, bytes(rows[: current.size]), current.line_no, current.kind))

    for no, raw in enumerate(lines, first_line):
        message = split_line(raw).message.strip()
        header = DUMP_HEADER.match(message)
        if header:
            close()
            size = header.group(2)
            kind = {_NETWORK: "record", _REMAINING: "remaining"}.get(header.group(1))
            current = Dump(int(size), b"", no, kind) if kind and size and size != "zu" else None
            rows = bytearray()
            continue
        if last_handshake and _FIRST_STATE.match(message):
            close()
            current, rows = None, bytearray()
            dumps.clear()
            continue
        row = _ROW.match(message)
        if row and current is not None and int(row.group(1), 16) == len(rows):
            rows += bytes.fromhex(row.group(2).replace(" ", ""))
        elif row and current is not None:
            close()  # a gap: rows lost
            current = None
    close()
    return dumps


@dataclass
class Difference:
    """One byte the stack read that is not the byte on the wire at the same stream offset."""

    offset: int  # in the server-to-hub stream
    record: int  # 1-based index of the dump (the record as Mbed TLS read it)
    wire: int
    stack: int
    line_no: int = 0  # the dump's header line in the log

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "record": self.record,
            "wire": f"{self.wire:02x}",
            "stack": f"{self.stack:02x}",
            "line_no": self.line_no,
        }


@dataclass
class Comparison:
    """What the byte-by-byte comparison found: bytes compared, the differences, what it could not compare."""

    compared: int = 0
    differences: list[Difference] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)
    records: int = 0  # dumps compared (fully or in part)
    stream_end: int = 0  # stream offset after the last record compared

    def summary(self) -> str:
        if self.differences:
            d = self.differences[0]
            text = (
                f"{len(self.differences)} of {self.compared} compared bytes differ between wire and stack; first "
                f"at stream offset {d.offset} (record {d.record}): wire {d.wire:02x}, stack read {d.stack:02x}"
            )
        elif self.compared:
            text = f"all {self.compared} compared bytes equal"
        else:
            text = "no byte compared"
        return text + ("; " + "; ".join(self.not_compared) if self.not_compared else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "records": self.records,
            "stream_end": self.stream_end,
            "differences": [d.to_json() for d in self.differences],
            "not_compared": list(self.not_compared),
            "summary": self.summary(),
        }


def compare(dumps: list[Dump], stream: bytes, holes: Sequence[tuple[int, int]] = ()) -> Comparison:
    """Compare the dumps with the stream's bytes: records end to end from offset 0, each with its tails.

    A record's `remaining content` dumps end where the record ends; they are compared while the server's
    records are plaintext (before its ChangeCipherSpec: after it, what remains is decrypted content).
    Every stream byte a dump holds is compared once; the bytes of a record no dump holds are said,
    with why (the library's dump limit, or rows lost on the UART). `holes`: [start, end) ranges of the
    stream the capture lacks (their bytes read as zeros): not compared, and said so.
    """
    result = Comparison()
    records: list[tuple[Dump, list[Dump]]] = []
    for dump in dumps:
        if dump.kind == "record":
            records.append((dump, []))
        elif records:
            records[-1][1].append(dump)
    offset = 0
    protected = False  # the server's ChangeCipherSpec was read: its later records are encrypted
    found: dict[int, Difference] = {}
    for index, (record, tails) in enumerate(records, 1):
        if offset + len(record.data) > len(stream):
            rest = len(records) - index + 1
            result.not_compared.append(
                f"records {index}-{len(records)} ({rest} records): the capture ends at stream offset "
                f"{len(stream)}, before the bytes the stack read"
            )
            break
        end = offset + record.size
        pieces = [(offset, record)] + ([] if protected else [(end - t.size, t) for t in tails])
        covered: set[int] = set()
        lost: set[int] = set()
        for start, piece in pieces:
            for i, byte in enumerate(piece.data):
                at = start + i
                if at >= len(stream) or at < offset:
                    break
                if any(a <= at < b for a, b in holes):
                    lost.add(at)
                    continue
                covered.add(at)
                if stream[at] != byte and at not in found:
                    found[at] = Difference(at, index, stream[at], byte, piece.line_no)
        result.compared += len(covered)
        if lost:
            result.not_compared.append(
                f"record {index} (log line {record.line_no}): {len(lost)} bytes lie in holes of the capture"
            )
        missing = [at for at in range(offset, min(end, len(stream))) if at not in covered and at not in lost]
        if missing:
            result.not_compared.append(_uncovered(index, record, missing, tails))
        if record.data[:1] == b"\x14":
            protected = True
        offset = end
        result.records, result.stream_end = index, offset
    result.differences = [found[at] for at in sorted(found)]
    return result


def _uncovered(index: int, record: Dump, missing: list[int], tails: list[Dump]) -> str:
    """Why bytes of a record are in no dump: the library's limit, or rows lost (a UART overrun)."""
    ranges: list[list[int]] = []
    for at in missing:
        if ranges and ranges[-1][1] == at - 1:
            ranges[-1][1] = at
        else:
            ranges.append([at, at])
    where = ", ".join(f"{a}–{b}" if a != b else str(a) for a, b in ranges)
    limited = len(record.data) == DUMP_LIMIT and all(len(t.data) in (t.size, DUMP_LIMIT) for t in tails)
    if limited:
        why = f"Mbed TLS dumps at most {DUMP_LIMIT} bytes of a buffer (debug.c)"
    elif not tails:
        return (
            f"record {index} (log line {record.line_no}): dump incomplete, {len(missing)} of {record.size} "
            "bytes not in the log (UART overrun?)"
        )
    else:
        why = "rows of its dumps are not in the log (UART overrun?)"
    return f"record {index} (log line {record.line_no}): stream bytes {where} ({len(missing)} bytes) in no dump — {why}"
