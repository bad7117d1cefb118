"""TLS record handling for the AWS IoT Core stand-in: coalescing the first flight, reading alerts.

OpenSSL writes each handshake message of the server's first flight in its own record
(ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone: five records).
AWS IoT's front end sends them as ONE handshake record of about 5.4 KB (bench.md §6: a 5411-byte
record seen by an Mbed TLS client). The difference matters to a device: a single record larger than
its Mbed TLS input buffer fails (`mbedtls-in-4096`), and the record and segment boundaries decide
where a receive-buffer defect lands. `FlightCoalescer` rewrites what leaves the server's outgoing
MemoryBIO: consecutive plaintext handshake records are merged until the server's ChangeCipherSpec;
after it every byte passes unchanged (encrypted records cannot be merged and need not be).

TLS 1.2 record layout (RFC 5246 §6.2): type (1) · version (2) · length (2) · fragment (≤ 2^14).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

HANDSHAKE = 22
CHANGE_CIPHER_SPEC = 20
ALERT = 21
APPLICATION_DATA = 23
MAX_FRAGMENT = 16384
HEADER = 5


@dataclass(frozen=True)
class Record:
    """One TLS record as it travels on the wire."""

    content_type: int
    version: bytes
    fragment: bytes

    def encode(self) -> bytes:
        return (
            bytes([self.content_type]) + self.version + len(self.fragment).to_bytes(2, "big") + self.fragment
        )


def split_records(buffer: bytearray) -> list[Record]:
    """Remove and return the complete records at the start of `buffer`; a partial record stays."""
    records: list[Record] = []
    while len(buffer) >= HEADER:
        length = int.from_bytes(buffer[3:5], "big")
        if len(buffer) < HEADER + length:
            break
        records.append(Record(buffer[0], bytes(buffer[1:3]), bytes(buffer[HEADER : HEADER + length])))
        del buffer[: HEADER + length]
    return records


def merge_handshake(records: list[Record]) -> list[Record]:
    """The handshake fragments of `records` in as few records as the 16 KB limit allows."""
    if not records:
        return []
    data = b"".join(r.fragment for r in records)
    version = records[0].version
    return [Record(HANDSHAKE, version, data[i : i + MAX_FRAGMENT]) for i in range(0, len(data), MAX_FRAGMENT)]


class FlightCoalescer:
    """Rewrites the server's outgoing bytes so each burst of plaintext handshake records is one record.

    Feed it everything read from the outgoing MemoryBIO; send what it returns. Only records that
    came out together are merged (the first flight is produced by one `do_handshake()` call).
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._plaintext = True
        self.records_in = 0
        self.records_out = 0

    def feed(self, data: bytes) -> bytes:
        """The bytes to put on the wire for `data` (a partial record is held back until complete)."""
        if not self._plaintext:
            return data
        self._pending += data
        out = bytearray()
        run: list[Record] = []
        for record in split_records(self._pending):
            self.records_in += 1
            if record.content_type == HANDSHAKE and self._plaintext:
                run.append(record)
                continue
            out += self._flush(run)
            run = []
            out += record.encode()
            self.records_out += 1
            if record.content_type == CHANGE_CIPHER_SPEC:
                self._plaintext = False
        out += self._flush(run)
        if not self._plaintext and self._pending:
            out += self._pending
            self._pending.clear()
        return bytes(out)

    def _flush(self, run: list[Record]) -> bytes:
        merged = merge_handshake(run)
        self.records_out += len(merged)
        return b"".join(r.encode() for r in merged)


@dataclass(frozen=True)
class Alert:
    """A TLS alert: level 1 warning / 2 fatal, and its description code and RFC name."""

    level: int
    code: int

    @property
    def name(self) -> str:
        try:
            return ssl.AlertDescription(self.code).name.removeprefix("ALERT_DESCRIPTION_").lower()
        except ValueError:
            return f"alert_{self.code}"

    def to_json(self) -> dict[str, object]:
        return {
            "level": "fatal" if self.level == 2 else "warning",
            "code": self.code,
            "description": self.name,
        }


def alerts_in(data: bytes) -> list[Alert]:
    """The plaintext alerts among the records in `data` (what the server was about to send)."""
    alerts: list[Alert] = []
    for record in split_records(bytearray(data)):
        if record.content_type == ALERT and len(record.fragment) == 2:
            alerts.append(Alert(record.fragment[0], record.fragment[1]))
    return alerts
