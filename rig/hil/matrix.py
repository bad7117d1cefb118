"""The matrix: which cells a run has, in which order, and running one with a retry for bench problems.

Order: the bench programs a variant once and switches paths as rarely as it can. Cells are grouped by
variant, in file order (the bench skips programming a variant its DUT already runs), and within a
variant the paths snake: each variant starts on the path the previous one ended on (the first on the
baseline, where the bench starts) — except that paths the variant is expected to pass on come before those it is expected
to fail on, so that a failing attempt can be compared live with its variant's passing one. Repeats of
a cell run back to back. So a run of V variants on P paths programs V times and switches paths at most
V × P times (V × (P − 1) when no variant has mixed expectations).

A `Cell` is what a HIL test gets: `prepare()` then `handshake()`. A bench problem in either (an
`InfrastructureError`) ends that attempt as `error` in `cells.jsonl` and the cell is tried once more
from the start (image, path, reset); a second bench problem propagates and makes the test an error.
The record of the final attempt is written by the caller, which knows the outcome (the pytest plugin
from the test's report, `rig gate` from the expectation).

A cell whose judged attempt is a firmware failure is run once more with its variant's forensic image
(`Cell.rerun_forensic`: the same build at Mbed TLS debug level 4, from the variant file's `forensic`
or the bench's `images.dir`), after the failing attempt: its capture and level-4 log are compared byte
by byte (`wire-vs-stack.txt`). Its record is marked `forensic` in `cells.jsonl`; tables, pass rates and
the gate leave it out, and the cell's verdict stays the failing attempt's. When to rerun is the run's
choice (`ForensicWhen`): after a failure (the default), after every judged attempt (`always`: a passing
cell's rerun compares a healthy build's bytes too), or `never`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from rig.config import Expectation, Loaded, VariantConfig
from rig.errors import InfrastructureError, RigError
from rig.hil.attempt import FIRMWARE_FAILURES, Attempt, CellBench, stall_after_s, time_budget_s
from rig.hil.judge import expected_outcome
from rig.report.comparison import Side, with_wire, write_comparison
from rig.report.evidence import RunFolder
from rig.report.records import AttemptRecord, Outcome, cell_id

ForensicWhen = Literal["failed", "always", "never"]
FORENSIC_WHEN: tuple[ForensicWhen, ...] = ("failed", "always", "never")


@dataclass(frozen=True, eq=False)
class CellSpec:
    """One cell (variant × path) and which repeat of it this is."""

    variant: Loaded[VariantConfig]
    path: str
    repeat: int = 1
    repeats: int = 1

    @property
    def name(self) -> str:
        return self.variant.model.name

    @property
    def id(self) -> str:
        """The test id: `tcp-rx-1024-satellite`, with `-r2` for repeats when there are several."""
        base = cell_id(self.name, self.path)
        return f"{base}-r{self.repeat}" if self.repeats > 1 else base

    @property
    def expectation(self) -> Expectation:
        return self.variant.model.expectation(self.path)

    def __repr__(self) -> str:  # shown as the test's parameter (pytest -v, allure)
        return self.id


T = TypeVar("T")


def plan(variants: Sequence[Loaded[VariantConfig]], paths: Sequence[str], repeat: int = 1) -> list[CellSpec]:
    """Every variant × path × repeat, in file order (order them with `order_cells`)."""
    return [
        CellSpec(variant, path, r, repeat)
        for variant in variants
        for path in paths
        for r in range(1, repeat + 1)
    ]


# What a cell is expected to cost a pool's scheduler, in cells that pass: one expected to wait (a stall,
# a timeout) runs until the stall detector or the budget gives up, and its forensic rerun waits again; one
# expected to fail otherwise fails fast, and its forensic rerun follows it.
WAITING_CATEGORIES = ("stall_want_read", "timeout", "over_time_budget")
EXPECTED_WAIT_WEIGHT = 6.0
EXPECTED_FAILURE_WEIGHT = 2.0


def variant_weights(specs: Iterable[CellSpec]) -> dict[str, float]:
    """variant → how long its cells are expected to take, in cells that pass: what a pool schedules by,
    heaviest first, so that no bench is left alone with a long variant at the end."""
    weights: dict[str, float] = {}
    for spec in specs:
        expectation = spec.expectation
        cost = 1.0
        if expectation.outcome == "fail":
            waits = expectation.category in WAITING_CATEGORIES
            cost = EXPECTED_WAIT_WEIGHT if waits else EXPECTED_FAILURE_WEIGHT
        weights[spec.name] = weights.get(spec.name, 0.0) + cost
    return weights


def order_cells(
    items: Iterable[T],
    spec_of: Callable[[T], CellSpec],
    *,
    paths: Sequence[str],
    baseline: str,
) -> list[T]:
    """Items (cells, or test items carrying one) in run order: variant-grouped, paths snaking."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(spec_of(item).name, []).append(item)
    ordered: list[T] = []
    current = baseline
    rank = {p: i for i, p in enumerate(paths)}
    for members in groups.values():
        used = list(dict.fromkeys(spec_of(m).path for m in members))
        expected_fail = {spec_of(m).path for m in members if spec_of(m).expectation.outcome == "fail"}
        # Paths expected to pass first (their attempt is the reference a failing one is compared
        # with, live), then where the bench already is, then the bench file's order.
        used.sort(key=lambda p: (p in expected_fail, p != current, rank.get(p, len(rank))))
        for path in used:
            ordered.extend(
                sorted((m for m in members if spec_of(m).path == path), key=lambda m: spec_of(m).repeat)
            )
        if used:
            current = used[-1]
    return ordered


