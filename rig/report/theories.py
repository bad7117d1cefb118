"""The incident's theories, answered from an attempt's evidence: one sentence each, and the one supported.

The engineer of the incident weighed three theories for weeks: (1) the client's flight after its
ChangeCipherSpec never reached AWS, (2) AWS received it and never answered, (3) AWS answered and the
answer never reached the client. The truth was a fourth: bytes of the server's first flight differed
between the wire and what Mbed TLS read, so the device had changed them (or the path had, when the
server's own digest of the flight differs from the wire). Each is answered here from the witnesses a
run keeps:

- the **wire** (`rig.wire`): the hub's last flight — records, sizes, times, TCP's acknowledgement —
  and what the server sent after it (a record, an alert, a FIN or RST, or silence, in seconds);
- the **cloud's own log** where the bench has one (`cloud.server_log`; the simulated stand-in's
  journal): why it gave up, and the sha256 of each flight it sent;
- **wire against stack** (`rig.report.wire_vs_stack`, debug level 4 only: the forensic rerun).

Pure: a function of what it is given, so `rig diagnose --capture` answers the same way on saved files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.report import evidence as files
from rig.report.wire_vs_stack import WireVsStack
from rig.wire import Connection, TlsRecord, WireView
from rig.wire.view import END_LAST_PACKET


@dataclass
class Theories:
    """The four answers, one sentence each, and which explanation the evidence supports."""

    answers: list[str] = field(default_factory=list)
    supported: str = ""

    def render(self) -> str:
        return "\n".join([*self.answers, f"Supported: {self.supported}"]) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"answers": list(self.answers), "supported": self.supported}


def answer(
    view: WireView | None,
    check: WireVsStack | None,
    cloud: list[dict[str, Any]] | None = None,
    *,
    check_from: str = "",
) -> Theories:
    """Answer the theories for the capture's main connection; `check_from` names where `check` came from
    when it is another attempt's (the forensic rerun)."""
    cloud = cloud or []
    connection = view.main if view is not None else None
    if view is None or connection is None:
        one = "(1)–(3) not answered: no capture of the hub's LAN for this attempt"
        fourth, changed = _fourth(None, check, cloud, check_from)
        return Theories([one, fourth], changed or "none: without a capture the wire cannot say")
    client, server = connection.client_side, connection.server_side
    # The hub's last flight: its records since the server's last record before the hub's last one.
    client_last = max((r.when for r in client.records if r.when is not None), default=None)
    before = [
        r.when
        for r in server.records
        if r.when is not None and client_last is not None and r.when < client_last
    ]
    server_before = max(before, default=None)
    tail = [
        r for r in client.records if r.when is not None and (server_before is None or r.when > server_before)
    ]
    origin = connection.start
    end = view.end if view.end is not None else connection.end
    answers = []
    if not tail:
        answers.append("(1) The hub's flight never left it: the capture holds no TLS record from the hub")
        answers.append("(2) Not in question: the server had nothing from the hub to answer")
        flight_left = False
        silent = False
        answered: list[TlsRecord] = []
    else:
        sent = tail[-1].when
        assert sent is not None
        acked = tail[-1].acked_time
        names = ", ".join(r.content for r in tail)
        ack_text = (
            f"acknowledged by TCP {acked - sent:.3f} s later"
            if acked is not None
            else "never acknowledged by TCP"
        )
        first = tail[0].when
        assert first is not None
        arrived = _gave_up_at(cloud, after=first)  # the server's own log: it read the flight
        flight_left = acked is not None or arrived is not None
        if acked is None and arrived is not None:
            ack_text += (
                f"; the cloud's own log shows it arrived (it gave up on it {arrived - sent:.3f} s later)"
            )
        answers.append(
            f"(1) The hub's last flight left it: {names} ({len(tail)} records, {sum(r.size for r in tail)} bytes) "
            f"on the LAN at {sent - origin:.3f} s into the connection, {ack_text}"
            + ("" if flight_left else " — it may not have reached the server")
        )
        answered = [r for r in server.records if r.when is not None and r.when > sent]
        closes = _closes(connection, sent)
        silent = not answered and not closes
        gave_up = _gave_up(cloud)
        if silent:
            measured = (
                f"no byte for {end - sent:.1f} s until the {view.end_basis}"
                if view.end_basis != END_LAST_PACKET or end - sent >= 0.5
                else "no byte until the capture's end (the file does not say when it was stopped)"
            )
            answers.append(
                f"(2) The server went silent after it: {measured}, no alert, no FIN or RST"
                + (f'; the cloud\'s own log: "{gave_up}"' if gave_up else "")
            )
        else:
            said = [
                f"{r.content} at {r.when - origin:.3f} s" for r in answered if r.when is not None
            ] + closes
            answers.append(
                f"(2) The server did not go silent after it: it sent {', '.join(said)}"
                + (f'; the cloud\'s own log: "{gave_up}"' if gave_up else "")
            )
    if answered:
        answers.append(
            f"(3) The server's answer reached the hub's LAN: {len(answered)} records "
            f"({sum(r.size for r in answered)} bytes), the first at {_when(answered[0], origin)}"
        )
    else:
        answers.append(
            "(3) No answer of the server reached the hub's LAN: the capture holds no server byte after the "
            "hub's last flight, so none was lost between the LAN and the hub"
        )
    fourth, changed = _fourth(connection, check, cloud, check_from)
    answers.append(fourth)
    if changed:
        supported = changed + (
            "; the server's silence (2) is its answer to a transcript that no longer matched"
            if silent
            else ""
        )
    elif not tail:
        supported = "(1): the hub's flight never reached the LAN"
    elif not flight_left:
        supported = "(1): the hub's last flight was never acknowledged on the LAN"
    elif silent:
        supported = "(2): the server received the hub's flight and went silent" + (
            "; wire against stack needs the forensic rerun (debug level 4) to say whether bytes changed"
            if check is None
            else ""
        )
    elif answered:
        supported = "none of (1)–(3): the server's answer reached the hub's LAN; the device did not complete"
    else:
        supported = "none of (1)–(4): the wire and the stack agree and the server did not go silent"
    return Theories(answers, supported)


