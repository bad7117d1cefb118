"""One direction's reassembled stream → TLS records and, while they are plaintext, handshake messages.

The record layer (RFC 5246 §6.2): a 5-byte header — content type, version, length — then that many
bytes. Handshake messages (§7.4: type, 3-byte length, body) are a stream of their own across the
handshake records: one record may carry several (AWS IoT Core and the simulated cloud put the whole
first flight, ServerHello … ServerHelloDone, in one 5420-byte record) and one message may span
several records. A sender's records after its ChangeCipherSpec (§7.1) are protected: its next
handshake record is its Finished, encrypted, and an alert then is an "encrypted alert" whose
description only the peer can read.

A hole in the stream costs the record it falls in; the next record's place is known from the
header, unless the hole swallowed a header: then the walk resynchronises at the first offset that
looks like a header followed by another one (or by the end of the stream), and says so.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from rig.wire import tables
from rig.wire.tcp import Stream

_HEADER: Final = 5


@dataclass(frozen=True)
class Alert:
    """An alert record's content: level and description when plaintext, else just `encrypted`."""

    encrypted: bool
    level: int | None = None
    description: int | None = None

    @property
    def level_name(self) -> str | None:
        return None if self.level is None else tables.ALERT_LEVELS.get(self.level, f"level {self.level}")

    @property
    def description_name(self) -> str | None:
        if self.description is None:
            return None
        return tables.ALERT_DESCRIPTIONS.get(self.description, f"description {self.description}")

    def __str__(self) -> str:
        if self.encrypted:
            return "encrypted alert"
        return f"alert {self.level_name} {self.description_name}"

    def to_json(self) -> dict[str, object]:
        return {
            "encrypted": self.encrypted,
            "level": self.level,
            "level_name": self.level_name,
            "description": self.description,
            "description_name": self.description_name,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Alert:
        level, description = data.get("level"), data.get("description")
        return cls(
            bool(data["encrypted"]),
            None if level is None else int(str(level)),
            None if description is None else int(str(description)),
        )


@dataclass
class TlsRecord:
    """One record of a direction, where it lies in the stream and when it was on the wire.

    `header_time`: when the segment that completed its 5-byte header was captured (a receiver then
    knows the length it must wait for); `time`: when the segment that completed the whole record was
    (it could then be processed), None when the capture lacks some of its bytes (`missing`);
    `acked_time`: when the receiver first acknowledged its last byte (a receiver that truncates
    segments, as Harmony's TCP does on a full RX FIFO, takes the bytes only from a retransmission).
    """

    index: int
    offset: int
    content_type: int
    version: int
    length: int
    header_time: float | None
    time: float | None
    missing: int = 0
    encrypted: bool = False
    content: str = ""
    messages: list[str] = field(default_factory=list)
    alert: Alert | None = None
    acked_time: float | None = None

    @property
    def type_name(self) -> str:
        return tables.content_type_name(self.content_type)

    @property
    def complete(self) -> bool:
        return self.missing == 0

    @property
    def end(self) -> int:
        """Stream position just after the record."""
        return self.offset + _HEADER + self.length

    @property
    def size(self) -> int:
        """Bytes on the wire, header included."""
        return _HEADER + self.length

    @property
    def when(self) -> float | None:
        """The record's time for charts and summaries: complete, or else its header's."""
        return self.time if self.time is not None else self.header_time

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "offset": self.offset,
            "content_type": self.content_type,
            "type_name": self.type_name,
            "version": tables.version_name(self.version),
            "length": self.length,
            "header_time": self.header_time,
            "time": self.time,
            "complete": self.complete,
            "missing": self.missing,
            "encrypted": self.encrypted,
            "content": self.content,
            "messages": list(self.messages),
            "alert": None if self.alert is None else self.alert.to_json(),
            "acked_time": self.acked_time,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TlsRecord:
        alert = data.get("alert")
        messages = data.get("messages") or []
        assert isinstance(messages, list)
        return cls(
            index=int(str(data["index"])),
            offset=int(str(data["offset"])),
            content_type=int(str(data["content_type"])),
            version=tables.version_number(str(data["version"])),
            length=int(str(data["length"])),
            header_time=_optional_float(data.get("header_time")),
            time=_optional_float(data.get("time")),
            missing=int(str(data.get("missing", 0))),
            encrypted=bool(data.get("encrypted", False)),
            content=str(data.get("content", "")),
            messages=[str(m) for m in messages],
            alert=Alert.from_json(alert) if isinstance(alert, dict) else None,
            acked_time=_optional_float(data.get("acked_time")),
        )


@dataclass
class HandshakeMessage:
    """A plaintext handshake message: its type, body length and the records that carry its bytes.

    `offset` and `end` are where its first byte (the type) and the byte after its last lie in the
    direction's stream; a message that spans records spans their headers too.
    """

    type: int
    length: int
    records: list[int]
    complete: bool
    offset: int | None = None
    end: int | None = None

    def holds(self, position: int) -> bool:
        """Whether the stream byte at `position` lies within this message's span."""
        return self.offset is not None and self.end is not None and self.offset <= position < self.end

    @property
    def name(self) -> str:
        return tables.handshake_name(self.type)

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.type,
            "name": self.name,
            "length": self.length,
            "records": list(self.records),
            "complete": self.complete,
            "offset": self.offset,
            "end": self.end,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> HandshakeMessage:
        records = data.get("records") or []
        assert isinstance(records, list)
        offset, end = data.get("offset"), data.get("end")
        return cls(
            int(str(data["type"])),
            int(str(data["length"])),
            [int(r) for r in records],
            bool(data["complete"]),
            None if offset is None else int(str(offset)),
            None if end is None else int(str(end)),
        )


@dataclass
class Hello:
    """What a ClientHello or ServerHello says that a reader of the wire wants: version, suite, name."""

    version: int | None = None  # negotiated (ServerHello; supported_versions wins, RFC 8446 §4.2.1)
    cipher_suite: int | None = None
    server_name: str | None = None  # SNI (ClientHello, RFC 6066 §3)


@dataclass
class DirectionTls:
    """The TLS reading of one direction."""

    records: list[TlsRecord] = field(default_factory=list)
    messages: list[HandshakeMessage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hello: Hello = field(default_factory=Hello)


def looks_like_tls(stream: Stream) -> bool:
    """Whether the stream starts with something that reads as a TLS record header."""
    return stream.has(0, _HEADER) and _plausible(stream.data[:_HEADER])


def parse_records(stream: Stream) -> DirectionTls:
    """Walk a direction's stream record by record (see the module docstring for holes and resync)."""
    result = DirectionTls()
    data = stream.data
    handshake = _HandshakeStream(result)
    protected = False  # this sender has sent ChangeCipherSpec
    finished_seen = False
    pos = 0
    if stream.length >= _HEADER and not (stream.has(0, _HEADER) and _plausible(data[:_HEADER])):
        found = _resync(stream, 0)
        if found is None:
            result.notes.append("no TLS record header found in this direction's bytes")
            return result
        if found:
            result.notes.append(f"the first {found} bytes are not TLS records (capture joined mid-record?)")
        pos = found
    while pos < stream.length:
        if pos + _HEADER > stream.length:
            if stream.has(pos, stream.length):
                result.notes.append(
                    f"{stream.length - pos} bytes at {pos} end the capture before a record header"
                )
            break
        if not stream.has(pos, pos + _HEADER):
            found = _resync(stream, _after_hole(stream, pos))
            where = "the end of the stream" if found is None else f"offset {found}"
            result.notes.append(f"record header at {pos} lies in a hole; records resume at {where}")
            handshake.lose(pos)
            if found is None:
                break
            pos = found
            continue
        header = data[pos : pos + _HEADER]
        if not _plausible(header):
            found = _resync(stream, pos + 1)
            result.notes.append(
                f"bytes at {pos} ({header.hex(' ')}) are not a TLS record header; "
                + ("no record follows" if found is None else f"records resume at offset {found}")
            )
            handshake.lose(pos)
            if found is None:
                break
            pos = found
            continue
        content_type, version, length = struct.unpack(">BHH", header)
        end = pos + _HEADER + length
        captured = _captured(stream, pos + _HEADER, end)
        record = TlsRecord(
            index=len(result.records),
            offset=pos,
            content_type=content_type,
            version=version,
            length=length,
            header_time=stream.time_complete(pos, pos + _HEADER),
            time=stream.time_complete(pos, end) if captured == length else None,
            missing=length - captured,
        )
        body = data[pos + _HEADER : _captured_prefix_end(stream, pos + _HEADER, end)]
        if content_type == tables.HANDSHAKE and not protected:
            record.content = "handshake"
            handshake.add(record, body)
        elif content_type == tables.HANDSHAKE:
            record.encrypted = True
            record.content = "encrypted handshake" if finished_seen else "Finished (encrypted)"
            finished_seen = True
        elif content_type == tables.CHANGE_CIPHER_SPEC:
            record.content = "ChangeCipherSpec"
            protected = True
        elif content_type == tables.ALERT:
            record.encrypted = protected
            if protected or length != 2:
                record.alert = Alert(encrypted=True)
            elif record.complete:
                record.alert = Alert(False, body[0], body[1])
            record.content = str(record.alert) if record.alert else "alert (bytes missing)"
        elif content_type == tables.APPLICATION_DATA:
            record.encrypted = True
            record.content = "application data"
        else:
            record.content = record.type_name
        if not record.complete:
            record.content += f" ({record.missing} of {length} bytes not captured)"
        result.records.append(record)
        pos = end
    handshake.finish()
    return result


class _HandshakeStream:
    """Handshake messages across the plaintext handshake records of one direction (RFC 5246 §7.4)."""

    def __init__(self, result: DirectionTls) -> None:
        self.result = result
        self.buffer = bytearray()
        self.spans: list[tuple[int, int, int]] = []  # (start, end, record index) in the buffer
        self.bodies: dict[int, int] = {}  # record index → stream offset of its body's first byte
        self.cursor = 0  # start of the next message in the buffer
        self.broken = False  # a lost record: message framing is unknown from here on

    def add(self, record: TlsRecord, body: bytes) -> None:
        if self.broken:
            record.content = "handshake (message boundaries lost after a hole)"
            return
        start = len(self.buffer)
        self.buffer += body
        self.spans.append((start, len(self.buffer), record.index))
        self.bodies[record.index] = record.offset + _HEADER
        self._parse()
        if not record.complete:
            self.lose(record.offset)

    def lose(self, offset: int) -> None:
        """A record was lost: stop reading messages (their boundaries are unknown from here)."""
        if not self.broken and self.buffer:
            self.result.notes.append(
                f"handshake messages after offset {offset} unreadable: a record is missing"
            )
        self.broken = True

    def _parse(self) -> None:
        while len(self.buffer) - self.cursor >= 4:
            kind = self.buffer[self.cursor]
            length = int.from_bytes(self.buffer[self.cursor + 1 : self.cursor + 4], "big")
            end = self.cursor + 4 + length
            if end > len(self.buffer):
                return
            self._emit(kind, length, self.cursor, end, complete=True)
            self.cursor = end

    def finish(self) -> None:
        if len(self.buffer) - self.cursor >= 4:
            kind = self.buffer[self.cursor]
            length = int.from_bytes(self.buffer[self.cursor + 1 : self.cursor + 4], "big")
            self._emit(kind, length, self.cursor, len(self.buffer), complete=False)
        elif len(self.buffer) > self.cursor:
            self.result.notes.append(
                f"{len(self.buffer) - self.cursor} handshake bytes end before a message header"
            )
        self._label_records()

    def _emit(self, kind: int, length: int, start: int, end: int, *, complete: bool) -> None:
        records = [index for s, e, index in self.spans if s < max(end, start + 1) and e > start]
        message = HandshakeMessage(
            kind, length, records, complete, self._stream_offset(start), self._stream_offset(end - 1) + 1
        )
        self.result.messages.append(message)
        body = bytes(self.buffer[start + 4 : end])
        if complete and kind == tables.SERVER_HELLO:
            _read_server_hello(body, self.result.hello)
        elif complete and kind == tables.CLIENT_HELLO:
            _read_client_hello(body, self.result.hello)

    def _stream_offset(self, position: int) -> int:
        """Where the handshake buffer's byte at `position` lies in the direction's stream."""
        for s, e, index in self.spans:
            if s <= position < e:
                return self.bodies[index] + position - s
        s, _, index = self.spans[-1]
        return self.bodies[index] + position - s

    def _label_records(self) -> None:
        """Each record's `messages`: names, with '…' where a message began before or goes on after it."""
        by_index = {record.index: record for record in self.result.records}
        for message in self.result.messages:
            for position, index in enumerate(message.records):
                before = "…" if position > 0 else ""
                after = "…" if position < len(message.records) - 1 or not message.complete else ""
                by_index[index].messages.append(f"{before}{message.name}{after}")
        for record in self.result.records:
            if record.content_type == tables.HANDSHAKE and not record.encrypted and record.messages:
                record.content = ", ".join(record.messages) + (
                    f" ({record.missing} of {record.length} bytes not captured)" if record.missing else ""
                )


def _plausible(header: bytes) -> bool:
    """A record header: a known content type, version {3, 0..4}, a length the RFC allows (§6.2.3)."""
    if len(header) < _HEADER:
        return False
    content_type, major, minor, length = header[0], header[1], header[2], int.from_bytes(header[3:5], "big")
    if content_type not in tables.CONTENT_TYPES or major != 3 or minor > 4:
        return False
    return length <= tables.MAX_RECORD_LENGTH and (length > 0 or content_type == tables.APPLICATION_DATA)


def _resync(stream: Stream, start: int) -> int | None:
    """The first offset ≥ start where a plausible header is followed by another, or by the stream's end."""
    data, length = stream.data, stream.length
    for pos in range(start, length - _HEADER + 1):
        if data[pos] not in tables.CONTENT_TYPES or data[pos + 1] != 3:
            continue
        if not (stream.has(pos, pos + _HEADER) and _plausible(data[pos : pos + _HEADER])):
            continue
        following = pos + _HEADER + int.from_bytes(data[pos + 3 : pos + 5], "big")
        if following >= length:
            return pos
        if stream.has(following, following + _HEADER) and _plausible(data[following : following + _HEADER]):
            return pos
        if not stream.has(following, min(following + _HEADER, length)):
            return pos  # the next header lies in a hole: as good a witness as the end
    return None


def _after_hole(stream: Stream, pos: int) -> int:
    for hole in stream.holes:
        if hole.start <= pos < hole.end or pos < hole.start < pos + _HEADER:
            return hole.end
    return pos + 1


def _captured(stream: Stream, start: int, end: int) -> int:
    """How many bytes of [start, end) the capture holds."""
    end_in_stream = min(end, stream.length)
    if end_in_stream <= start:
        return 0
    lost = sum(
        min(hole.end, end_in_stream) - max(hole.start, start)
        for hole in stream.holes
        if hole.start < end_in_stream and hole.end > start
    )
    return end_in_stream - start - lost


def _captured_prefix_end(stream: Stream, start: int, end: int) -> int:
    """The end of the bytes held without a gap from `start` (at most `end`)."""
    stop = min(end, stream.length)
    for hole in stream.holes:
        if hole.end > start and hole.start < stop:
            stop = max(start, hole.start)
            break
    return stop


def _read_server_hello(body: bytes, hello: Hello) -> None:
    """Version and cipher suite from a ServerHello (RFC 5246 §7.4.1.3, RFC 8446 §4.1.3)."""
    try:
        version = int.from_bytes(body[0:2], "big")
        session_id = body[34]
        at = 35 + session_id
        hello.cipher_suite = int.from_bytes(body[at : at + 2], "big")
        hello.version = version
        at += 3
        for kind, value in _extensions(body, at):
            if kind == tables.EXT_SUPPORTED_VERSIONS and len(value) == 2:
                hello.version = int.from_bytes(value, "big")
    except IndexError:
        return


def _read_client_hello(body: bytes, hello: Hello) -> None:
    """The server name (SNI) from a ClientHello (RFC 5246 §7.4.1.2, RFC 6066 §3)."""
    try:
        at = 34 + 1 + body[34]
        at += 2 + int.from_bytes(body[at : at + 2], "big")
        at += 1 + body[at]
        for kind, value in _extensions(body, at):
            if kind == tables.EXT_SERVER_NAME and len(value) > 5 and value[2] == 0:
                size = int.from_bytes(value[3:5], "big")
                hello.server_name = value[5 : 5 + size].decode("ascii", "replace")
    except IndexError:
        return


def _extensions(body: bytes, at: int) -> list[tuple[int, bytes]]:
    if at + 2 > len(body):
        return []
    end = min(len(body), at + 2 + int.from_bytes(body[at : at + 2], "big"))
    at += 2
    found = []
    while at + 4 <= end:
        kind = int.from_bytes(body[at : at + 2], "big")
        size = int.from_bytes(body[at + 2 : at + 4], "big")
        found.append((kind, body[at + 4 : at + 4 + size]))
        at += 4 + size
    return found


def _optional_float(value: object) -> float | None:
    return None if value is None else float(str(value))
