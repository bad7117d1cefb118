"""The router's uplinks: delay, jitter and rate in userspace (this kernel has no `tc netem`).

A path's `link` profile in the bench file (rig.config.LinkProfile) is all there is to a path: RTT,
jitter, down/up rates, MSS toward the hub, split TCP or not, segmentation. `Uplink` is that profile
plus the router's view (a name, a fake gateway for `simrouter route`). `DelayLine` carries bytes one
way: each chunk waits its serialization time at the path's rate, then the one-way delay (RTT/2) plus
jitter, and chunks never overtake each other.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

from rig.config import BenchConfig, LinkProfile


@dataclass(frozen=True)
class Uplink:
    """One selectable path of the router."""

    name: str
    index: int
    link: LinkProfile

    @property
    def gateway(self) -> str:
        return f"10.64.{self.index}.1"

    @property
    def one_way_s(self) -> float:
        return self.link.rtt_ms / 2000.0

    def describe(self) -> str:
        link = self.link
        parts = [f"rtt {link.rtt_ms:g} ms", f"mss {link.mss}", link.segmentation]
        if link.jitter_ms:
            parts.append(f"jitter {link.jitter_ms:g} ms")
        if link.down_kbit_s or link.up_kbit_s:
            parts.append(f"{(link.down_kbit_s or 0) / 1000:g}/{(link.up_kbit_s or 0) / 1000:g} Mbit/s")
        if link.split_tcp:
            parts.append("split-TCP PEP")
        return ", ".join(parts)


def uplinks_of(bench: BenchConfig) -> dict[str, Uplink]:
    """Every path of the bench as an uplink; a path without `link` gets its `rtt_ms` and defaults."""
    result: dict[str, Uplink] = {}
    for index, (name, path) in enumerate(bench.paths.items()):
        link = path.link or LinkProfile(rtt_ms=path.rtt_ms)
        result[name] = Uplink(name, index, link)
    return result


class DelayLine:
    """One direction of an uplink: rate-limited, delayed, in order. `deliver` runs in the event loop."""

    def __init__(
        self,
        delay_s: float,
        jitter_s: float,
        rate_kbit_s: float | None,
        deliver: Callable[[bytes], None],
        seed: int,
    ) -> None:
        self._delay = delay_s
        self._jitter = jitter_s
        self._rate = rate_kbit_s * 1000.0 if rate_kbit_s else None
        self._deliver = deliver
        self._random = random.Random(seed)
        self._busy_until = 0.0
        self._last_release = 0.0
        self._pending = 0
        self.closed = False

    @property
    def pending(self) -> int:
        """Chunks sent but not yet delivered."""
        return self._pending

    def send(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._busy_until)
        serialization = len(data) * 8 / self._rate if self._rate else 0.0
        self._busy_until = start + serialization
        jitter = self._random.gauss(0.0, self._jitter) if self._jitter else 0.0
        jitter = max(jitter, -self._delay / 2)
        release = max(self._busy_until + self._delay + jitter, self._last_release)
        self._last_release = release
        self._pending += 1
        loop.call_at(release, self._release, data)

    def _release(self, data: bytes) -> None:
        self._pending -= 1
        if not self.closed:
            self._deliver(data)
