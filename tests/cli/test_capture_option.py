"""`rig diagnose --capture` and `rig diff --capture`: wire against stack and the theories on saved files."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from rig.cli import main
from tests.report.test_theories import FLIGHT, incident
from tests.report.test_wire_vs_stack import log_of
from tests.wire.craft import pcap_bytes

# The incident's end as Mbed TLS 2.28 prints it: Finished sent, client state 12, waiting for input, again.
_WAITING = [
    "ssl_cli.c:4261: client state: 12",
    "ssl_msg.c:5902: => parse change cipher spec",
    "ssl_msg.c:4311: => read record",
    "ssl_msg.c:2536: => fetch input",
    "ssl_msg.c:2696: in_left: 0, nb_want: 5",
    "ssl_msg.c:2720: in_left: 0, nb_want: 5",
    "ssl_tls.c:8094: <= handshake",
]
STALL = ["ssl_tls.c:6507: <= write finished", *_WAITING, "ssl_tls.c:8084: => handshake", *_WAITING]


def saved(tmp_path: Path, read: bytes) -> tuple[Path, Path]:
    log, capture = tmp_path / "uart.raw", tmp_path / "capture.pcap"
    log.write_text("\n".join(["ssl_tls.c:8084: => handshake", *log_of([read]), *STALL]) + "\n")
    capture.write_bytes(pcap_bytes(incident()))
    return log, capture


def test_diagnose_with_a_capture_finds_the_changed_bytes_and_answers_the_theories(tmp_path: Path) -> None:
    read = bytearray(FLIGHT)
    read[2000] ^= 0x40
    log, capture = saved(tmp_path, bytes(read))
    result = CliRunner().invoke(main, ["diagnose", str(log), "--capture", str(capture)])
    assert result.exit_code == 0, result.output
    assert f"Wire against stack ({capture}):" in result.output
    assert "    2000    00     40" in result.output
    assert (
        "Supported: (4): the device changed 1 byte of the server's flight (1 byte at stream offset 2000 in Certificate)"
        in result.output
    )
    document = json.loads(
        CliRunner().invoke(main, ["diagnose", "--json", str(log), "--capture", str(capture)]).output
    )
    assert document["outcome"] == "stalled"
    assert [(d["offset"], d["message"]) for d in document["wire_vs_stack"]["differences"]] == [
        (2000, "Certificate")
    ]
    assert document["theories"]["supported"].startswith("(4): the device changed 1 byte of")


def test_diff_with_captures_compares_each_log_with_its_own_wire(tmp_path: Path) -> None:
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good, good_capture = saved(tmp_path / "good", FLIGHT)
    read = bytearray(FLIGHT)
    read[700] ^= 1
    bad, capture = saved(tmp_path / "bad", bytes(read))
    result = CliRunner().invoke(
        main, ["diff", str(good), str(bad), "--capture", str(capture), "--good-capture", str(good_capture)]
    )
    assert result.exit_code == 0, result.output
    assert f"Wire against stack, good ({good_capture}):" in result.output
    assert f"{len(FLIGHT)} bytes compared, all equal" in result.output
    assert f"Wire against stack, bad ({capture}):" in result.output
    assert f"1 of {len(FLIGHT)} compared bytes differ" in result.output


def test_a_capture_that_is_not_one_is_refused_naming_the_file_with_exit_2(tmp_path: Path) -> None:
    log, _ = saved(tmp_path, FLIGHT)
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a capture\n")
    result = CliRunner().invoke(main, ["diagnose", str(log), "--capture", str(bogus)])
    assert result.exit_code == 2
    assert f"{bogus}: not a pcap or pcapng capture" in result.output
    missing = CliRunner().invoke(main, ["diff", str(log), str(log), "--capture", str(tmp_path / "none.pcap")])
    assert missing.exit_code == 2 and f"{tmp_path / 'none.pcap'}: no such capture file" in missing.output
