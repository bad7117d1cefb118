"""How a path's last hop sends the server's bytes to the hub: segment sizes, windows, retransmission.

The router hands the hub one segment at a time and waits for the hub's answer (lock-step: the LAN
has no delay worth modelling, and one segment in flight makes every run identical). Two behaviours,
chosen by the path's `link.segmentation` (bench file):

- `respect_window` (a landline: the cloud's own TCP, a sender that never exceeds the advertised
  window): each segment is `min(mss, window, data)` starting at the hub's ACK.
- `full_segments` (a terminal-side split-TCP PEP, HughesNet-like): the PEP cuts the stream into
  segments of its MSS as the data arrives and sends each whole as soon as the window is open at all —
  it does not shrink a segment to a window smaller than one segment. When the hub takes only part of
  a segment (its RX FIFO was smaller), the PEP re-sends just the missing rest, then carries on with
  its next segment: a partial ACK trims the head of its queue, as Linux's retransmit queue does.

With a 1393-byte PEP segment a 1024-byte FIFO therefore sees 1393-byte segments truncated to 1024
followed by 369-byte rests; a 1460-byte FIFO takes every segment whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Segmentation = Literal["respect_window", "full_segments"]


@dataclass(frozen=True)
class Segment:
    seq: int  # absolute sequence number (irs + 1 + stream offset)
    offset: int  # stream offset from the first byte of the connection
    payload: bytes
    is_rest: bool  # re-sends the part of a truncated segment the hub did not take


class SegmentSender:
    """The sender's state for one connection toward the hub (pure: no I/O, no clock)."""

    def __init__(self, irs: int, mss: int, segmentation: Segmentation, window: int) -> None:
        self.base_seq = irs + 1
        self.mss = mss
        self.segmentation = segmentation
        self.window = window
        self._stream = bytearray()  # bytes from offset `_acked` on
        self._acked = 0  # stream offset the hub has acknowledged
        self._unsent = 0  # first stream offset never sent (full_segments)
        self._in_flight: Segment | None = None
        self._sent_end = 0  # first stream offset past every byte sent so far
        self.truncations: list[tuple[int, int, int]] = []  # (offset, sent, taken)

    @property
    def buffered(self) -> int:
        """Bytes not yet acknowledged by the hub."""
        return len(self._stream)

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def next_seq(self) -> int:
        """SND.NXT: the sequence number after the last byte sent (the seq of a pure ACK)."""
        return (self.base_seq + max(self._sent_end, self._acked)) & 0xFFFFFFFF

    def push(self, data: bytes) -> None:
        """Bytes from the uplink to deliver to the hub."""
        self._stream += data

    def on_ack(self, ack_seq: int, window: int, answers_segment: bool) -> None:
        """The hub's ACK (or window update): frees acknowledged bytes, notes truncations."""
        self.window = window
        offset = (ack_seq - self.base_seq) & 0xFFFFFFFF
        if offset > self._acked + len(self._stream):
            return  # acknowledges bytes never sent: ignore
        if offset > self._acked:
            del self._stream[: offset - self._acked]
            self._acked = offset
        if answers_segment and self._in_flight is not None:
            sent = self._in_flight
            end = sent.offset + len(sent.payload)
            if self._acked < end:
                self.truncations.append((sent.offset, len(sent.payload), max(0, self._acked - sent.offset)))
            self._in_flight = None

    def next_segment(self, flush: bool) -> Segment | None:
        """The segment to send now, or None. `flush`: send a short segment even if more data may follow."""
        if self._in_flight is not None or self.window <= 0:
            return None
        if self.segmentation == "respect_window":
            limit = min(self.mss, self.window)
            size = min(limit, len(self._stream))
            if size == 0 or (size < limit and not flush):
                return None
            seg = self._segment(self._acked, size, is_rest=False)
        else:
            self._unsent = max(self._unsent, self._acked)
            if self._acked < self._unsent:  # the rest of a truncated segment, whole
                seg = self._segment(self._acked, self._unsent - self._acked, is_rest=True)
            else:
                size = min(self.mss, len(self._stream))
                if size == 0 or (size < self.mss and not flush):
                    return None
                seg = self._segment(self._acked, size, is_rest=False)
                self._unsent = self._acked + size
        self._in_flight = seg
        return seg

    def _segment(self, offset: int, size: int, *, is_rest: bool) -> Segment:
        start = offset - self._acked
        payload = bytes(self._stream[start : start + size])
        self._sent_end = max(self._sent_end, offset + size)
        return Segment((self.base_seq + offset) & 0xFFFFFFFF, offset, payload, is_rest)
