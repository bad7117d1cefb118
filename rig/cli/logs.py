"""`rig diagnose` and `rig diff`: the Mbed TLS log intelligence on saved logs.

Thin edge over the pure `rig.mbedtls` core: read the file (bytes, never lost to a decode error),
feed the parser, print the diagnosis or the diff as text or JSON. Exit 0 when a diagnosis was
produced whatever the handshake did, 2 when the input cannot be read or holds no Mbed TLS line,
and with `--fail-on-failure` 1 for a failed or stalled handshake (for scripts).

With `--capture PCAP` (the capture of the hub's LAN during that log), the log's input-record dumps
(debug level 4) are compared byte by byte with the server's stream (`rig.report.wire_vs_stack`) and,
for a failed or stalled handshake, the incident's theories are answered (`rig.report.theories`),
as an attempt's evidence does; `--cloud-log` adds the endpoint's own journal (the sim's cloud.log).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import click

from rig.errors import ConfigError
from rig.mbedtls import CATEGORY_MEANING, Diagnosis, LogParser, diagnose_parser, diff_traces
from rig.mbedtls.bulk import feed_blocks
from rig.mbedtls.versions import ALL_VERSIONS
from rig.report import theories, wire_vs_stack
from rig.report.evidence import capture_stopped
from rig.wire import read_capture

_CHUNK = 1 << 22


def _blocks_of(stream: BinaryIO) -> Iterator[bytes]:
    """The stream in large binary blocks (the parser splits and decodes the lines itself)."""
    while block := stream.read(_CHUNK):
        yield block


def parse_log(path: Path, mbedtls_version: str | None = None) -> LogParser:
    """Parse a saved log ('-' = stdin) into a LogParser; ConfigError (exit 2) when it cannot be read."""
    parser = LogParser(mbedtls_version)
    try:
        if str(path) == "-":
            feed_blocks(parser, _blocks_of(sys.stdin.buffer))
        else:
            with path.open("rb") as stream:
                feed_blocks(parser, _blocks_of(stream))
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the log ({exc.strerror or exc}); check the path and its permissions"
        ) from exc
    if parser.counts["mbedtls"] == 0:
        raise ConfigError(
            f"{path}: no Mbed TLS debug line in {parser.counts['lines']} lines; check that this is the device's "
            "log and that its debug threshold is 2 or more (mbedtls_debug_set_threshold)"
        )
    return parser


def _version_option(value: str | None) -> str | None:
    if value is None:
        return None
    short = ".".join(value.split(".")[:2])
    if short not in ALL_VERSIONS:
        raise ConfigError(f"--mbedtls-version {value}: unknown release; use one of {', '.join(ALL_VERSIONS)}")
    return short


def render_diagnosis(d: Diagnosis, source: str) -> str:
    """The human text of a diagnosis."""
    state = d.last_state
    label = " ".join(
        str(x) for x in (state["number"], f"({state['name']})" if state["name"] else None) if x is not None
    )
    lines = [
        f"{source}: {d.outcome.upper()} — {d.category}: {CATEGORY_MEANING[d.category]}",
        f"  mbedtls {d.mbedtls_version or 'version unknown'}, {d.role or 'role unknown'}, {d.protocol or 'protocol unknown'}"
        + (f", {d.ciphersuite}" if d.ciphersuite else ""),
        f"  last state: {label or '-'}",
    ]
    if d.error:
        lines.append(f"  error: {d.error['code']} {d.error['name'] or ''}".rstrip())
    if d.alert:
        name = d.alert["name"] or d.alert["description"] or "description not logged"
        lines.append(f"  alert {d.alert['direction']}: level {d.alert['level'] or '?'}, {name}")
    if d.inbound_reads:
        lines.append(
            f"  inbound reads: {', '.join(str(n) for n in d.inbound_reads[:20])}"
            + (" …" if len(d.inbound_reads) > 20 else "")
        )
    lines.append(
        f"  records in/out: {d.records_in}/{d.records_out}; want-read re-entries: {d.want_read_retries}"
    )
    if d.stall_seconds is not None:
        lines.append(f"  stalled for: {d.stall_seconds:g} s")
    if d.attempts > 1:
        lines.append(f"  handshake attempts in the log: {d.attempts} (this is the last)")
    lines.append(f"  evidence: lines {', '.join(str(n) for n in d.evidence) or '-'}")
    lines.append("")
    lines.append(d.summary)
    return "\n".join(lines)


def _log_lines(log: Path) -> list[bytes]:
    """The log's lines as bytes, for the comparison with a capture (LOG must be a file then)."""
    if str(log) == "-":
        raise ConfigError(
            "--capture needs LOG as a file: the log is read twice (the diagnosis, the comparison)"
        )
    try:
        return log.read_bytes().splitlines()
    except OSError as exc:
        raise ConfigError(f"{log}: cannot read the log ({exc.strerror or exc})") from exc


def _cloud_lines(path: Path | None) -> list[dict[str, object]]:
    """The endpoint's journal lines (JSON objects with an `event`), from a saved cloud.log or cloud.jsonl."""
    if path is None:
        return []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the cloud's log ({exc.strerror or exc})") from exc
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(
                f"{path}:{number}: not a JSON line — give the cloud's cloud.log or an attempt's cloud.jsonl"
            ) from None
        if isinstance(entry, dict) and "event" in entry:
            lines.append(entry)
    return lines


