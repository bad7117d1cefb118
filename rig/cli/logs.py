"""`rig diagnose` and `rig diff`: the Mbed TLS log intelligence on saved logs.

Thin edge over the pure `rig.mbedtls` core: read the file (bytes, never lost to a decode error),
feed the parser, print the diagnosis or the diff as text or JSON. Exit 0 when a diagnosis was
produced whatever the handshake did, 2 when the input cannot be read or holds no Mbed TLS line,
and with `--fail-on-failure` 1 for a failed or stalled handshake (for scripts).
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


@click.command("diagnose")
@click.argument("log", type=click.Path(path_type=Path, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="print the diagnosis as one JSON object")
@click.option("--mbedtls-version", metavar="X.Y", default=None, help="override the detected Mbed TLS version")
@click.option("--fail-on-failure", is_flag=True, help="exit 1 when the handshake failed or stalled")
def diagnose(log: Path, as_json: bool, mbedtls_version: str | None, fail_on_failure: bool) -> None:
    """Say where and why the last TLS handshake in LOG (an Mbed TLS debug log, '-' for stdin) stopped.

    \b
    Exit 0 when a diagnosis was produced, 2 when LOG cannot be read or holds no Mbed TLS line;
    with --fail-on-failure, 1 for a failed or stalled handshake.
    """
    parser = parse_log(log, _version_option(mbedtls_version))
    result = diagnose_parser(parser)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(render_diagnosis(result, str(log)))
    if fail_on_failure and result.outcome in ("failed", "stalled"):
        sys.exit(1)


@click.command("diff")
@click.argument("good", type=click.Path(path_type=Path, allow_dash=True))
@click.argument("bad", type=click.Path(path_type=Path, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="print the comparison as one JSON object")
@click.option("--mbedtls-version", metavar="X.Y", default=None, help="override the detected Mbed TLS version")
def diff(good: Path, bad: Path, as_json: bool, mbedtls_version: str | None) -> None:
    """Compare a passing log (GOOD) with a failing one (BAD) state by state; show the first divergence."""
    version = _version_option(mbedtls_version)
    good_parser = parse_log(good, version)
    bad_parser = parse_log(bad, version)
    result = diff_traces(good_parser.trace, bad_parser.trace)
    if as_json:
        document = result.to_json()
        document["good"] = diagnose_parser(good_parser).to_json()
        document["bad"] = diagnose_parser(bad_parser).to_json()
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(f"good: {good}\nbad:  {bad}\n")
        click.echo(result.render())


commands = [diagnose, diff]
