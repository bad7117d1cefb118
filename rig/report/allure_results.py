"""The allure results folder at a run's end: so that the report tells the story of the run.

allure-pytest writes one `*-result.json` per test and one `*-container.json` per fixture as the tests
end; at the run's end (`finish_allure_results`, from `rig.report.run_end.finish_run`) the rig adds and
amends, from the attempt records:

- an **expected failure** (a strict xfail: the variant file says `fail <category>` on that path) is,
  for allure-pytest, `skipped` — grey, beside tests that never ran. It becomes what it is: `failed` with
  `statusDetails.known` (Allure 3 shows it as an accepted, known failure, not counted against the run;
  Allure 2 sorts it into the category below), its message the variant file's expectation and the
  judge's diagnosis;
- `categories.json`: known firmware failures, firmware failures, unexpected passes, bench problems
  (broken: not judged), each matched by status and message;
- `executor.json` (the rig, the run's id as the build) and `environment.properties` (bench, images, rig);
- the **overview** (the matrix table and the gate of each variant, as text) as the first attachment of
  every cell and as the report's global attachment;
- fixture teardown steps: pytest's own bookkeeping step (`<lambda>`, which allure-pytest records
  without an end or a status) is dropped, and a fixture's code after its `yield` is named so.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

from rich.console import Console

from rig.report.attachments import write_environment
from rig.report.gate import judge
from rig.report.records import AttemptRecord, final_attempts
from rig.report.table import flaky_cells, matrix_table

KNOWN_PREFIX = "Known failure"
OVERVIEW_NAME = "overview: the matrix and the gate"

# Allure 2 matches a whole message with a Java pattern, Allure 3 searches it with a JavaScript one:
# `[\s\S]*` (any character, line ends too) and `^` mean the same in both.
CATEGORIES: list[dict[str, Any]] = [
    {
        "name": "Known firmware failures (the variant file expects them)",
        "matchedStatuses": ["failed"],
        "messageRegex": rf"^{KNOWN_PREFIX}[\s\S]*",
    },
    {
        "name": "Unexpected passes (the variant file expects a failure)",
        "matchedStatuses": ["failed"],
        "messageRegex": r"^\[XPASS\(strict\)\][\s\S]*",
    },
    {
        "name": "Firmware failures",
        "matchedStatuses": ["failed"],
        "messageRegex": r"[\s\S]*HandshakeFailed[\s\S]*",
    },
    {
        "name": "Bench problems (not judged: the programmer, UART, router, lease or cloud)",
        "matchedStatuses": ["broken"],
    },
]


def teardown_step(title: str, action: Callable[[], object]) -> Callable[[], None]:
    """`action` as a fixture finalizer whose allure teardown step reads `title`, not `<lambda>`."""

    def step() -> None:
        action()

    step.__name__ = step.__qualname__ = title
    return step


def cell_key(record: AttemptRecord, repeats: int) -> str:
    """The test's `cell` parameter for a record: `tcp-rx-1024-satellite`, `…-r2` with repeats."""
    return f"{record.cell}-r{record.repeat}" if repeats > 1 else record.cell


def overview_text(records: list[AttemptRecord], title: str) -> str:
    """The matrix table, flaky cells and every variant's gate, as plain text."""
    console = Console(width=160, record=True, color_system=None, file=StringIO())
    console.print(matrix_table(records, title=title))
    flaky = flaky_cells(records)
    if flaky:
        console.print(f"flaky cells: {', '.join(f'{s.variant}-{s.path}' for s in flaky)}")
    finals = final_attempts(records)
    paths = list(dict.fromkeys(r.path for r in finals))
    repeat = max((r.repeat for r in finals), default=1)
    console.print()
    console.print("The gate (every path completed every time), per variant of this run:")
    for variant in sorted({r.variant for r in finals}):
        mine = [r for r in records if r.variant == variant]
        image = next((r.image_sha256 for r in mine if r.image_sha256), None)
        report = judge(variant, paths, repeat, mine, bench="", image_sha256=image)
        console.print(f"  {variant}: {report.verdict} — {'; '.join(report.reasons)}", markup=False)
    return console.export_text()


