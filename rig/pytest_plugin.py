"""The rig's pytest plugin: options, markers, the matrix's parametrization and order, fixtures, verdicts.

Registered through the `pytest11` entry point, so any pytest run where `rig` is installed gets `--bench`
and friends. A thin wiring layer: the cells and their order are `rig.hil.matrix`, one attempt is `rig.hil.attempt`,
the bench session is `rig.hil.session`, files and tables are `rig.report`.

- A test that takes the `cell` fixture is parametrized with every variant file × every bench path (×
  `--repeat`), ids like `tcp-rx-1024-satellite`. Each cell gets its path's marker (`pytest -m satellite`),
  `nightly`, and `release` for variants with `release: true`; a cell whose variant expects
  `fail <category>` on that path is a strict xfail that only an `HandshakeFailed` of that category satisfies.
- Cells are reordered so each variant is programmed once and paths switch rarely (`rig.hil.matrix.order_cells`).
- Several benches (`--bench` repeated, or a pool file) run with pytest-xdist, one worker per bench:
  `PoolController` (the controller only) checks every bench before the workers start and gives each
  worker its bench and the run's id; whole variants go to a worker, heaviest first (`VariantScheduling`).
- `bench` (session): provider up if needed, lease, preflight — a failing preflight stops the run at once
  with one message (exit 3) — and restore at the end; the run's own events (those of no attempt) go to
  `<results>/<run-id>/events.jsonl`. `cell`: the attempt prepared (image, path, reset), its phases
  shown as they happen (`rig.hil.progress`: a live line on a terminal, a plain line per phase in a log).
- A bench problem (`InfrastructureError`) is an *error*, in the terminal and in allure (broken), never a
  failure; `rig.hil.matrix.Cell` retries it once.
- Every attempt's record goes to `<results>/<run-id>/cells.jsonl` as it ends; the evidence is attached
  to allure; the terminal summary is the matrix table (with pass rates and flaky cells on repeats).
- A cell whose verdict is a firmware failure is rerun once with its variant's forensic image (debug
  level 4) right after, as evidence (`rig.hil.matrix.Cell.rerun_forensic`); the test's outcome is the
  failing attempt's. `--forensic=always` reruns a passing cell too, `--forensic=never` none.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from rig import __version__
from rig.config import (
    DEFAULT_BENCH,
    BenchConfig,
    Loaded,
    VariantConfig,
    expand_benches,
    load_bench,
    load_variants,
)
from rig.errors import ConfigError, HandshakeFailed, InfrastructureError
from rig.hil.attempt import CellBench
from rig.hil.matrix import (
    FORENSIC_WHEN,
    AttemptCounter,
    Breaker,
    Cell,
    CellSpec,
    Comparisons,
    order_cells,
    plan,
    variant_weights,
)
from rig.hil.pool import open_pool, same_shape
from rig.hil.progress import CellProgress
from rig.report.allure_results import teardown_step
from rig.report.attachments import attach_attempt, attach_files, label_cell
from rig.report.evidence import EVENTS, RunFolder
from rig.report.progress import LiveLine, PlainLines
from rig.report.provenance import rig_commit
from rig.report.records import Outcome
from rig.report.run_end import finish_run
from rig.report.run_events import RunEvents
from rig.report.table import flaky_cells, matrix_table, programmed_per_bench

BenchFactory = Callable[[Path, pytest.Config], AbstractContextManager[CellBench]]

CELL_KEY = pytest.StashKey["Cell"]()


@dataclass
class RigState:
    """What the plugin keeps for one pytest session."""

    bench_path: Path | None
    bench: Loaded[BenchConfig] | None
    results: Path
    run: RunFolder | None = None
    counter: AttemptCounter = field(default_factory=AttemptCounter)
    comparisons: Comparisons = field(default_factory=Comparisons)
    breaker: Breaker = field(default_factory=Breaker)
    announced_trips: set[str | None] = field(default_factory=set)
    run_id: str | None = None  # given by the xdist controller to its workers: one run, one folder
    pool: list[str] = field(default_factory=list)  # the benches' names, in a pool run's controller
    bench_problems: int = 0  # tests that ended in a bench problem (errors)
    other_failures: int = 0  # tests that failed for any other reason (the firmware, a test's own bug)
    end_problems: list[str] = field(default_factory=list)  # the run's end files that could not be written

    def run_folder(self) -> RunFolder:
        if self.run is None:
            self.run = RunFolder(self.results, self.run_id)
        return self.run


STATE_KEY = pytest.StashKey[RigState]()


# ------------------------------------------------------------------------------------------ options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rig", "hardware-in-the-loop bench")
    group.addoption(
        "--bench",
        action="append",
        default=None,
        metavar="FILE",
        help=f"bench file to run on (else $RIG_BENCH, else ini rig_bench, else {DEFAULT_BENCH}, the simulated "
        "bench); give it several times, or name a pool file, to spread the cells over benches with -n N",
    )
    group.addoption(
        "--variants", default=None, metavar="A,B", help="only these variants (names, comma-separated)"
    )
    group.addoption("--paths", default=None, metavar="A,B", help="only these paths (names, comma-separated)")
    group.addoption(
        "--firmware-dir",
        default="firmware_configs",
        metavar="DIR",
        help="folder of variant files (default firmware_configs)",
    )
    parser.addini("rig_bench", "bench file to run on when neither --bench nor RIG_BENCH is given", default="")
    group.addoption("--repeat", type=int, default=1, metavar="N", help="run every cell N times")
    group.addoption(
        "--forensic",
        choices=FORENSIC_WHEN,
        default="failed",
        help="rerun a cell once with its variant's forensic image (debug level 4): after a firmware "
        "failure (failed, the default), after every judged attempt (always), or never",
    )
    group.addoption(
        "--results", default="results", metavar="DIR", help="evidence folder: DIR/<run-id>/ (default results)"
    )


def bench_files(config: pytest.Config) -> list[Path]:
    """The bench files this run uses, pool files expanded: --bench (repeatable), else RIG_BENCH, else the
    `rig_bench` ini option, else the simulated bench when the repository has it; on an xdist worker, the
    one bench the controller gave it."""
    workerinput = getattr(config, "workerinput", {})
    if "rig_bench" in workerinput:
        return [Path(workerinput["rig_bench"])]
    if config.getoption("--bench"):
        given = [Path(value) for value in config.getoption("--bench")]
    else:
        value = os.environ.get("RIG_BENCH") or config.getini("rig_bench")
        if not value:
            default = Path(config.rootpath) / DEFAULT_BENCH
            return [default] if default.is_file() else []
        given = [Path(value)]
    try:
        return expand_benches(given)
    except ConfigError as exc:
        raise pytest.UsageError("\n".join(exc.lines())) from None


def _existing(config: pytest.Config, option: str) -> Path:
    """A path option as given (relative to the current folder), else relative to the repository."""
    value = Path(config.getoption(option))
    if value.is_absolute() or value.exists():
        return value
    rooted = Path(config.rootpath) / value
    return rooted if rooted.exists() else value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "release: cells of variants marked `release: true`")
    config.addinivalue_line("markers", "nightly: part of the nightly bench run")
    paths = bench_files(config)
    benches = []
    for path in paths:
        try:
            benches.append(load_bench(path))
        except ConfigError as exc:
            raise pytest.UsageError("\n".join(exc.lines())) from None
    if len(benches) > 1 and (problems := same_shape(benches)):
        raise pytest.UsageError("\n".join(problems))
    bench = benches[0] if benches else None
    if bench is not None:
        for name, spec in bench.model.paths.items():
            config.addinivalue_line("markers", f"{name}: cells on the {name} path ({spec.rtt_ms:g} ms RTT)")
    if config.getoption("--repeat") < 1:
        raise pytest.UsageError("--repeat must be at least 1")
    if bench is not None and config.getoption("--paths"):
        _names(config, "--paths", list(bench.model.paths), "path")
    if config.getoption("--variants"):
        try:
            variants = load_variants(_existing(config, "--firmware-dir"))
        except ConfigError as exc:
            raise pytest.UsageError("\n".join(exc.lines())) from None
        _names(config, "--variants", [v.model.name for v in variants], "variant")
    workerinput = getattr(config, "workerinput", {})
    state = RigState(paths[0] if paths else None, bench, Path(config.getoption("--results")))
    state.run_id = workerinput.get("rig_run_id")
    config.stash[STATE_KEY] = state
    config.pluginmanager.register(OutcomeCounter(state), "rig-outcomes")
    if _is_worker(config) or not _runs_cells(config) or _only_looks(config):
        return
    if _distributed(config):
        config.pluginmanager.register(PoolController(config, state, paths), "rig-pool")
    elif len(paths) > 1:
        raise pytest.UsageError(
            f"{len(paths)} benches given: run them as a pool with pytest-xdist, `-n {len(paths)}` "
            "(or `-n auto`: one worker per bench), or give one --bench"
        )


def _only_looks(config: pytest.Config) -> bool:
    """`--collect-only`, `--markers`, `--fixtures`: a run that touches no bench."""
    return any(getattr(config.option, name, False) for name in ("collectonly", "markers", "showfixtures"))


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` on the HIL suite: one worker per bench given (pytest-xdist's default elsewhere)."""
    if not _runs_cells(config):
        return None
    return len(bench_files(config)) or None