def wire_evidence(
    log: Path, capture: Path, diagnosis: Diagnosis, cloud: Path | None = None
) -> tuple[wire_vs_stack.WireVsStack | None, theories.Theories | None, str]:
    """The comparison of LOG with CAPTURE, the theories for a failure, and their text."""
    # An attempt's folder says when its capture was stopped: the server's silence is measured until then.
    view = read_capture(capture, stopped=capture_stopped(capture.parent), partial=True)
    check = wire_vs_stack.check(_log_lines(log), view, log=str(log))
    answered = (
        theories.answer(view, check, _cloud_lines(cloud))
        if diagnosis.outcome in ("failed", "stalled")
        else None
    )
    text = [f"\nWire against stack ({capture}):"]
    if check is None:
        text.append(
            "  nothing compared: "
            + (
                "the capture holds no TCP connection"
                if view.main is None
                else "the log holds no `input record from network` dump (debug level 4)"
            )
        )
    else:
        text += ["  " + line if line else "" for line in check.render().rstrip("\n").splitlines()]
    if answered is not None:
        text += ["", "Theories:"] + ["  " + line for line in answered.render().rstrip("\n").splitlines()]
    return check, answered, "\n".join(text)


def _evidence_json(
    check: wire_vs_stack.WireVsStack | None, answered: theories.Theories | None
) -> dict[str, object]:
    return {
        "wire_vs_stack": None if check is None else check.to_json(),
        "theories": None if answered is None else answered.to_json(),
    }


_CAPTURE = click.Path(path_type=Path, dir_okay=True)


@click.command("diagnose")
@click.argument("log", type=click.Path(path_type=Path, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="print the diagnosis as one JSON object")
@click.option("--mbedtls-version", metavar="X.Y", default=None, help="override the detected Mbed TLS version")
@click.option("--fail-on-failure", is_flag=True, help="exit 1 when the handshake failed or stalled")
@click.option(
    "--capture",
    type=_CAPTURE,
    default=None,
    metavar="PCAP",
    help="the capture of the hub's LAN during LOG: compare the bytes Mbed TLS dumped with the wire",
)
@click.option(
    "--cloud-log",
    type=_CAPTURE,
    default=None,
    metavar="FILE",
    help="the cloud's own journal (with --capture)",
)
def diagnose(
    log: Path,
    as_json: bool,
    mbedtls_version: str | None,
    fail_on_failure: bool,
    capture: Path | None,
    cloud_log: Path | None,
) -> None:
    """Say where and why the last TLS handshake in LOG (an Mbed TLS debug log, '-' for stdin) stopped.

    \b
    With --capture PCAP: the bytes Mbed TLS read (its level-4 dumps) against the wire, and for a
    failure the incident's theories answered.
    Exit 0 when a diagnosis was produced, 2 when LOG or PCAP cannot be read or LOG holds no Mbed TLS
    line; with --fail-on-failure, 1 for a failed or stalled handshake.
    """
    parser = parse_log(log, _version_option(mbedtls_version))
    result = diagnose_parser(parser)
    evidence = wire_evidence(log, capture, result, cloud_log) if capture is not None else None
    if as_json:
        document = result.to_json()
        if evidence is not None:
            document.update(_evidence_json(evidence[0], evidence[1]))
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(render_diagnosis(result, str(log)))
        if evidence is not None:
            click.echo(evidence[2])
    if fail_on_failure and result.outcome in ("failed", "stalled"):
        sys.exit(1)


@click.command("diff")
@click.argument("good", type=click.Path(path_type=Path, allow_dash=True))
@click.argument("bad", type=click.Path(path_type=Path, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="print the comparison as one JSON object")
@click.option("--mbedtls-version", metavar="X.Y", default=None, help="override the detected Mbed TLS version")
@click.option(
    "--capture",
    type=_CAPTURE,
    default=None,
    metavar="PCAP",
    help="BAD's capture: wire against stack, theories",
)
@click.option(
    "--good-capture", type=_CAPTURE, default=None, metavar="PCAP", help="GOOD's capture: wire against stack"
)
@click.option(
    "--cloud-log", type=_CAPTURE, default=None, metavar="FILE", help="the cloud's own journal during BAD"
)
def diff(
    good: Path,
    bad: Path,
    as_json: bool,
    mbedtls_version: str | None,
    capture: Path | None,
    good_capture: Path | None,
    cloud_log: Path | None,
) -> None:
    """Compare a passing log (GOOD) with a failing one (BAD) state by state; show the first divergence.

    With --capture (BAD's) and --good-capture (GOOD's): each log's level-4 dumps against its wire,
    and BAD's theories answered.
    """
    version = _version_option(mbedtls_version)
    good_parser = parse_log(good, version)
    bad_parser = parse_log(bad, version)
    result = diff_traces(good_parser.trace, bad_parser.trace)
    good_diagnosis, bad_diagnosis = diagnose_parser(good_parser), diagnose_parser(bad_parser)
    good_evidence = wire_evidence(good, good_capture, good_diagnosis) if good_capture is not None else None
    bad_evidence = wire_evidence(bad, capture, bad_diagnosis, cloud_log) if capture is not None else None
    if as_json:
        document = result.to_json()
        document["good"] = good_diagnosis.to_json()
        document["bad"] = bad_diagnosis.to_json()
        for key, evidence in (("good", good_evidence), ("bad", bad_evidence)):
            if evidence is not None:
                document[key].update(_evidence_json(evidence[0], evidence[1]))
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(f"good: {good}\nbad:  {bad}\n")
        click.echo(result.render())
        for label, evidence in (("good", good_evidence), ("bad", bad_evidence)):
            if evidence is not None:
                click.echo(evidence[2].replace("Wire against stack (", f"Wire against stack, {label} (", 1))


commands = [diagnose, diff]