class Breaker:
    """Stops a run from going on against a broken part: two attempts in a row failing on the same part.

    After it trips, every remaining cell that needs the part is reported as not run because of it, at
    once, without touching the bench: a bench whose programmer lost its target does not cost an hour of
    retries. A problem of one path's own (its uplink) stops only that path's cells.
    """

    def __init__(self, limit: int = 2) -> None:
        self.limit = limit
        self._last: tuple[str, str | None] | None = None
        self._count = 0
        self.tripped: dict[str | None, InfrastructureError] = {}  # path (None: every path) → why

    def failed(self, exc: InfrastructureError) -> None:
        """An attempt ended in a bench problem."""
        key = (exc.part or "bench", exc.path)
        self._count = self._count + 1 if key == self._last else 1
        self._last = key
        part, path = key
        if self._count >= self.limit and path not in self.tripped:
            where = "remaining cells" if path is None else f"remaining cells on {path}"
            self.tripped[path] = InfrastructureError(
                f"the {part}{'' if path is None else f' of {path}'} failed {self._count} attempts in a row, "
                f"so the {where} are not run (last problem: {exc})",
                part=part,
                path=path,
            )

    def judged(self) -> None:
        """An attempt reached a verdict: the parts it used work."""
        self._last, self._count = None, 0

    def stops(self, path: str) -> InfrastructureError | None:
        """Why a cell on `path` must not run, or None."""
        return self.tripped.get(None) or self.tripped.get(path)


class Cell:
    """A cell ready to run in a test: `prepare()` (the fixture), then `handshake()` (the test)."""

    def __init__(
        self,
        spec: CellSpec,
        bench: CellBench,
        run: RunFolder,
        attempt_number: Callable[[str], int],
        *,
        retries: int = 1,
        breaker: Breaker | None = None,
        forensic: ForensicWhen = "failed",
    ) -> None:
        self.spec = spec
        self.bench = bench
        self.run = run
        self._attempt_number = attempt_number
        self.retries_left = retries
        self.breaker = breaker if breaker is not None else Breaker()
        self.attempt: Attempt | None = None
        self.records: list[AttemptRecord] = []
        self.judged: AttemptRecord | None = None  # the record of the attempt that reached a verdict
        self.forensic: Attempt | None = None  # the rerun with the forensic image, once the cell failed
        self.forensic_when: ForensicWhen = forensic
        path = bench.config.paths[spec.path]
        self.stall_after_s = stall_after_s(bench.config.timeouts, path)
        self.time_budget_s = time_budget_s(bench.config.timeouts, path)

    @property
    def result(self) -> AttemptRecord | None:
        """The record of the current attempt (None before the first one starts)."""
        return self.attempt.record if self.attempt is not None else None

    def prepare(self) -> None:
        """Image on the DUT, path selected, capture running, DUT reset (one retry on a bench problem)."""
        while True:
            self.attempt = self._new_attempt()
            if (stop := self.breaker.stops(self.spec.path)) is not None:
                self.attempt.not_run(stop)
                raise stop
            try:
                self.attempt.prepare()
                return
            except InfrastructureError as exc:
                if not self._retry_after(exc):
                    raise

    def handshake(self) -> AttemptRecord:
        """Watch the DUT to its verdict; on a bench problem, redo the attempt once from the start.

        The verdict is reached once: called again, it returns the same record.
        """
        if self.judged is not None:
            return self.judged
        if self.attempt is None:
            self.prepare()
        assert self.attempt is not None
        while True:
            try:
                result = self.attempt.watch()
                self.attempt.close()
                self.breaker.judged()
                self.judged = result
                return result
            except InfrastructureError as exc:
                if not self._retry_after(exc):
                    raise
                self.prepare()

    def _new_attempt(self) -> Attempt:
        wanted = self._attempt_number(cell_id(self.spec.name, self.spec.path))
        number, folder = self.run.attempt_dir(self.spec.name, self.spec.path, wanted)
        return Attempt(self.bench, self.spec.variant, self.spec.path, number, folder, repeat=self.spec.repeat)

    def _retry_after(self, exc: InfrastructureError) -> bool:
        """Record the failed attempt as `error`; True when a retry is left (and used)."""
        assert self.attempt is not None
        self.attempt.fail_with_bench_problem(exc)
        self.breaker.failed(exc)
        if self.retries_left <= 0 or self.breaker.stops(self.spec.path) is not None:
            return False
        self.retries_left -= 1
        self.attempt.close()
        self.write_record("error")
        return True

    def write_record(self, outcome: Outcome) -> AttemptRecord:
        """Append the current attempt's record, judged `outcome`, to the run's `cells.jsonl`."""
        assert self.attempt is not None
        record = self.attempt.record
        record.outcome = outcome
        self.attempt.save()
        self.run.cells.append(record)
        self.records.append(record)
        return record

    def close(self) -> None:
        """Finish the current attempt (capture, subscription, diagnosis.json); safe to call twice."""
        if self.attempt is not None:
            self.attempt.close()
        if self.forensic is not None:
            self.forensic.close()

    def wants_forensic(self) -> bool:
        """Whether the judged attempt calls for a rerun (a firmware failure; with `always`, a completed
        handshake too) and the bench has a forensic image for the variant."""
        judged = self.judged
        if judged is None or self.forensic is not None or self.forensic_when == "never":
            return False
        rerun_after = FIRMWARE_FAILURES + (("completed",) if self.forensic_when == "always" else ())
        if judged.verdict not in rerun_after:
            return False
        return self.bench.config.forensic_image_for(self.spec.variant.model) is not None

    def rerun_forensic(self) -> AttemptRecord | None:
        """Run the cell once more with the variant's forensic image, after its failing attempt.

        The rerun is evidence (its capture, its level-4 log and their comparison), not an attempt of the
        cell's verdict: its record says `forensic: true` and the verdict already reached stands. A bench
        or configuration problem in it is recorded in its own record and goes no further.
        """
        if not self.wants_forensic():
            return None
        wanted = self._attempt_number(cell_id(self.spec.name, self.spec.path))
        number, folder = self.run.attempt_dir(self.spec.name, self.spec.path, wanted)
        self.forensic = attempt = Attempt(
            self.bench,
            self.spec.variant,
            self.spec.path,
            number,
            folder,
            repeat=self.spec.repeat,
            forensic=True,
        )
        outcome: Outcome = "error"
        try:
            try:
                attempt.prepare()
                attempt.watch()
                outcome = expected_outcome(self.spec.expectation, attempt.record, infrastructure=False)
            finally:
                attempt.close()  # stopping the capture can fail too: a bench problem like any other
        except RigError as exc:
            attempt.fail_with_bench_problem(exc)
            outcome = "error"
        record = attempt.record
        record.outcome = outcome
        attempt.save()
        self.run.cells.append(record)
        self.records.append(record)
        failing = self.attempt
        if (
            failing is not None
            and failing.record.verdict in FIRMWARE_FAILURES
            and attempt.wire_check is not None
        ):
            # The failing attempt's theories, answered again with the rerun's comparison (its record is
            # written after this, by the caller that knows its outcome); a passing one answers none.
            failing.write_theories(attempt.wire_check, check_from=f"forensic attempt {record.attempt}")
            failing.save()
        return record