def _distributed(config: pytest.Config) -> bool:
    """Whether pytest-xdist will run this session's tests in workers (`-n N`)."""
    return bool(getattr(config.option, "tx", None)) and getattr(config.option, "dist", "no") != "no"


def _runs_cells(config: pytest.Config) -> bool:
    """Whether this run collects from the HIL suite (`testpaths`): `pytest tests -n 2`, the rig's own
    tests, brings up no bench."""
    suites = [Path(config.rootpath, p).resolve() for p in config.getini("testpaths")]
    if not suites:
        return True
    for arg in config.args:
        target = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if any(target == s or s in target.parents or target in s.parents for s in suites):
            return True
    return False


class PoolController:
    """The xdist controller's side of a pool: benches checked before the workers start, one per worker.

    Registered only in the controller of a distributed run. Brings up and preflights every bench
    (`rig.hil.pool.open_pool`), drops the failing ones with one line each, exits 3 with none left,
    runs as many workers as there are healthy benches (or fewer with `-n N`), gives each worker its
    bench and the run's id, schedules the cells by variant (`VariantScheduling`) unless `--dist` was
    given, and stops at the end the provided benches it started.
    """

    def __init__(self, config: pytest.Config, state: RigState, paths: list[Path]) -> None:
        self.config = config
        self.state = state
        state.run = RunFolder(state.results)
        events = RunEvents(state.run.root / EVENTS)  # bring-up, repairs and preflights of the pool's benches
        try:
            self.pool = open_pool(paths, self.say)
        finally:
            events.close()
        if not self.pool.members:
            self.pool.stop_started(self.say)
            pytest.exit(f"no bench of the pool is usable ({len(paths)} tried, see above)", returncode=3)
        wanted = int(config.option.numprocesses or len(paths))
        workers = min(wanted, len(self.pool.members))
        if workers < wanted:
            self.say(
                f"rig: {len(self.pool.members)} usable bench(es) for -n {wanted}: running {workers} worker(s)"
            )
        config.option.numprocesses = workers
        config.option.tx = ["popen"] * workers
        state.pool = [m.name for m in self.pool.members]

    def say(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line, flush=True)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Before xdist starts the workers: they get a copy of these options. The controller's own
        # allure plugin cleaned the results folder already; a worker cleaning it would race the others.
        if hasattr(self.config.option, "clean_alluredir"):
            self.config.option.clean_alluredir = False

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        index = int(str(node.gateway.id).removeprefix("gw") or 0) % len(self.pool.members)
        assert self.state.run is not None
        node.workerinput["rig_bench"] = str(self.pool.members[index].path)
        node.workerinput["rig_run_id"] = self.state.run.run_id

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if _dist_given(config):
            return None
        from xdist.scheduler import LoadScopeScheduling

        assert self.state.bench is not None
        paths = list(self.state.bench.model.paths)
        weights = variant_weights(_planned(config, self.state.bench))

        class VariantScheduling(LoadScopeScheduling):  # type: ignore[misc]
            """Whole variants to a worker (each image programmed once per bench, paths snaking), the
            heaviest variant left first: a worker running low takes it (longest processing time first)."""

            def _split_scope(self, nodeid: str) -> str:
                return variant_of_test(nodeid, paths) or nodeid

            def _assign_work_unit(self, node: Any) -> None:
                heaviest = max(self.workqueue, key=lambda scope: weights.get(scope, 0.0))
                self.workqueue.move_to_end(heaviest, last=False)
                super()._assign_work_unit(node)

        return VariantScheduling(config, log)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.pool.stop_started(self.say)


