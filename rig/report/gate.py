"""The release gate's judgement: is this variant releasable, from its attempt records?

Rules, in order: a variant whose file says `release: false` is not judged at all (refused before any
run). Every path must have been judged `--repeat` times; the final attempt of each repeat counts (an
infrastructure error that its retry cleared is forgotten). If the firmware fails any path, even once,
the verdict is `not releasable` (exit 1) — a flaky failure is a failure. Otherwise, if infrastructure
kept any repeat from being judged, the verdict is `not judged` (exit 3): the gate never says "pass"
about a path it could not see. Only every repeat on every path completing gives `releasable` (exit 0).

A gate run on a simulated bench keeps its verdict but says `"simulated": true`: it is never a release
verdict. `gate.json` also carries the provenance (`rig.report.provenance`: rig version and commit, host,
times, digests of the bench file, the variant file and the image) and every attempt with its evidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rig.report.evidence import write_json
from rig.report.provenance import Provenance
from rig.report.records import AttemptRecord, final_attempts
from rig.report.table import verdict_text

GateVerdict = Literal["releasable", "not releasable", "not judged"]
EXIT_CODES: dict[str, int] = {"releasable": 0, "not releasable": 1, "not judged": 3}


@dataclass
class PathResult:
    """One path's repeats: counts and each final attempt's verdict text."""

    attempts: int = 0
    completed: int = 0
    failed: int = 0
    errors: int = 0
    results: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


@dataclass
class GateReport:
    """What `gate.json` holds."""

    variant: str
    image_sha256: str | None
    bench: str
    repeat: int
    paths: dict[str, PathResult]
    verdict: GateVerdict
    reasons: list[str]
    simulated: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every attempt, retried ones too
    provenance: Provenance | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["exit_code"] = self.exit_code
        data["release_verdict"] = not self.simulated
        return data

    def write(self, path: Path) -> Path:
        return write_json(path, self.to_json())


def judge(
    variant: str,
    paths: list[str],
    repeat: int,
    records: list[AttemptRecord],
    *,
    bench: str,
    image_sha256: str | None,
    simulated: bool = False,
    provenance: Provenance | None = None,
) -> GateReport:
    """Judge `variant` from the records of its gate run on `paths`, each expected `repeat` times."""
    mine_all = [r for r in records if r.variant == variant]
    finals = final_attempts(mine_all)
    results: dict[str, PathResult] = {}
    failing: list[str] = []
    unjudged: list[str] = []
    for path in paths:
        mine = sorted((r for r in finals if r.path == path), key=lambda r: r.repeat)
        result = PathResult(attempts=len(mine))
        for record in mine:
            result.results.append(verdict_text(record))
            result.evidence.append(record.evidence)
            if record.outcome == "error":
                result.errors += 1
            elif record.verdict == "completed":
                result.completed += 1
            else:
                result.failed += 1
        results[path] = result
        if result.failed:
            kinds = sorted(
                {verdict_text(r) for r in mine if r.outcome != "error" and r.verdict != "completed"}
            )
            failing.append(f"{path}: the firmware failed {result.failed} of {len(mine)} ({'; '.join(kinds)})")
        missing = repeat - result.completed - result.failed
        if missing > 0:
            errors = [r.error for r in mine if r.outcome == "error" and r.error]
            why = f" — {errors[-1]}" if errors else ""
            unjudged.append(
                f"{path}: {missing} of {repeat} attempts could not be judged (bench problem){why}"
            )
    if failing:
        verdict: GateVerdict = "not releasable"
        reasons = failing + unjudged
    elif unjudged:
        verdict = "not judged"
        reasons = unjudged
    else:
        verdict = "releasable"
        reasons = [f"completed {repeat} of {repeat} on every path ({', '.join(paths)})"]
    if simulated:
        reasons.append("simulated bench: this is not a release verdict")
    attempts = [
        {
            "path": r.path,
            "repeat": r.repeat,
            "attempt": r.attempt,
            "outcome": r.outcome,
            "verdict": verdict_text(r),
            "evidence": r.evidence,
        }
        for r in mine_all
    ]
    return GateReport(
        variant=variant,
        image_sha256=image_sha256,
        bench=bench,
        repeat=repeat,
        paths=results,
        verdict=verdict,
        reasons=reasons,
        simulated=simulated,
        attempts=attempts,
        provenance=provenance,
    )