class Comparisons:
    """A failing attempt compared with the run's passing attempt of the same variant (chart and diff).

    When the failing attempt comes first, it gets a one-sided chart at once and the comparison as soon
    as a passing attempt of its variant arrives; `add` then returns what it wrote, with a title.
    """

    def __init__(self) -> None:
        self.passing: dict[str, Attempt] = {}  # variant → its first completed attempt
        self.waiting: dict[str, list[Attempt]] = {}  # variant → failing attempts without one

    def add(self, attempt: Attempt) -> list[tuple[str, list[Path]]]:
        """Take a finished attempt; returns (title, files) of comparisons written late because of it."""
        record = attempt.record
        if attempt.parser is None or record.verdict in ("error", "not run", None):
            return []
        if record.completed:
            self.passing.setdefault(record.variant, attempt)
            late = []
            for failing in self.waiting.pop(record.variant, []):
                title = f"{failing.record.cell} attempt {failing.record.attempt} vs this"
                late.append((title, _compare(failing, attempt)))
            return late
        reference = self.passing.get(record.variant)
        _compare(attempt, reference)
        if reference is None:
            self.waiting.setdefault(record.variant, []).append(attempt)
        return []


def _compare(failing: Attempt, reference: Attempt | None) -> list[Path]:
    record = failing.record
    title = f"{record.variant}: {record.path} ({record.verdict}) beside " + (
        f"{reference.record.path} (completed)"
        if reference is not None
        else "no passing attempt in this run (yet)"
    )
    return write_comparison(
        record.folder, _side(failing), _side(reference) if reference is not None else None, title=title
    )


def _side(attempt: Attempt) -> Side:
    assert attempt.parser is not None
    record = attempt.record
    label = f"{record.cell} attempt {record.attempt}"
    verdict = str(record.verdict)
    if not record.completed and record.last_state:
        verdict += f" at {record.last_state}"
    verdict += f" after {record.seconds.reset_to_verdict:.1f} s"
    return with_wire(Side(label, attempt.parser.trace, verdict, attempt.verdict_time), record.folder)


class AttemptCounter:
    """Numbers attempts per cell across repeats and retries: 1, 2, 3…"""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def __call__(self, cell: str) -> int:
        self._counts[cell] = self._counts.get(cell, 0) + 1
        return self._counts[cell]
