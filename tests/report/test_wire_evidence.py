"""The wire in an attempt's evidence: `wire.json` beside `capture.pcap`, its attachment, the record lane."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rig.errors import InfrastructureError
from rig.mbedtls import HandshakeTrace, LogParser
from rig.report import attachments
from rig.report import evidence as files
from rig.report.comparison import Side, series_from_trace, with_wire, write_comparison
from rig.report.evidence import capture_stopped, host_clock_offset, write_wire_json
from rig.report.timeline import TimelineSeries, plot_timeline
from rig.wire import WireView

DATA = Path(__file__).parents[1] / "wire" / "data"
CELL = "tcp-rx-1024-satellite"


@pytest.fixture
def attempt(tmp_path: Path) -> Path:
    """An attempt folder of the incident cell as the bench leaves it: capture, events, UART lines."""
    folder = tmp_path / CELL / "1"
    folder.mkdir(parents=True)
    shutil.copy(DATA / f"{CELL}.pcap", folder / files.CAPTURE)
    shutil.copy(DATA / f"{CELL}.events.jsonl", folder / files.EVENTS)
    shutil.copy(DATA / f"{CELL}.uart.jsonl", folder / files.UART_JSONL)
    return folder


def trace_of(folder: Path) -> HandshakeTrace:
    parser = LogParser()
    for line in (folder / files.UART_JSONL).read_text().splitlines():
        entry = json.loads(line)
        parser.feed(entry["text"], host_time=entry["mono"])
    return parser.trace


def test_wire_json_is_written_beside_the_capture_with_the_silence_until_the_capture_stopped(
    attempt: Path,
) -> None:
    written = write_wire_json(attempt)
    assert written == attempt / "wire.json"
    view = WireView.from_json(json.loads(written.read_text()))
    assert (view.last_sender, view.end_basis, view.silence_s) == ("client", "capture stopped", 10.252201)
    assert view.end == capture_stopped(attempt) == 1796191597.3527973


def test_an_attempt_without_capture_gets_no_wire_json(tmp_path: Path) -> None:
    assert write_wire_json(tmp_path) is None
    assert not (tmp_path / "wire.json").exists()


def test_a_capture_cut_short_is_kept_up_to_the_cut_and_an_unreadable_one_is_a_bench_problem(
    attempt: Path,
) -> None:
    capture = attempt / files.CAPTURE
    capture.write_bytes(capture.read_bytes()[:5000])
    view = json.loads(write_wire_json(attempt).read_text())  # type: ignore[union-attr]
    assert view["truncated"].startswith("frame 16 at byte 4774 of 5000 is cut short")
    capture.write_text("tcpdump: br-lan: No such device exists\n")
    with pytest.raises(
        InfrastructureError, match=r"^the bench's capture is unreadable: .*capture\.pcap: not a pcap"
    ):
        write_wire_json(attempt)


def test_wire_json_is_among_the_attachments_of_an_attempt() -> None:
    assert ("wire.json", "the wire: TCP segments and TLS records", "JSON") in attachments._ATTACHMENTS


def test_the_record_lane_puts_the_capture_on_the_trace_clock(attempt: Path) -> None:
    side = with_wire(Side(f"{CELL} attempt 1", trace_of(attempt), "stalled"), attempt)
    assert side.wire is not None and side.wall_minus_mono == host_clock_offset(attempt)
    series = series_from_trace(side)
    server = [m for m in series.records if m.sender == "server"]
    client = [m for m in series.records if m.sender == "client"]
    assert [(m.label, m.size) for m in server] == [("SH+Cert+SKE+CR+SHD", 5425)]
    assert [m.label for m in client] == ["CH", "Cert", "CKE", "CV", "CCS", "Fin"]
    # The flight is on the wire a few ms before Mbed TLS logs reading its first 1019 bytes.
    read_1019 = next(t for t, size in series.reads if size == 1019)
    assert 0.0 < read_1019 - server[0].t < 0.1
    # From the flight to the capture's stop the server sent nothing.
    assert series.silence is not None and series.silence.sender == "server"
    assert series.silence.start == server[0].t
    assert series.silence.end - series.silence.start == pytest.approx(10.252201, abs=1e-6)


def test_the_comparison_chart_reads_the_failing_attempts_wire_from_its_folder(attempt: Path) -> None:
    written = write_comparison(attempt, Side(f"{CELL} attempt 1", trace_of(attempt), "stalled"), None)
    assert written == [attempt / files.TIMELINE]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_chart_without_any_capture_keeps_its_two_rows(tmp_path: Path) -> None:
    plain = TimelineSeries(
        "a", states=[(0.0, 0, "HELLO_REQUEST"), (0.3, 2, "SERVER_HELLO")], reads=[(0.3, 5)]
    )
    out = plot_timeline([plain], tmp_path / "timeline.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