def _dist_given(config: pytest.Config) -> bool:
    """Whether the user chose an xdist schedule (`--dist …`, `-d`) on the command line or in PYTEST_ADDOPTS."""
    args = [*config.invocation_params.args, *os.environ.get("PYTEST_ADDOPTS", "").split()]
    return any(a in ("--dist", "-d", "--distload") or a.startswith("--dist=") for a in args)


def variant_of_test(nodeid: str, paths: list[str]) -> str | None:
    """The variant of a cell's test id (`…[tcp-rx-1024-satellite]`, `…[tcp-rx-1024-satellite-r2]`)."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    param = nodeid[nodeid.rindex("[") + 1 : -1]
    for path in paths:
        match = re.fullmatch(rf"(.+)-{re.escape(path)}(?:-r\d+)?", param)
        if match:
            return match.group(1)
    return None


# ------------------------------------------------------------------------------------- the matrix


def _names(config: pytest.Config, option: str, known: list[str], what: str) -> list[str]:
    value = config.getoption(option)
    if not value:
        return known
    wanted = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise pytest.UsageError(f"{option}: unknown {what} {', '.join(unknown)} (known: {', '.join(known)})")
    return [n for n in known if n in wanted]


def _planned(config: pytest.Config, bench: Loaded[BenchConfig]) -> list[CellSpec]:
    """The run's cells: the chosen variants × the chosen paths of `bench` × --repeat."""
    try:
        variants: list[Loaded[VariantConfig]] = load_variants(_existing(config, "--firmware-dir"))
    except ConfigError as exc:
        raise pytest.UsageError("\n".join(exc.lines())) from None
    chosen = set(_names(config, "--variants", [v.model.name for v in variants], "variant"))
    paths = _names(config, "--paths", list(bench.model.paths), "path")
    return plan([v for v in variants if v.model.name in chosen], paths, config.getoption("--repeat"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" not in metafunc.fixturenames:
        return
    config = metafunc.config
    state = config.stash[STATE_KEY]
    if state.bench is None:
        raise pytest.UsageError(f"no bench file: give --bench FILE (the default {DEFAULT_BENCH} is missing)")
    specs = _planned(config, state.bench)
    metafunc.parametrize("cell", [pytest.param(s, id=s.id, marks=_marks(s)) for s in specs], indirect=True)


def _marks(spec: CellSpec) -> list[pytest.MarkDecorator]:
    marks = [getattr(pytest.mark, spec.path), pytest.mark.nightly]
    if spec.variant.model.release:
        marks.append(pytest.mark.release)
    expectation = spec.expectation
    if expectation.outcome == "fail" and expectation.category:
        marks.append(
            pytest.mark.xfail(
                strict=True,
                raises=HandshakeFailed.of(expectation.category, expectation.state),
                reason=f"{spec.variant.source.display}: expect.{spec.path} = {expectation}",
            )
        )
    return marks


def _spec_of(item: pytest.Item) -> CellSpec | None:
    callspec = getattr(item, "callspec", None)
    spec = callspec.params.get("cell") if callspec is not None else None
    return spec if isinstance(spec, CellSpec) else None


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = config.stash[STATE_KEY]
    if state.bench is None:
        return
    cells = [i for i in items if _spec_of(i) is not None]
    if not cells:
        return
    first = items.index(cells[0])
    before = [i for i in items[:first] if _spec_of(i) is None]
    after = [i for i in items[first:] if _spec_of(i) is None]

    def spec_of(item: pytest.Item) -> CellSpec:
        spec = _spec_of(item)
        assert spec is not None
        return spec

    bench = state.bench.model
    ordered = order_cells(cells, spec_of, paths=list(bench.paths), baseline=bench.baseline)
    items[:] = before + ordered + after


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def rig_bench_factory() -> BenchFactory:
    """How the session's bench is opened; a test suite may override it (the rig's own plugin tests do)."""
    from rig.hil.session import open_bench

    return open_bench


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest, rig_bench_factory: BenchFactory) -> Iterator[CellBench]:
    """The bench for the whole session: provided if needed, leased, preflighted; restored at the end."""
    state = request.config.stash[STATE_KEY]
    if state.bench_path is None:
        raise pytest.UsageError(f"no bench file: give --bench FILE (the default {DEFAULT_BENCH} is missing)")
    run_events = RunEvents(state.run_folder().root / EVENTS)  # bring-up, lease, preflight, restore
    request.addfinalizer(teardown_step("stop writing the run's events", run_events.close))
    context = rig_bench_factory(state.bench_path, request.config)
    try:
        with _uncaptured(request.config):  # a provider's progress (starting the sim…) shows live
            if state.bench is not None and state.bench.model.provider is not None:
                writer = request.config.get_terminal_writer()
                writer.line()
                writer.line(f"rig: {state.bench_path} is a provided bench: bringing it up unless it is up")
            opened = context.__enter__()
    except InfrastructureError as exc:
        if _is_worker(request.config):
            raise  # every cell of this worker is a bench problem; the controller's run goes on and exits 3
        pytest.exit(f"bench {state.bench_path} is not usable: {exc}", returncode=3)
    except ConfigError as exc:
        pytest.exit("\n".join(exc.lines()), returncode=2)

    def leave() -> None:
        with _uncaptured(request.config):
            request.config.get_terminal_writer().line()  # after the progress dots, not on their line
            context.__exit__(None, None, None)

    request.addfinalizer(teardown_step("restore the baseline path, release the lease", leave))
    yield opened


def _progress(config: pytest.Config, the_cell: Cell) -> CellProgress:
    """The cell's live line on a terminal, one line per phase in a log (`rig.hil.progress`)."""
    writer = config.get_terminal_writer()

    def write(text: str) -> None:
        writer.write(text, flush=True)

    live = writer.hasmarkup and getattr(sys.stdout, "isatty", lambda: False)()
    view = LiveLine(write, writer.fullwidth) if live else PlainLines(write)
    return CellProgress(the_cell, view, live=live)


def _uncaptured(config: pytest.Config) -> AbstractContextManager[Any]:
    capture = config.pluginmanager.getplugin("capturemanager")
    return capture.global_and_fixture_disabled() if capture is not None else nullcontext()


@pytest.fixture
def cell(request: pytest.FixtureRequest, bench: CellBench) -> Iterator[Cell]:
    """One cell, run to its verdict: image on the DUT, path selected, capture running, DUT reset, watched.

    The attempt (and its one retry) runs here, in the test's setup, so that a bench problem is a setup
    error everywhere (terminal, JUnit `<error>`, allure broken) and only the test's own assertions on the
    verdict can fail it. `cell.handshake()` in the test returns the verdict reached.
    """
    spec: CellSpec = request.param
    state = request.config.stash[STATE_KEY]
    the_cell = Cell(
        spec,
        bench,
        state.run_folder(),
        state.counter,
        breaker=state.breaker,
        forensic=request.config.getoption("--forensic"),
    )
    request.node.stash[CELL_KEY] = the_cell
    label_cell(spec.name, spec.path)
    config = bench.config
    request.node.user_properties += [("bench", config.name), ("bench_kind", config.kind)]
    request.addfinalizer(
        teardown_step("finish the attempt: stop the capture and the UART subscription", the_cell.close)
    )
    try:
        with _uncaptured(request.config), _progress(request.config, the_cell):
            the_cell.prepare()
            record = the_cell.handshake()
    except InfrastructureError:
        for scope, why in state.breaker.tripped.items():
            if scope not in state.announced_trips:
                state.announced_trips.add(scope)
                with _uncaptured(request.config):
                    writer = request.config.get_terminal_writer()
                    writer.line()
                    writer.line(f"rig: {why}", red=True, bold=True)
        raise
    request.node.user_properties.append(("image_sha256", record.image_sha256 or ""))
    yield the_cell


# ------------------------------------------------------------------------------------- outcomes


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report: pytest.TestReport = yield
    the_cell = item.stash.get(CELL_KEY, None)
    infrastructure = call.excinfo is not None and isinstance(call.excinfo.value, InfrastructureError)
    if infrastructure:
        report.user_properties.append(("rig_infrastructure", True))
    if the_cell is None or the_cell.attempt is None:
        return report
    if (report.when == "setup" and report.failed) or report.when == "call":
        outcome = _outcome(report, infrastructure)
        if outcome == "error" and call.excinfo is not None:
            the_cell.attempt.fail_with_bench_problem(call.excinfo.value)  # e.g. the image file is missing
        _add_comparison(item.config.stash[STATE_KEY], the_cell)
        the_cell.close()
        try:
            if outcome != "error":
                # Before the failing attempt's record is written: its theories take in the rerun's comparison.
                _rerun_forensic(item.config, the_cell)
        finally:
            the_cell.write_record(outcome)
        for record in the_cell.records:
            label = "forensic attempt" if record.forensic else "attempt"
            attach_attempt(Path(record.evidence), record.attempt, label=label)
    return report


def _rerun_forensic(config: pytest.Config, the_cell: Cell) -> None:
    """A failed cell runs once more with its variant's forensic image; its verdict stays the failing one."""
    if not the_cell.wants_forensic():
        return
    with _uncaptured(config):
        writer = config.get_terminal_writer()
        writer.line()
        judged = "passed" if the_cell.judged is not None and the_cell.judged.completed else "failed"
        writer.line(
            f"rig: {the_cell.spec.id} {judged}: rerunning it once with its forensic image (debug level 4)"
        )
        record = the_cell.rerun_forensic()
        if record is not None:
            writer.line(f"rig: forensic attempt {record.attempt}: {record.verdict} — {record.summary}")


def _outcome(report: pytest.TestReport, infrastructure: bool) -> Outcome:
    if infrastructure:
        return "error"
    if report.when == "setup":
        return "error"
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.failed and str(report.longrepr).startswith("[XPASS(strict)]"):
        return "xpassed"
    return "passed" if report.passed else "failed"


def _add_comparison(state: RigState, the_cell: Cell) -> None:
    """Chart and diff for a failing attempt; late comparisons are attached to this (passing) test."""
    if the_cell.attempt is None:
        return
    for title, written in state.comparisons.add(the_cell.attempt):
        attach_files(written, title)


class OutcomeCounter:
    """Counts bench problems apart from other failures where the exit code is decided: in the process
    that runs the session, or in the xdist controller, from the reports its workers send."""

    def __init__(self, state: RigState) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.failed:
            return
        if ("rig_infrastructure", True) in report.user_properties:
            self.state.bench_problems += 1
        else:
            self.state.other_failures += 1


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """A bench problem is an error (E), whatever phase it happened in — never a firmware failure."""
    if report.failed and ("rig_infrastructure", True) in getattr(report, "user_properties", ()):
        return "error", "E", "ERROR"
    return None


# ------------------------------------------------------------------------------------- summary


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run's exit code; its end files (`rig.report.run_end.finish_run`: `summary.json`, `run.json`,
    the history store, allure's run-level files).

    A run in which cells were not judged because of bench problems, and nothing failed otherwise, exits
    3 (the bench could not be used), never 1: 1 means the firmware (or a test) failed.
    """
    state = session.config.stash.get(STATE_KEY, None)
    if state is None:
        return
    if (
        state.bench_problems
        and not state.other_failures
        and session.exitstatus == pytest.ExitCode.TESTS_FAILED
    ):
        session.exitstatus = 3
        exitstatus = 3
    if state.run is None or _is_worker(session.config):
        return  # a worker's records are the controller's to sum up
    options = {name: session.config.getoption(name) for name in ("--variants", "--paths", "--repeat")}
    bench = state.bench.model if state.bench is not None else None
    about = {
        "bench": str(state.bench_path),
        "bench_name": bench.name if bench else None,
        "pool": ", ".join(state.pool) or None,
        "bench_kind": bench.kind if bench else None,
        "simulated": bench.simulated if bench else None,
        "rig_version": __version__,
        "rig_commit": rig_commit(),
        "host": socket.gethostname(),
    }
    info = {"exit_status": int(exitstatus), "bench_problems": state.bench_problems, **options}
    allure_dir = getattr(session.config.option, "allure_report_dir", None)
    state.end_problems = finish_run(
        state.run, about, info, allure_dir=Path(allure_dir) if allure_dir else None
    )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is None or state.run is None:
        return
    records = state.run.cells.read()
    if not records:
        return
    width = max(100, int(os.environ.get("COLUMNS", "0") or 0), terminalreporter._tw.fullwidth)
    buffer = StringIO()
    console = Console(file=buffer, width=width, force_terminal=terminalreporter.hasmarkup, highlight=False)
    bench = state.bench.model if state.bench else None
    kind = ", SIMULATED bench" if bench is not None and bench.simulated else ""
    on = (
        f"benches {', '.join(f'`{n}`' for n in state.pool)}"
        if state.pool
        else f"bench `{bench.name if bench else '?'}`"
    )
    title = f"HIL matrix on {on} (run {state.run.run_id}{kind})"
    console.print(matrix_table(records, title=title))
    if bench is not None and bench.simulated:
        console.print("[yellow]simulated bench: these verdicts are not a release verdict[/]")
    if state.pool:
        for line in programmed_per_bench(records):
            console.print(line)
    flaky = flaky_cells(records)
    if flaky:
        names = ", ".join(f"{s.variant}-{s.path}" for s in flaky)
        console.print(f"[bold red]flaky cells:[/] {names}")
    console.print(f"evidence: {state.run.root}  (cells.jsonl: one line per attempt)")
    for problem in state.end_problems:
        console.print(f"[bold red]rig:[/] {problem}")
    terminalreporter.section("rig")
    for line in buffer.getvalue().rstrip("\n").splitlines():
        terminalreporter.write_line(line)
