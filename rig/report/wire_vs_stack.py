"""Wire against stack, located: each byte Mbed TLS read differently from the wire, in its TLS record and message.

The comparison itself is pure (`rig.mbedtls.wirecheck`: the log's `input record from network` dumps
beside the server-to-hub stream); the capture's records and handshake messages are the wire's
(`rig.wire`). This module joins them, for the attempt's evidence (`wire-vs-stack.txt` and `.json`) and
for `rig diagnose --capture`: a difference is named by its stream offset, the record it lies in (index,
content type, stream range) and the handshake message (Certificate, ServerKeyExchange, …).

The connection compared is the capture's main one (its last TLS connection) and the log's last
handshake: both are the handshake a verdict is about.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rig.errors import ConfigError
from rig.mbedtls.wirecheck import Comparison, Difference, compare, input_dumps
from rig.report import evidence as files
from rig.wire import Connection, HandshakeMessage, TlsRecord, WireView, read_capture
from rig.wire.view import Direction

TEXT: Final = files.WIRE_VS_STACK_TEXT
JSON: Final = files.WIRE_VS_STACK_JSON
_SHOWN: Final = 20  # differences listed one by one in the text
CERTIFICATE: Final = 11  # the handshake type of a Certificate message


@dataclass
class Place:
    """Where a stream offset lies in the capture: its record and handshake message, when known."""

    record: TlsRecord | None
    message: str | None  # a handshake message's name, "record header", or None when unknown
    detail: str | None = None  # where inside the message: "certificate 3 of 3, byte 341 of its DER"

    def describe(self) -> str:
        if self.record is None:
            return "outside every record the capture holds"
        r = self.record
        where = f"record #{r.index} ({r.type_name}, stream bytes {r.offset}–{r.end - 1})"
        inside = f" ({self.detail})" if self.detail else ""
        return where + (f", in {self.message}{inside}" if self.message else "")

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "record": None
            if r is None
            else {
                "index": r.index,
                "content_type": r.content_type,
                "type_name": r.type_name,
                "offset": r.offset,
                "end": r.end,
            },
            "message": self.message,
            "detail": self.detail,
        }


def locate(connection: Connection, offset: int) -> Place:
    """The server-side record and handshake message holding stream byte `offset`."""
    side = connection.server_side
    record = next((r for r in side.records if r.offset <= offset < r.end), None)
    if record is None:
        return Place(None, None)
    if offset < record.offset + 5:
        return Place(record, "record header")
    found = next((m for m in side.messages if m.holds(offset)), None)
    message = found.name if found is not None else None
    detail = _certificate_at(side, found, offset) if found is not None and found.type == CERTIFICATE else None
    if message is None and record.content:
        message = record.content if record.encrypted else None
    return Place(record, message, detail)


def _certificate_at(side: Direction, message: HandshakeMessage, offset: int) -> str | None:
    """Which certificate of a TLS 1.2 Certificate message (RFC 5246 §7.4.2) holds stream byte `offset`."""
    by_index = {r.index: r for r in side.records}
    positions: list[int] = []  # the message's bytes, in order, as stream offsets (record headers left out)
    for index in message.records:
        r = by_index.get(index)
        if r is None or message.offset is None or message.end is None:
            return None
        positions += range(max(r.offset + 5, message.offset), min(r.end, message.end))
    if offset not in positions or any(p >= len(side.stream) for p in positions):
        return None
    body = bytes(side.stream[p] for p in positions)
    at, where = 7, positions.index(offset)  # type, length (4), certificate_list length (3)
    stop = min(len(body), 7 + int.from_bytes(body[4:7], "big"))
    entries: list[tuple[int, int]] = []
    while at + 3 <= stop:
        size = int.from_bytes(body[at : at + 3], "big")
        entries.append((at, at + 3 + size))
        at += 3 + size
    for number, (start, end) in enumerate(entries, 1):
        if start <= where < end:
            inside = f"byte {where - start - 3} of its DER" if where >= start + 3 else "its length"
            return f"certificate {number} of {len(entries)}, {inside}"
    return None


@dataclass
class WireVsStack:
    """The comparison of one handshake's inbound records: what was compared, what differs and where."""

    log: str
    capture: str
    connection: str  # "client → server" of the compared connection
    dumps: int
    comparison: Comparison
    places: list[Place] = field(default_factory=list)  # one per difference

    @property
    def differs(self) -> bool:
        return bool(self.comparison.differences)

    def first(self) -> tuple[Difference, Place] | None:
        if not self.comparison.differences:
            return None
        return self.comparison.differences[0], self.places[0]

    def summary(self) -> str:
        """One sentence: the first difference, or how many bytes were compared equal, and what was not."""
        c = self.comparison
        not_compared = ("; not compared: " + "; ".join(c.not_compared)) if c.not_compared else ""
        first = self.first()
        if first is None:
            if not c.compared:
                return f"wire vs stack: no byte compared{not_compared}"
            return f"wire vs stack: all {c.compared} compared bytes equal ({c.records} records){not_compared}"
        d, place = first
        messages = sorted({p.message for p in self.places if p.message})
        return (
            f"wire vs stack: {len(c.differences)} of {c.compared} compared bytes differ — first at stream offset "
            f"{d.offset}, {place.describe()}: wire {d.wire:02x}, Mbed TLS read {d.stack:02x}"
            + (f" (messages: {', '.join(messages)})" if messages else "")
            + not_compared
        )

    def render(self) -> str:
        c = self.comparison
        lines = [
            f"log:        {self.log}",
            f"capture:    {self.capture}",
            f"connection: {self.connection} (server → hub stream)",
            f"dumps:      {self.dumps} (`input record from network` and `remaining content in record`); "
            f"{c.records} records laid on the stream (bytes 0–{max(c.stream_end - 1, 0)})",
            "",
        ]
        if c.differences:
            lines.append(f"{len(c.differences)} of {c.compared} compared bytes differ:")
            lines.append("  offset  wire  stack  log line  where")
            for d, place in list(zip(c.differences, self.places, strict=True))[:_SHOWN]:
                lines.append(
                    f"  {d.offset:6d}    {d.wire:02x}     {d.stack:02x}  {d.line_no:8d}  {place.describe()}"
                )
            if len(c.differences) > _SHOWN:
                lines.append(f"  … {len(c.differences) - _SHOWN} more in {JSON}")
        elif c.compared:
            lines.append(f"{c.compared} bytes compared, all equal")
        else:
            lines.append("no byte compared")
        for note in c.not_compared:
            lines.append(f"not compared: {note}")
        lines += ["", self.summary()]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "capture": self.capture,
            "connection": self.connection,
            "dumps": self.dumps,
            **self.comparison.to_json(),
            "differences": [
                {**d.to_json(), **p.to_json()}
                for d, p in zip(self.comparison.differences, self.places, strict=True)
            ],
            "summary": self.summary(),
        }


