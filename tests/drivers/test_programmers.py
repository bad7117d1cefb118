"""Programmers against stand-in executables that print the real tools' transcripts (bench.md §1).

Each stand-in (tests/peers/stand_ins/) is a real child process: the driver starts it, reads its
output, kills it on a timeout. What a user relies on: success only on the tool's success markers and
never on exit 0 alone; the right tool picked by serial number; one retry for problems a retry can fix;
every attempt's whole output kept; a failure that names the problem and the transcript.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rig.config import ProgrammerConfig
from rig.drivers.programmers import image_sha256, make_programmer
from rig.drivers.programmers.commandline import CommandLineProgrammer
from rig.errors import ConfigError, InfrastructureError
from rig.events import EventLog

STAND_INS = Path(__file__).parent.parent / "peers" / "stand_ins"
PART = "32MZ2048EFM100"
SERIAL = "BUR191234567"


class StandIn:
    """The folder a stand-in reads its scenarios from and records its calls in."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def play(self, *scenarios: str) -> None:
        (self.folder / "scenarios").write_text("\n".join(scenarios) + "\n")

    def calls(self) -> list[list[str]]:
        path = self.folder / "calls.jsonl"
        return [json.loads(line)["argv"] for line in path.read_text().splitlines()] if path.exists() else []

    def pids(self) -> list[int]:
        path = self.folder / "pids"
        return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    folder = tmp_path / "stand-in"
    folder.mkdir()
    monkeypatch.setenv("RIG_STAND_IN_DIR", str(folder))
    monkeypatch.setenv("RIG_STAND_IN_SERIAL", SERIAL)
    monkeypatch.setattr("rig.drivers.programmers.commandline.RETRY_PAUSE_S", 0.0)
    return StandIn(folder)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "tcp-rx-1460.hex"
    path.write_text(":020000040000FA\n:10000000000102030405060708090A0B0C0D0E0F78\n:00000001FF\n")
    return path


def programmer(kind: str, *, events: EventLog | None = None, **overrides: object) -> CommandLineProgrammer:
    values: dict[str, object] = {
        "kind": kind,
        "tool": "ICD4" if kind != "pic32prog" else None,
        "serial": SERIAL,
        "executable": str(STAND_INS / kind),
        "timeout_s": 20,
    }
    values.update(overrides)
    made = make_programmer(ProgrammerConfig.model_validate(values), PART, events=events)
    assert isinstance(made, CommandLineProgrammer)
    return made


def transcripts(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("programmer-*.log"))


# ------------------------------------------------------------------------------------------ ipecmd


