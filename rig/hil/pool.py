"""A pool of benches for one run: each bench brought up if it is provided, preflighted, kept or dropped.

The pytest plugin's controller (pytest-xdist) runs this once before any worker starts, for all benches
at once: a bench whose provider does not come up or whose preflight fails drops out with one line
saying why, and the run goes on with the others; each healthy bench is then leased by one worker for the worker's life. The
check is a session of its own, as short as it can be: the lease taken, a bench a killed run left dirty
put back on its baseline, the preflight, everything given back before the workers start.

At the end, the controller stops the provided benches it started (`PoolMember.started`), after the
workers have restored theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rig.config import BenchConfig, Loaded, load_bench
from rig.errors import ConfigError, InfrastructureError
from rig.hil.bench import Bench
from rig.hil.provider import ensure_provider_up, provider_down

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass
class PoolMember:
    """One bench of the pool: its file, what it loaded to, whether this run brought it up."""

    path: Path
    loaded: Loaded[BenchConfig]
    started: bool = False

    @property
    def name(self) -> str:
        return self.loaded.model.name


@dataclass
class Pool:
    """The benches that passed (`members`) and the lines saying why the others dropped out."""

    members: list[PoolMember]
    dropped: list[str]
    started: list[Path]  # provided benches this run brought up, healthy or not: stopped at the end

    def stop_started(self, say: Say) -> None:
        """Bring down the provided benches this run started (problems are said, not raised)."""
        for path in self.started:
            try:
                provider_down(path)
            except InfrastructureError as exc:
                say(f"rig: {exc}")


def same_shape(benches: list[Loaded[BenchConfig]]) -> list[str]:
    """Why these benches cannot serve one run (its cells are the variants × the first bench's paths)."""
    first = benches[0]
    problems = []
    for other in benches[1:]:
        if list(other.model.paths) != list(first.model.paths):
            problems.append(
                f"{other.source.display}: paths {', '.join(other.model.paths)} differ from "
                f"{first.source.display}'s ({', '.join(first.model.paths)}): a pool's benches need the same paths"
            )
        if other.model.kind != first.model.kind:
            problems.append(
                f"{other.source.display}: kind {other.model.kind} differs from {first.source.display}'s "
                f"({first.model.kind}): a run's verdicts come from one kind of bench"
            )
        if other.model.name == first.model.name:
            problems.append(
                f"{other.source.display}: name {other.model.name!r} is also {first.source.display}'s: "
                "each bench of a pool needs its own name (its lease, its column in the table)"
            )
    return problems


def _check(path: Path) -> tuple[PoolMember | None, bool, list[str]]:
    """(the member, or None when it dropped out; whether this call brought its provider up; why it
    dropped out)."""
    loaded = load_bench(path)
    started = False
    try:
        if loaded.model.provider is not None:
            started = ensure_provider_up(path)
            loaded = load_bench(path)  # the provider wrote the values the file references
    except (InfrastructureError, ConfigError) as exc:
        return None, started, [f"rig: bench {path} drops out of the pool: {exc}"]
    try:
        with Bench(loaded, purpose="pool preflight") as bench:  # a bench left dirty is repaired here
            failed = [c for c in bench.preflight() if not c.ok]
    except (InfrastructureError, ConfigError) as exc:
        # The part that stopped the session is one; the look-only preflight names every failing part.
        failed = [c for c in Bench(loaded, purpose="pool preflight").preflight() if not c.ok]
        if not failed:
            return None, started, [f"rig: bench {path} drops out of the pool: {exc}"]
    if failed:
        details = "; ".join(f"{c.part}: {c.detail}" for c in failed)
        return None, started, [f"rig: bench {path} drops out of the pool: preflight failed — {details}"]
    return PoolMember(path, loaded, started), started, []


def open_pool(paths: list[Path], say: Say) -> Pool:
    """Bring up and check every bench of `paths`, all at once (each waits on its own parts); what each
    check found is said in the order of `paths`. A bench file that does not load raises."""
    with ThreadPoolExecutor(max_workers=len(paths) or 1, thread_name_prefix="pool-check") as checks:
        results = list(checks.map(_check, paths))
    pool = Pool([], [], [])
    for path, (member, brought_up, lines) in zip(paths, results, strict=True):
        for line in lines:
            say(line)
        pool.dropped += lines
        if brought_up:
            pool.started.append(path)
        if member is not None:
            say(f"rig: bench {member.name} ({path}) is ready for the pool")
            pool.members.append(member)
    return pool
