"""Wire against stack: the bytes Mbed TLS read (its level-4 dumps) beside the bytes on the wire.

Pure: it takes the log's lines and the server-to-hub stream as plain bytes (the wire module
reassembles it from a capture; this module never imports it). `input_dumps` collects every
`dumping 'input record from network'` dump in any prefix style the lexer reads; `compare` lays
them end to end, as Mbed TLS read the records in order, and compares each byte with the stream.
A dump whose rows stop short of its announced size (a UART overrun) is compared as far as it goes
and the rest is reported as not compared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rig.mbedtls.events import DUMP_HEADER
from rig.mbedtls.lexer import split_line

_NETWORK: Final = "input record from network"
_ROW: Final = re.compile(r"^([0-9a-f]{4}):\s+((?:[0-9a-f]{2} ?){1,16})")
# The first state of a client handshake: a log of several boots or reconnects holds several.
_FIRST_STATE: Final = re.compile(r"^client state: (?:0|(?:MBEDTLS_SSL_)?HELLO_REQUEST)\b")


@dataclass
class Dump:
    """One record as Mbed TLS dumped it: announced size and the bytes the log kept."""

    size: int
    data: bytes
    line_no: int

    @property
    def complete(self) -> bool:
        return len(self.data) == self.size


def input_dumps(lines: Iterable[str | bytes], *, last_handshake: bool = False) -> list[Dump]:
    """Every `input record from network` dump of a log, in order, with the rows it kept.

    Any other dump's header ends the one being read. `last_handshake`: only the dumps after the log's
    last `client state: 0`, the handshake a capture's last connection is (a log that holds the boot
    before the judged one, or a reconnect, holds earlier handshakes too).
    """
    dumps: list[Dump] = []
    current: Dump | None = None
    rows = bytearray()

    def close() -> None:
        if current is not None:
            dumps.append(Dump(current.size, bytes(rows[: current.size]), current.line_no))

    for no, raw in enumerate(lines, 1):
        message = split_line(raw).message.strip()
        header = DUMP_HEADER.match(message)
        if header:
            close()
            size = header.group(2)
            current = (
                Dump(int(size), b"", no) if header.group(1) == _NETWORK and size != "zu" and size else None
            )
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
    """Compare the dumps, laid end to end from offset 0, with the stream's bytes.

    `holes`: [start, end) ranges of the stream the capture lacks (their bytes read as zeros); the
    stack's bytes there are not compared, and said so.
    """
    result = Comparison()
    offset = 0
    for index, dump in enumerate(dumps, 1):
        if offset + len(dump.data) > len(stream):
            rest = len(dumps) - index + 1
            result.not_compared.append(
                f"records {index}-{len(dumps)} ({rest} records): the capture ends at stream offset "
                f"{len(stream)}, before the bytes the stack read"
            )
            return result
        lost = 0
        for i, byte in enumerate(dump.data):
            at = offset + i
            if any(start <= at < end for start, end in holes):
                lost += 1
                continue
            result.compared += 1
            if stream[at] != byte:
                result.differences.append(Difference(at, index, stream[at], byte, dump.line_no))
        if lost:
            result.not_compared.append(
                f"record {index} (log line {dump.line_no}): {lost} bytes lie in holes of the capture"
            )
        if not dump.complete:
            result.not_compared.append(
                f"record {index} (log line {dump.line_no}): dump incomplete, {dump.size - len(dump.data)} "
                f"of {dump.size} bytes not in the log (UART overrun?)"
            )
        offset += dump.size
        result.records, result.stream_end = index, offset
    return result
