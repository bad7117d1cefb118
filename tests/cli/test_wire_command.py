"""`rig wire` as a user and a script meet it: the text, the JSON, one line and exit 2 for a bad file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rig.cli import main

DATA = Path(__file__).parents[1] / "wire" / "data"
INCIDENT = DATA / "tcp-rx-1024-satellite.pcap"


@pytest.fixture
def attempt(tmp_path: Path) -> Path:
    """The incident capture in an attempt folder, with the attempt's events beside it."""
    shutil.copy(INCIDENT, tmp_path / "capture.pcap")
    shutil.copy(DATA / "tcp-rx-1024-satellite.events.jsonl", tmp_path / "events.jsonl")
    return tmp_path / "capture.pcap"


def test_the_text_lists_each_direction_s_records_and_who_went_silent(attempt: Path) -> None:
    result = CliRunner().invoke(main, ["wire", str(attempt)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(
        f"{attempt}: pcap (ethernet), 34 frames, 1 TCP connection, 11.161 s until the capture stopped"
    )
    assert lines[1] == (
        "connection 1: 192.168.8.50:49153 → 203.0.113.10:8883, TLS 1.2, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "
        "SNI sim-ats.iot.us-east-1.amazonaws.com"
    )
    assert (
        "     0.909  server   5425  ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone"
        in lines
    )
    assert "     1.279  client     45  Finished (encrypted)" in lines
    assert (
        lines[-1] == "  last sender: client at 1.279 s; server silent for 10.252 s until the capture stopped"
    )


def test_the_json_is_what_wire_json_holds(attempt: Path) -> None:
    result = CliRunner().invoke(main, ["wire", "--json", str(attempt)])
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert {
        "schema",
        "source",
        "format",
        "link",
        "start",
        "end",
        "end_basis",
        "last_sender",
        "silence_s",
    } <= set(document)
    (connection,) = document["connections"]
    record = connection["server_side"]["records"][0]
    assert (record["type_name"], record["version"], record["length"]) == ("handshake", "TLS 1.2", 5420)
    assert (document["last_sender"], document["silence_s"]) == ("client", 10.252201)


def test_stopped_overrides_the_events_and_segments_are_listed_on_request(attempt: Path) -> None:
    result = CliRunner().invoke(main, ["wire", "--segments", "--stopped", "1796191588.191615", str(attempt)])
    assert result.exit_code == 0
    assert "server silent for 1.091 s until the capture stopped" in result.output
    assert (
        "     0.908    server seg #8 PA  off 1024 len 369 win 65535  [retransmission]"
        in result.output.splitlines()
    )


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, "no such capture file"),
        (b"not a capture at all\n", "not a pcap or pcapng capture (it starts with 6e 6f 74 20 61 20 63 61)"),
        (INCIDENT.read_bytes()[:5000], "truncated: frame 16 at byte 4774 of 5000 is cut short"),
    ],
)
def test_a_bad_capture_is_one_line_naming_the_file_and_exit_2(
    tmp_path: Path, content: bytes | None, error: str
) -> None:
    target = tmp_path / "capture.pcap"
    if content is not None:
        target.write_bytes(content)
    result = CliRunner().invoke(main, ["wire", str(target)])
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith(f"error: {target}: {error}")


def test_partial_reads_a_capture_cut_short_up_to_the_cut(tmp_path: Path) -> None:
    target = tmp_path / "cut.pcap"
    target.write_bytes(INCIDENT.read_bytes()[:5000])
    result = CliRunner().invoke(main, ["wire", "--partial", str(target)])
    assert result.exit_code == 0
    assert result.output.splitlines()[1].startswith("  truncated: frame 16 at byte 4774 of 5000 is cut short")


def test_rig_help_lists_the_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "wire" in result.output