def _fourth(
    connection: Connection | None, check: WireVsStack | None, cloud: list[dict[str, Any]], check_from: str
) -> tuple[str, str]:
    """(4)'s sentence, and the supported explanation when bytes differ (else "")."""
    source = f" ({check_from})" if check_from else ""
    if check is None:
        return (
            "(4) Wire against stack not compared: the log holds no Mbed TLS input dump (debug level 4)"
            + (", and no forensic rerun has one" if not check_from else ""),
            "",
        )
    c = check.comparison
    if not check.differs:
        extra = f"; not compared: {'; '.join(c.not_compared)}" if c.not_compared else ""
        return f"(4) All {c.compared} compared bytes equal between the wire and the stack{source}{extra}", ""
    offsets = [d.offset for d in c.differences]
    messages = sorted({p.message for p in check.places if p.message})
    where = f"{_bytes(len(offsets))} at stream offset {_ranges(offsets)}" + (
        f" in {', '.join(messages)}" if messages else ""
    )
    digest = _path_digest(connection, cloud)
    if digest is False:
        return (
            f"(4) Bytes differ between the wire and the stack{source}: {where}; and the flight on the wire is not "
            "the one the server sent (its sha256 differs from the cloud's own digest)",
            "(4): the path changed bytes of the server's flight before the hub's LAN",
        )
    wire = (
        "the wire carried the flight as the server sent it (sha256 equal to the cloud's own digest)"
        if digest
        else "the wire is the reference (the server's own digest of its flight is not known on this bench)"
    )
    return (
        f"(4) Bytes differ between the wire and the stack{source}: {where}; {wire}, so the device changed them "
        "between its LAN port and Mbed TLS",
        f"(4): the device changed {_bytes(len(offsets))} of the server's flight ({where}) while the wire was intact",
    )


def _path_digest(connection: Connection | None, cloud: list[dict[str, Any]]) -> bool | None:
    """Whether the wire's first server flight has the sha256 the cloud logged for it; None when unknown."""
    if connection is None:
        return None
    flights = [e for e in cloud if e.get("event") == "flight sent" and e.get("flight") == 1]
    stream = connection.server_side.stream
    if not flights or not stream:
        return None
    first = flights[-1]
    size = int(first.get("bytes", 0))
    if size <= 0 or size > len(stream) or connection.server_side.holes:
        return None
    return hashlib.sha256(stream[:size]).hexdigest() == first.get("sha256")


def _gave_up(cloud: list[dict[str, Any]]) -> str | None:
    given = [e for e in cloud if e.get("event") == "gave up"]
    return str(given[-1].get("message")) if given else None


def _gave_up_at(cloud: list[dict[str, Any]], *, after: float) -> float | None:
    """When the cloud's log says it gave up on a handshake, at or after `after` (wall time), if it did."""
    times = [
        float(e["wall"])
        for e in cloud
        if e.get("event") == "gave up"
        and isinstance(e.get("wall"), int | float)
        and float(e["wall"]) >= after - 0.5
    ]
    return times[-1] if times else None


def _closes(connection: Connection, after: float) -> list[str]:
    """The server's FIN or RST after `after`, said with its time."""
    side, said = connection.server_side, []
    origin = connection.start
    if side.fin_time is not None and side.fin_time > after:
        said.append(f"a FIN at {side.fin_time - origin:.3f} s")
    if side.rst_time is not None and side.rst_time > after:
        said.append(f"a RST at {side.rst_time - origin:.3f} s")
    return said


def _when(record: TlsRecord, origin: float) -> str:
    return f"{record.when - origin:.3f} s ({record.content})" if record.when is not None else record.content


def _bytes(count: int) -> str:
    return f"{count} byte" if count == 1 else f"{count} bytes"


def _ranges(offsets: list[int]) -> str:
    runs: list[list[int]] = []
    for at in offsets:
        if runs and runs[-1][1] == at - 1:
            runs[-1][1] = at
        else:
            runs.append([at, at])
    return ", ".join(f"{a}–{b}" if a != b else str(a) for a, b in runs)


def write(folder: Path, theories: Theories) -> Path:
    """`theories.txt` in the attempt's folder."""
    target = folder / files.THEORIES
    target.write_text(theories.render(), encoding="utf-8")
    return target