def test_ipecmd_programs_the_tool_with_the_configured_serial_and_keeps_the_whole_output(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    events = EventLog()
    result = programmer("ipecmd", events=events).program(image, out_dir=tmp_path / "attempt")

    assert (result.ok, result.skipped, result.attempts) == (True, False, 1)
    assert result.image_sha256 == image_sha256(image)
    assert stand_in.calls() == [["-TPICD4", f"-TS{SERIAL}", f"-P{PART}", f"-F{image}", "-M", "-OL"]]
    assert result.transcript == tmp_path / "attempt" / "programmer-1.log"
    text = result.transcript.read_text()
    assert "Programming/Verify complete" in text and "Operation Succeeded" in text
    assert text.splitlines()[-1].startswith("# exit code 0")
    assert [e.kind for e in events.history] == ["flash_started", "flash_done"]


def test_ipecmd_exit_0_with_target_not_found_is_a_failure_retried_once(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    stand_in.play("no_target")
    with pytest.raises(InfrastructureError) as caught:
        programmer("ipecmd").program(image, out_dir=tmp_path)

    message = str(caught.value)
    assert message.startswith(f"ipecmd ICD4 {SERIAL}: programming tcp-rx-1460.hex failed (twice): ")
    assert "found no target (could not detect VDD) — check that the hub is powered" in message
    assert message.endswith(f"the tool's output is in {tmp_path / 'programmer-2.log'}")
    assert transcripts(tmp_path) == ["programmer-1.log", "programmer-2.log"]
    assert len(stand_in.calls()) == 2


def test_ipecmd_connection_failed_followed_by_operation_succeeded_is_a_failure(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    stand_in.play("connection_failed")
    with pytest.raises(InfrastructureError, match=r"failed \(twice\): the programmer's connection failed — "):
        programmer("ipecmd").program(image, out_dir=tmp_path)
    assert "Operation Succeeded" in (tmp_path / "programmer-1.log").read_text()


def test_a_retry_after_no_target_that_succeeds_reports_two_attempts(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    stand_in.play("no_target", "success")
    events = EventLog()
    result = programmer("ipecmd", events=events).program(image, out_dir=tmp_path)

    assert (result.ok, result.attempts, result.transcript) == (True, 2, tmp_path / "programmer-2.log")
    failed = [e for e in events.history if e.kind == "flash_attempt_failed"]
    assert [(e.fields["attempt"], e.fields["retry"]) for e in failed] == [(1, True)]
    assert "Target device was not found" in (tmp_path / "programmer-1.log").read_text()


def test_ipecmd_verify_failure_exit_7_is_not_retried(stand_in: StandIn, image: Path, tmp_path: Path) -> None:
    stand_in.play("verify_failed", "success")
    with pytest.raises(
        InfrastructureError, match=r"failed \(once\): verification failed: the flash does not"
    ):
        programmer("ipecmd").program(image, out_dir=tmp_path)
    assert len(stand_in.calls()) == 1


def test_ipecmd_programmer_not_found_names_the_serial_to_check(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    with pytest.raises(InfrastructureError) as caught:
        programmer("ipecmd", serial="BUR000000999").program(image, out_dir=tmp_path)
    assert "no programmer found — check the USB cable, that programmer.serial (BUR000000999)" in str(
        caught.value
    )
    assert len(stand_in.calls()) == 2


def test_ipecmd_invalid_device_id_exit_1_names_the_wiring(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    stand_in.play("invalid_device_id")
    with pytest.raises(
        InfrastructureError, match=r"invalid device ID — check the ICSP wiring and that dut.part"
    ):
        programmer("ipecmd").program(image, out_dir=tmp_path)


def test_a_hung_tool_is_killed_at_its_timeout_and_retried_once(
    stand_in: StandIn, image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rig.drivers.programmers.runner._TERM_GRACE_S", 0.3)
    stand_in.play("hang")
    with pytest.raises(
        InfrastructureError, match=r"failed \(twice\): did not finish within \d+ s and was killed"
    ):
        programmer("ipecmd", timeout_s=1.0).program(image, out_dir=tmp_path)

    assert (tmp_path / "programmer-1.log").read_text().splitlines()[-1] == "# killed after the 1 s timeout"
    for pid in stand_in.pids():  # it ignored SIGTERM; SIGKILL ended it
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_missing_executable_names_the_bench_file_key(image: Path, tmp_path: Path) -> None:
    with pytest.raises(
        InfrastructureError, match=r"executable '/nonexistent/ipecmd' not found .* programmer\.executable"
    ):
        programmer("ipecmd", executable="/nonexistent/ipecmd").program(image, out_dir=tmp_path)


def test_an_image_whose_sha256_differs_from_the_variant_file_is_refused(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"sha256 is [0-9a-f]{64}, the variant file says 0{64}"):
        programmer("ipecmd").program(image, out_dir=tmp_path, sha256="0" * 64)
    assert stand_in.calls() == []


def test_ipecmd_reset_connects_and_releases_the_target(stand_in: StandIn) -> None:
    events = EventLog()
    programmer("ipecmd", events=events).reset()
    assert stand_in.calls() == [["-TPICD4", f"-TS{SERIAL}", f"-P{PART}", "-OL"]]
    assert [e.kind for e in events.history] == ["reset"]


def test_ipecmd_reset_without_a_target_fails_despite_operation_succeeded(stand_in: StandIn) -> None:
    stand_in.play("no_target")
    with pytest.raises(
        InfrastructureError, match=r"resetting the DUT failed: the programmer found no target"
    ):
        programmer("ipecmd").reset()


# --------------------------------------------------------------------------------------------- mdb


def test_mdb_picks_the_tool_by_serial_and_writes_the_command_file(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    result = programmer("mdb", extra_args=["poweroptions.powerenable false"]).program(image, out_dir=tmp_path)

    assert (result.ok, result.attempts) == (True, 1)
    script = (tmp_path / "mdb-program.txt").read_text().splitlines()
    assert script == [
        f"Device PIC{PART}",
        "Set poweroptions.powerenable false",
        "Hwtool ICD4 -p 1",
        f'Program "{image}"',
        "Sleep 1000",
        "Reset",
        "Quit",
    ]
    assert "ChronicleHashClosedException" in result.transcript.read_text()  # harmless after success


def test_mdb_without_the_configured_serial_lists_what_is_attached(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    with pytest.raises(InfrastructureError) as caught:
        programmer("mdb", serial="BUR000000999").program(image, out_dir=tmp_path)
    assert (
        "no programmer with serial BUR000000999 is attached (MDB lists: 0 MPLAB PICkit 4 (BUR000000042); "
        f"1 MPLAB ICD 4 ({SERIAL})) — check the USB cable and programmer.serial" in str(caught.value)
    )


def test_mdb_exit_0_with_target_not_found_is_a_failure(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    stand_in.play("success", "no_target", "success", "no_target")  # listing, program, listing, program
    with pytest.raises(InfrastructureError, match=r"failed \(twice\): the programmer found no target"):
        programmer("mdb").program(image, out_dir=tmp_path)


def test_mdb_verify_failure_is_not_retried(stand_in: StandIn, image: Path, tmp_path: Path) -> None:
    stand_in.play("success", "verify_failed", "success")
    with pytest.raises(InfrastructureError, match=r"failed \(once\): verification failed"):
        programmer("mdb").program(image, out_dir=tmp_path)


def test_mdb_reset_sends_reset_to_the_selected_tool(stand_in: StandIn) -> None:
    programmer("mdb").reset()
    script = stand_in.calls()[-1][0]
    assert Path(script).read_text().splitlines()[-3:] == ["Reset", "Echo rig: reset sent", "Quit"]


# --------------------------------------------------------------------------------------- pic32prog


def test_pic32prog_passes_the_adapter_device_and_succeeds_on_the_program_rate_line(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    device = "/dev/serial/by-id/usb-pic32-bootloader"
    result = programmer("pic32prog", serial=device).program(image, out_dir=tmp_path)
    assert result.ok
    assert stand_in.calls() == [["-d", device, str(image)]]


def test_pic32prog_verify_mismatch_quotes_the_address(stand_in: StandIn, image: Path, tmp_path: Path) -> None:
    stand_in.play("verify_failed")
    with pytest.raises(InfrastructureError) as caught:
        programmer("pic32prog").program(image, out_dir=tmp_path)
    assert "verification failed: the flash does not hold the image (" in str(caught.value)
    assert "error at address 1d000100: file=12345678, mem=ffffffff" in str(caught.value)


def test_pic32prog_cable_problem_is_retried_then_reported(
    stand_in: StandIn, image: Path, tmp_path: Path
) -> None:
    stand_in.play("no_target")
    with pytest.raises(InfrastructureError, match=r"failed \(twice\): the adapter found no target"):
        programmer("pic32prog").program(image, out_dir=tmp_path)


def test_pic32prog_reset_is_a_probe_run(stand_in: StandIn) -> None:
    programmer("pic32prog", serial=None).reset()
    assert stand_in.calls() == [[]]


INTERRUPTED = """
import sys
from pathlib import Path
from rig.config import ProgrammerConfig
from rig.drivers.programmers import make_programmer
config = ProgrammerConfig(kind="ipecmd", tool="ICD4", serial=sys.argv[1], executable=sys.argv[2], timeout_s=60)
make_programmer(config, "32MZ2048EFM100").program(Path(sys.argv[3]), out_dir=Path(sys.argv[4]))
"""


def test_ctrl_c_while_programming_stops_the_tool_too(stand_in: StandIn, image: Path, tmp_path: Path) -> None:
    stand_in.play("hang")
    harness = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, SERIAL, str(STAND_INS / "ipecmd"), str(image), str(tmp_path)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not stand_in.pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # the tool prints its banner and hangs
        harness.send_signal(signal.SIGINT)
        _, err = harness.communicate(timeout=15)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(timeout=5)

    assert b"KeyboardInterrupt" in err
    assert (tmp_path / "programmer-1.log").read_text().splitlines()[
        -1
    ] == "# stopped: the harness was interrupted"
    for pid in stand_in.pids():  # the tool runs in its own session: the harness had to end it
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
