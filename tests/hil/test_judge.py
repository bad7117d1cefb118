"""The judge's rules on real UART recordings of the simulated bench (`data/*.uart.jsonl`), replayed.

Each test builds the witnesses an attempt would have gathered — the lines of a satellite attempt fed to
`Attempt`'s own line handling order (reset cause, banner, judged boot), UART gaps, the cloud's word — and
asks `judge()` what they support. The end-to-end proofs with faults on the simulated bench are in
test_matrix_sim.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rig.drivers.uart.gaps import UartGap
from rig.hil.attempt import SUITE_NAME
from rig.hil.judge import CLOUD_CONFIRM_S, Boot, Judgement, Rules, Witnesses, judge
from rig.mbedtls import LogParser

DATA = Path(__file__).resolve().parent / "data"
BANNER = re.compile(r"image sha256[:=]\s*([0-9a-fA-F]{64})")
CAUSE = re.compile(r"reset cause[:=]?\s*([A-Za-z0-9_]+)")
MQTT = re.compile(r"MQTT CONNACK.*(accepted|rc=0)")
RULES = Rules(stall_after_s=9.6, time_budget_s=21.0, boot_s=15.0, cell_s=120.0)


def recording(name: str) -> list[tuple[float, str]]:
    return [(d["mono"], d["text"]) for d in map(json.loads, (DATA / name).read_text().splitlines())]


def witness(lines: list[tuple[float, str]], reset_at: float) -> Witnesses:
    """Witnesses as the attempt builds them from these lines (a reset cause, boots, the first boot's trace)."""
    w = Witnesses(reset_at=reset_at)
    for mono, text in lines:
        if found := CAUSE.search(text):
            w.reset_cause = found.group(1)
        if found := BANNER.search(text):
            w.boots.append(Boot(mono, found.group(1), w.reset_cause))
            w.reset_cause = None
            if len(w.boots) == 1:
                w.uart = LogParser()
        if len(w.boots) > 1:
            continue
        w.lines_seen += 1
        w.uart.feed(text, host_time=mono)
        if w.mqtt_connected_at is None and MQTT.search(text):
            w.mqtt_connected_at = mono
        if w.suite_on_uart is None and (suite := SUITE_NAME.search(text)):
            w.suite_on_uart = suite.group(0)
    return w


def final(w: Witnesses, at: float) -> Judgement:
    judgement = judge(w, RULES, at, final=True)
    assert judgement is not None
    return judgement


def after_reset(lines: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """The lines from the attempt's reset on: a recording begins with the previous boot's last lines."""
    start = max(i for i, (_, text) in enumerate(lines) if "boot ROM" in text)
    return lines[start - 1 :]


COMPLETED = after_reset(recording("tcp-rx-1460-satellite.uart.jsonl"))
STALLED = after_reset(recording("tcp-rx-1024-satellite.uart.jsonl"))
RESET = COMPLETED[0][0] - 0.05


def test_a_healthy_handshake_with_the_mqtt_line_is_completed_with_its_suite() -> None:
    w = witness(COMPLETED, RESET)
    judgement = final(w, COMPLETED[-1][0])
    assert (judgement.verdict, judgement.category) == ("completed", "completed")
    assert judgement.ciphersuite is not None and judgement.ciphersuite.startswith("TLS-ECDHE-")
    assert judgement.bench_problem is None


def test_a_second_boot_is_an_unexpected_reboot_with_its_reset_cause_even_if_it_then_connects() -> None:
    # The hub resets itself 1.2 s into its boot; the second boot completes (the whole recording again).
    cut = next(i for i, (mono, _) in enumerate(COMPLETED) if mono > COMPLETED[0][0] + 1.2)
    shift = COMPLETED[cut][0] - COMPLETED[0][0] + 0.3
    second = [(mono + shift, text.replace("reset cause POR", "reset cause WDTO")) for mono, text in COMPLETED]
    w = witness(COMPLETED[:cut] + second, RESET)
    judgement = final(w, second[-1][0])
    assert (judgement.verdict, judgement.category) == ("failed", "unexpected_reboot")
    assert "(reset cause: WDTO)" in judgement.summary and judgement.error == "reset cause WDTO"
    assert judgement.last_state is not None  # where the first boot was when it went
    # The live watch stops at the second banner: no need to wait for the second boot's fate.
    assert judge(w, RULES, second[5][0], final=False) == judgement


def test_a_uart_gap_during_the_judged_boot_is_a_bench_problem_not_a_stall() -> None:
    cut = next(i for i, (mono, _) in enumerate(COMPLETED) if mono > COMPLETED[0][0] + 1.2)
    w = witness(COMPLETED[:cut], RESET)  # the port went away 1.2 s in: the rest was never seen
    lost = COMPLETED[cut][0]
    w.uart_gaps = [UartGap(lost=lost, lost_wall=0.0, reason="lost")]
    w.cloud = "connected"  # the hub went on and connected, as the cloud saw
    judgement = final(w, lost + 40)
    assert judgement.verdict == "error" and judgement.category is None
    assert judgement.bench_problem is not None and judgement.bench_problem.part == "uart"
    assert "the UART was gone during the judged boot (lost at +" in judgement.summary
    assert (
        "and not back" in judgement.summary and "the cloud saw the DUT connect meanwhile" in judgement.summary
    )


def test_a_uart_gap_before_the_judged_boot_does_not_count() -> None:
    w = witness(COMPLETED, RESET)
    # The previous boot's console, and this reset's re-enumeration back before the banner: both cost nothing.
    w.uart_gaps = [
        UartGap(lost=RESET - 3.0, lost_wall=0.0, reason="lost", back=RESET - 2.5),
        UartGap(lost=RESET + 0.001, lost_wall=0.0, reason="lost", back=COMPLETED[1][0] - 0.01),
    ]
    assert final(w, COMPLETED[-1][0]).verdict == "completed"


def test_the_incident_stalls_at_client_state_12_stall_after_seconds_after_its_last_byte() -> None:
    w = witness(STALLED, STALLED[0][0] - 0.05)
    last = w.uart.trace.last_progress_time
    assert last is not None
    assert judge(w, RULES, last + RULES.stall_after_s - 1.0, final=False) is None
    judgement = judge(w, RULES, last + RULES.stall_after_s + 1.0, final=False)
    assert judgement is not None
    assert (judgement.verdict, judgement.category, judgement.last_state) == (
        "stalled",
        "stall_want_read",
        "SERVER_CHANGE_CIPHER_SPEC",
    )


def test_completed_waits_for_the_cloud_and_its_silence_is_a_cloud_problem() -> None:
    w = witness(COMPLETED, RESET)
    w.cloud = "waiting"
    assert w.mqtt_connected_at is not None
    assert judge(w, RULES, w.mqtt_connected_at + 1.0, final=False) is None
    judgement = judge(w, RULES, w.mqtt_connected_at + CLOUD_CONFIRM_S + 0.1, final=False)
    assert judgement is not None and judgement.verdict == "error"
    assert judgement.bench_problem is not None and judgement.bench_problem.part == "cloud"
    w.cloud = "connected"
    assert final(w, w.mqtt_connected_at + 1.0).summary.endswith("and the cloud saw it connect")


@pytest.mark.parametrize(
    ("budget", "suite", "category"),
    [(0.5, None, "over_time_budget"), (30.0, "TLS-RSA-WITH-AES-128-CBC-SHA", "weak_ciphersuite")],
)
def test_completed_is_held_to_the_time_budget_and_the_suite_everywhere(
    budget: float, suite: str | None, category: str
) -> None:
    w = witness(COMPLETED, RESET)
    rules = Rules(stall_after_s=9.6, time_budget_s=budget, boot_s=15.0, cell_s=120.0)
    if suite is not None:  # as if the hub had negotiated (and printed) another suite
        w = witness([(mono, re.sub(r"TLS-ECDHE-[A-Z0-9-]+", suite, text)) for mono, text in COMPLETED], RESET)
    judgement = judge(w, rules, COMPLETED[-1][0], final=True)
    assert judgement is not None and (judgement.verdict, judgement.category) == ("failed", category)


def test_no_line_at_all_is_a_timeout_saying_so() -> None:
    judgement = final(Witnesses(reset_at=100.0), 220.0)
    assert (judgement.verdict, judgement.category) == ("timeout", "timeout")
    assert judgement.summary == "no UART line within 120 s of the reset"


def test_a_port_gone_over_the_banner_is_a_bench_problem_once_the_banner_is_due() -> None:
    w = Witnesses(reset_at=RESET)  # nothing seen: the port went before the reset and came back late
    w.uart_gaps = [UartGap(lost=RESET - 1.0, lost_wall=0.0, reason="lost", back=RESET + 20.0)]
    assert judge(w, RULES, RESET + RULES.boot_s - 1.0, final=False) is None  # the banner may still come
    judgement = judge(w, RULES, RESET + RULES.boot_s + 0.1, final=False)
    assert judgement is not None and judgement.verdict == "error"
    assert "no boot banner was seen" in judgement.summary
