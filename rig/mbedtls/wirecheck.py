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
from collections.abc import Iterable
from dataclasses import dataclass, field

from rig.mbedtls.lexer import split_line

_HEADER = re.compile(r"dumping '(input record from network|input record after decrypt)' \((\d+) bytes\)")
_ROW = re.compile(r"^([0-9a-f]{4}):\s+((?:[0-9a-f]{2} ?){1,16})")


@dataclass
class Dump:
    """One record as Mbed TLS dumped it: announced size and the bytes the log kept."""

    size: int
    data: bytes
    line_no: int

    @property
    def complete(self) -> bool:
        return len(self.data) == self.size


def input_dumps(lines: Iterable[str | bytes]) -> list[Dump]:
    """Every `input record from network` dump of a log, in order, with the rows it kept."""
    dumps: list[Dump] = []
    current: Dump | None = None
    rows = bytearray()
    for no, raw in enumerate(lines, 1):
        message = split_line(raw).message.strip()
        header = _HEADER.search(message)
        if header:
            if current is not None:
                dumps.append(Dump(current.size, bytes(rows), current.line_no))
            current = Dump(int(header.group(2)), b"", no) if header.group(1).endswith("network") else None
            rows = bytearray()
            continue
        row = _ROW.match(message)
        if row and current is not None and int(row.group(1), 16) == len(rows):
            rows += bytes.fromhex(row.group(2).replace(" ", ""))
        elif row and current is not None:
            dumps.append(Dump(current.size, bytes(rows), current.line_no))  # a gap: rows lost
            current = None
    if current is not None:
        dumps.append(Dump(current.size, bytes(rows[: current.size]), current.line_no))
    return [Dump(d.size, d.data[: d.size], d.line_no) for d in dumps]


@dataclass
class Difference:
    offset: int  # in the server-to-hub stream
    record: int  # 1-based record index
    wire: int
    stack: int


@dataclass
class Comparison:
    compared: int = 0
    differences: list[Difference] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.differences:
            d = self.differences[0]
            return (
                f"{len(self.differences)} of {self.compared} bytes differ between wire and stack; first at "
                f"stream offset {d.offset} (record {d.record}): wire {d.wire:02x}, stack read {d.stack:02x}"
            )
        text = f"all {self.compared} bytes equal"
        return text + ("; " + "; ".join(self.not_compared) if self.not_compared else "")


def compare(dumps: list[Dump], stream: bytes) -> Comparison:
    """Compare the dumps, laid end to end from offset 0, with the stream's bytes."""
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
        for i, byte in enumerate(dump.data):
            result.compared += 1
            if stream[offset + i] != byte:
                result.differences.append(Difference(offset + i, index, stream[offset + i], byte))
        if not dump.complete:
            result.not_compared.append(
                f"record {index} (log line {dump.line_no}): dump incomplete, {dump.size - len(dump.data)} "
                f"of {dump.size} bytes not in the log (UART overrun?)"
            )
        offset += dump.size
    return result