def check(
    lines: Iterable[str | bytes], view: WireView, *, log: str = "", first_line: int = 1
) -> WireVsStack | None:
    """Compare the log's last handshake with the capture's main connection; None without dumps or connection.

    `first_line`: the line number of the first of `lines` in `log` (an attempt compares its judged boot).
    """
    dumps = input_dumps(lines, last_handshake=True, first_line=first_line)
    connection = view.main
    if not dumps or connection is None:
        return None
    side = connection.server_side
    holes = [(h.start, h.end) for h in side.holes]
    comparison = compare(dumps, side.stream, holes)
    return WireVsStack(
        log=log,
        capture=view.source,
        connection=f"{connection.client} → {connection.server}",
        dumps=len(dumps),
        comparison=comparison,
        places=[locate(connection, d.offset) for d in comparison.differences],
    )


def write(folder: Path, result: WireVsStack) -> list[Path]:
    """`wire-vs-stack.txt` and `wire-vs-stack.json` in `folder`."""
    text, document = folder / TEXT, folder / JSON
    text.write_text(result.render(), encoding="utf-8")
    document.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return [text, document]


def read_view(folder: Path) -> WireView | None:
    """The attempt's whole capture, or None without one or when it cannot be read (`wire.json` says why)."""
    capture = folder / files.CAPTURE
    if not capture.is_file():
        return None
    try:
        return read_capture(capture, stopped=files.capture_stopped(folder), partial=True)
    except ConfigError:
        return None
