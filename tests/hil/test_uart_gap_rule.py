"""The rule a verdict applies to the UART witness: which gaps of the port leave a boot unjudgeable."""

from __future__ import annotations

from rig.drivers.uart.gaps import UartGap
from rig.hil.judge import capture_problem, gap_effect

RESET = 100.0  # host monotonic time of the DUT's reset


def gap(lost: float, back: float | None, reason: str = "lost") -> UartGap:
    return UartGap(RESET + lost, 0.0, reason, back=None if back is None else RESET + back)


def effects(gaps: list[UartGap], banner: float | None, verdict: float) -> list[str]:
    banner_at = None if banner is None else RESET + banner
    return [gap_effect(g, reset_at=RESET, banner_at=banner_at, verdict_at=RESET + verdict) for g in gaps]


def problem(gaps: list[UartGap], banner: float | None, verdict: float) -> str | None:
    banner_at = None if banner is None else RESET + banner
    return capture_problem(gaps, reset_at=RESET, banner_at=banner_at, verdict_at=RESET + verdict)


def test_a_console_back_before_the_banner_costs_nothing() -> None:
    # A USB CDC console re-enumerating on the reset: gone 0.5 s, the firmware prints a second later.
    gaps = [gap(-20.0, -19.5, "lent"), gap(0.1, 0.6)]
    assert effects(gaps, banner=1.6, verdict=4.0) == ["before the reset", "before the boot banner"]
    assert problem(gaps, banner=1.6, verdict=4.0) is None


def test_a_gap_after_the_verdict_costs_nothing() -> None:
    assert effects([gap(5.0, None)], banner=1.6, verdict=4.0) == ["after the verdict"]
    assert problem([gap(5.0, None)], banner=1.6, verdict=4.0) is None


def test_a_gap_between_the_banner_and_the_verdict_makes_the_boot_unjudgeable() -> None:
    gaps = [gap(0.1, 0.6), gap(2.0, 3.0)]
    assert effects(gaps, banner=1.6, verdict=15.0) == ["before the boot banner", "the judged boot"]
    assert problem(gaps, banner=1.6, verdict=15.0) == (
        "the UART was gone during the judged boot (lost at +2.0 s for 1.0 s; banner at +1.6 s, verdict at "
        "+15.0 s): lines the DUT printed then were not seen, so the boot cannot be judged — check the "
        "UART's cable, hub or ser2net host (port_lost in events.jsonl)"
    )


def test_a_gap_still_open_at_the_verdict_is_named_as_not_back() -> None:
    text = problem([gap(2.0, None)], banner=1.6, verdict=2.1)
    assert text is not None and "(lost at +2.0 s and not back; banner at +1.6 s" in text


def test_no_banner_after_a_gap_means_the_boot_may_have_been_missed() -> None:
    # The run: the port back 3.8 s after the reset, after the hub had booted and run most of
    # its handshake; the lines that came later alone looked like a stall.
    gaps = [gap(0.1, 3.9)]
    assert effects(gaps, banner=None, verdict=19.0) == ["the boot banner"]
    assert problem(gaps, banner=None, verdict=19.0) == (
        "the UART was gone after the reset (lost at +0.1 s for 3.8 s) and no boot banner was seen: the "
        "boot the reset caused may have printed while the port was gone, so it cannot be judged — check "
        "how fast the UART comes back after a reset (port_back in events.jsonl)"
    )


def test_no_banner_and_no_gap_is_judged_as_before() -> None:
    # A DUT that prints no banner is judged from the reset on: without a gap nothing was missed.
    assert problem([gap(-20.0, -19.5)], banner=None, verdict=19.0) is None
    assert problem([], banner=None, verdict=19.0) is None


def test_lending_during_the_judged_boot_is_named_as_lent() -> None:
    text = problem([gap(2.0, 2.5, "lent")], banner=1.6, verdict=9.0)
    assert text is not None and "(lent to the programmer at +2.0 s for 0.5 s;" in text