def _rewrite(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data), encoding="utf-8")
    temporary.replace(path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a result allure-pytest did not finish writing is left to allure to judge
    return data if isinstance(data, dict) else None


def _known_failure(result: dict[str, Any], record: AttemptRecord) -> None:
    details = result.get("statusDetails") or {}
    message = str(details.get("message") or "")
    first, _, _ = message.partition("\n\n")
    expectation = first.removeprefix("XFAIL").strip()
    lines = [
        f"{KNOWN_PREFIX}: {expectation}" if expectation else KNOWN_PREFIX,
        "",
        f"Diagnosis: {record.summary or record.verdict}",
        f"Evidence: {record.evidence}",
    ]
    result["status"] = "failed"
    result["statusDetails"] = {**details, "known": True, "message": "\n".join(lines)}


def _cell_of(result: dict[str, Any]) -> str | None:
    for parameter in result.get("parameters") or []:
        if parameter.get("name") == "cell":
            return str(parameter.get("value")).strip("'\"")
    return None


def _tidy_container(container: dict[str, Any]) -> bool:
    """Drop pytest's bookkeeping step, name the code after a fixture's `yield`; True when changed."""
    afters = container.get("afters") or []
    tidy = []
    for step in afters:
        fixture, _, finalizer = str(step.get("name", "")).partition("::")
        if finalizer == "<lambda>" and "status" not in step:
            continue  # pytest's post-finalizer: allure-pytest closes the fixture inside it
        if finalizer.isdigit():
            step = {**step, "name": f"{fixture}: the end of the fixture (its code after yield)"}
        elif finalizer:
            step = {**step, "name": f"{fixture}: {finalizer}"}
        tidy.append(step)
    if tidy == afters:
        return False
    container["afters"] = tidy
    return True


def finish_allure_results(
    allure_dir: Path,
    records: list[AttemptRecord],
    *,
    about: dict[str, Any],
    run_id: str,
    build_order: int | None = None,
) -> None:
    """Write and amend the run-level files of the allure results folder (see the module's docstring)."""
    allure_dir.mkdir(parents=True, exist_ok=True)
    images = {f"image.{r.variant}": r.image_sha256 for r in records if r.image_sha256}
    environment = {k: str(v) for k, v in about.items() if v is not None}
    write_environment(allure_dir, {**environment, **dict(sorted(images.items()))})
    (allure_dir / "categories.json").write_text(json.dumps(CATEGORIES, indent=2) + "\n", encoding="utf-8")
    bench = about.get("bench_name") or "?"
    executor: dict[str, Any] = {
        "name": f"rig {about.get('rig_version', '')}".strip(),
        "type": "rig",
        "buildName": run_id,
        "reportName": f"HIL matrix on bench {bench}",
    }
    if build_order is not None:
        executor["buildOrder"] = build_order
    (allure_dir / "executor.json").write_text(json.dumps(executor, indent=2) + "\n", encoding="utf-8")
    if not records:
        return

    kind = ", SIMULATED bench" if about.get("simulated") else ""
    text = overview_text(records, f"HIL matrix on bench `{bench}` (run {run_id}{kind})")

    def overview() -> dict[str, Any]:
        """A file of its own for each place it is shown (Allure 3 gives one file to one place)."""
        target = allure_dir / f"{uuid.uuid4()}-attachment.txt"
        target.write_text(text, encoding="utf-8")
        return {"name": OVERVIEW_NAME, "source": target.name, "type": "text/plain"}

    globals_file = allure_dir / f"{uuid.uuid4()}-globals.json"
    attachment = {**overview(), "timestamp": int(time.time() * 1000)}
    globals_file.write_text(json.dumps({"attachments": [attachment], "errors": []}), encoding="utf-8")

    finals = final_attempts(records)
    repeats = max((r.repeat for r in finals), default=1)
    by_key = {cell_key(r, repeats): r for r in finals}
    # Results of earlier runs in the same folder (no --clean-alluredir) are theirs: left as they are.
    since_ms = (
        (min(r.started for r in records if r.started > 0) - 5.0) * 1000
        if any(r.started for r in records)
        else 0
    )
    for path in allure_dir.glob("*-result.json"):
        result = _read(path)
        if result is None or float(result.get("start") or 0) < since_ms:
            continue
        record = by_key.get(_cell_of(result) or "")
        if record is None:
            continue  # not a cell of this run (another test, or a run before it)
        if record.outcome == "xfailed" and result.get("status") == "skipped":
            _known_failure(result, record)
        attachments = [a for a in result.get("attachments") or [] if a.get("name") != OVERVIEW_NAME]
        result["attachments"] = [overview(), *attachments]
        _rewrite(path, result)
    for path in allure_dir.glob("*-container.json"):
        container = _read(path)
        if container is not None and _tidy_container(container):
            _rewrite(path, container)
