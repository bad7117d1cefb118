"""The live verdict's stall detector on real UART recordings of the simulated bench, replayed in time.

`data/*.uart.jsonl` are the lines (host monotonic time, text) of two satellite attempts (600 ms RTT):
tcp-rx-1460 completing and tcp-rx-1024 stalling at SERVER_CHANGE_CIPHER_SPEC (the incident). The
replay asks the parser for its verdict at every line and every 50 ms between lines, as the cell does
while the UART is quiet, with `stall_after` computed for the path's RTT.
"""

from __future__ import annotations

import json
from pathlib import Path

from rig.config import PathConfig, TimeoutsConfig
from rig.hil.attempt import stall_after_s
from rig.mbedtls import Diagnosis, LogParser, diagnose_parser

DATA = Path(__file__).resolve().parent / "data"
SATELLITE_RTT_MS = 600.0


def path_with_rtt(rtt_ms: float) -> PathConfig:
    verify = {"command": "true", "expect": "."}
    return PathConfig(host="router", activate=["true"], verify=verify, rtt_ms=rtt_ms)  # type: ignore[arg-type]


def replay(
    name: str, stretch: float, stall_after: float, until: float, waits: list[float]
) -> list[tuple[float, Diagnosis]]:
    """Verdicts over time for a recording whose gaps are multiplied by `stretch` (RTT scaling).

    `waits` receives, at every poll where Mbed TLS waits for input, the seconds since its last progress.
    """
    lines = [json.loads(line) for line in (DATA / name).read_text().splitlines()]
    start = lines[0]["mono"]
    timed = [(start + (line["mono"] - start) * stretch, line["text"]) for line in lines]
    parser = LogParser()
    verdicts: list[tuple[float, Diagnosis]] = []
    waits.clear()
    now = start
    for when, text in [*timed, (start + until, None)]:
        while True:
            if now + 0.05 < when:  # the cell polls every POLL_S while the UART is quiet
                now += 0.05
            else:
                now = when
                if text is not None:
                    parser.feed(text, host_time=when)
            verdicts.append((now - start, diagnose_parser(parser, now=now, stall_after=stall_after)))
            trace = parser.trace
            if trace.waiting_for_input and trace.last_progress_time is not None:
                waits.append(now - trace.last_progress_time)
            if verdicts[-1][1].outcome in ("completed", "failed", "stalled"):
                return verdicts
            if now == when:
                break
    return verdicts


def test_stall_after_is_the_documented_function_of_the_paths_rtt() -> None:
    timeouts = TimeoutsConfig()
    assert stall_after_s(timeouts, path_with_rtt(600)) == 6 + 6 * 0.6
    assert stall_after_s(timeouts, path_with_rtt(2000)) == 6 + 6 * 2.0


def test_a_healthy_satellite_handshake_stretched_to_2_s_rtt_never_looks_stalled() -> None:
    stretch = 2000.0 / SATELLITE_RTT_MS  # every wait for the server becomes as long as at 2 s RTT
    stall_after = stall_after_s(TimeoutsConfig(), path_with_rtt(2000))
    waits: list[float] = []
    verdicts = replay("tcp-rx-1460-satellite.uart.jsonl", stretch, stall_after, until=120, waits=waits)
    assert [d.outcome for _, d in verdicts].count("stalled") == 0
    assert verdicts[-1][1].outcome == "completed"
    print(
        f"handshake at 2 s RTT completes at {verdicts[-1][0]:.1f} s; longest wait for input "
        f"{max(waits):.1f} s = {max(waits) / stall_after:.0%} of stall_after ({stall_after:.1f} s)"
    )


def test_the_incidents_satellite_stall_is_judged_stall_after_seconds_after_the_last_inbound_byte() -> None:
    stall_after = stall_after_s(TimeoutsConfig(), path_with_rtt(SATELLITE_RTT_MS))
    verdicts = replay("tcp-rx-1024-satellite.uart.jsonl", 1.0, stall_after, until=120, waits=[])
    seconds, diagnosis = verdicts[-1]
    assert (diagnosis.outcome, diagnosis.category) == ("stalled", "stall_want_read")
    assert diagnosis.last_state["name"] == "MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC"
    # A virtual clock: the replay's own time, polled every 50 ms, not this machine's.
    assert stall_after <= (diagnosis.stall_seconds or 0) < stall_after + 0.1  # virtual clock
    print(f"incident judged stalled {seconds:.1f} s after the first line (the firmware waits 60 s)")
