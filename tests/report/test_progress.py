"""The progress views: a live line rewritten in place on a terminal, plain lines in a log."""

from __future__ import annotations

from rig.report.progress import LiveLine, PlainLines


def test_the_live_line_is_rewritten_in_place_and_settles_into_the_verdict() -> None:
    out: list[str] = []
    view = LiveLine(out.append, width=100)
    view.show("tcp-rx-1024-satellite", "programming", "1.5 s")
    view.show(
        "tcp-rx-1024-satellite", "handshake", "state 12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC), 5425 B in"
    )
    view.settle("tcp-rx-1024-satellite", "stalled at SERVER_CHANGE_CIPHER_SPEC 11.6 s after the reset")
    view.show("tcp-rx-1460-satellite", "reset", "")
    assert out == [
        "\n  tcp-rx-1024-satellite: programming 1.5 s\x1b[K",
        "\r  tcp-rx-1024-satellite: handshake state 12 (MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC), 5425 B in\x1b[K",
        "\r  tcp-rx-1024-satellite: stalled at SERVER_CHANGE_CIPHER_SPEC 11.6 s after the reset\x1b[K ",
        "\n  tcp-rx-1460-satellite: reset\x1b[K",
    ]


def test_a_live_line_longer_than_the_terminal_is_cut_not_wrapped() -> None:
    out: list[str] = []
    LiveLine(out.append, width=50).show("tcp-rx-1024-satellite", "handshake", "x" * 80)
    line = out[0].removeprefix("\n").removesuffix("\x1b[K")
    assert len(line) == 49 and line.endswith("…")


def test_plain_lines_say_each_phase_once() -> None:
    out: list[str] = []
    view = PlainLines(out.append)
    view.show("c", "path", "switching to satellite")
    view.show("c", "path", "selected satellite in 1.0 s")
    view.show("c", "reset", "")
    view.settle("c", "completed 2.4 s after the reset")
    assert "".join(out).splitlines() == [
        "",
        "rig: c: path switching to satellite",
        "rig: c: reset",
        "rig: c: completed 2.4 s after the reset",
    ]
