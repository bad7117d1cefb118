"""`rig wire`: a capture read as TCP segments and TLS records per direction (the wire as a witness).

Thin edge over the pure `rig.wire`: read the file, print the view as text or JSON. The silences run
until the capture was stopped when that is known (`--stopped`, or the `capture_stopped` event of an
attempt's `events.jsonl` beside the file), else until the last packet, and the output says which.
Exit 0 when the capture was read, 2 when it is missing, not a pcap/pcapng file, or cut short
(unless `--partial`).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from rig.report.evidence import capture_stopped
from rig.wire import read_capture


@click.command("wire")
@click.argument("capture", type=click.Path(path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="print the view as one JSON object (what wire.json holds)"
)
@click.option("--segments", is_flag=True, help="list every TCP segment among the records")
@click.option(
    "--stopped",
    type=float,
    metavar="EPOCH_S",
    default=None,
    help="when the capture stopped (wall time, s); default: events.jsonl beside it, else the last packet",
)
@click.option("--partial", is_flag=True, help="read a capture cut short up to the cut instead of refusing it")
def wire(capture: Path, as_json: bool, segments: bool, stopped: float | None, partial: bool) -> None:
    """Who sent which TLS record when, and who went silent, from a capture of the hub's LAN.

    \b
    Lists each TCP connection (a reboot's reconnect is a second one), each direction's TLS records
    (type, version, size, handshake messages while plaintext, ChangeCipherSpec, alerts), holes in
    the streams, FIN/RST, the negotiated suite, the last sender and the other side's silence.
    Exit codes: 0 read, 2 missing, not a capture, or truncated (without --partial).
    """
    if stopped is None:
        stopped = capture_stopped(capture.parent)
    view = read_capture(capture, stopped=stopped, partial=partial)
    if as_json:
        click.echo(json.dumps(view.to_json(), indent=2))
    else:
        click.echo(view.render(segments=segments))


commands = [wire]
