"""A device that re-enumerates, through every URL kind, against real peers: a pty and a real ser2net.

The pty plays a USB CDC console: on a reset it disappears (its link dangles) and a new pty comes back
under the same path. Through ser2net 4.3.11 that ends the TCP session, and every session opened while
the device is absent gets ser2net's `Device open failure: …` as data before ser2net hangs up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rig.drivers.uart.port import Uart, UartError
from rig.drivers.uart.urls import refusal
from rig.events import Event, EventLog
from tests.peers.drivers import PtyDevice, Ser2net, settle

from .test_port import flood, wait_for

KINDS = ["pty", "rfc2217", "socket"]


def url_of(kind: str, device: PtyDevice, ser2net: Callable[..., Ser2net]) -> str:
    if kind == "pty":
        return device.url
    return ser2net(device.url, raw=kind == "socket").url


def port_backs(events: EventLog) -> list[Event]:
    return [e for e in events.history if e.kind == "port_back"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_reenumerated_device_is_reopened_and_every_byte_it_sends_after_its_return_is_kept(
    kind: str, pty_device: PtyDevice, ser2net: Callable[..., Ser2net], tmp_path: Path
) -> None:
    url = url_of(kind, pty_device, ser2net)
    events = EventLog()
    back = threading.Event()
    events.subscribe(lambda e: back.set() if e.kind == "port_back" else None)
    with Uart(url, 115200, events=events, name="hub") as port:
        settle(pty_device, port)
        port.record(tmp_path)
        pty_device.write(b"before the reset\n")
        port.expect("before the reset", timeout=5)
        pty_device.vanish()
        time.sleep(0.5)
        pty_device.appear()
        # The device speaks at once, before the Uart can have reopened: nothing of it may be lost.
        after = b"boot: image sha256=" + b"ab" * 32 + b"\r\n" + flood(20_000)
        pty_device.write(after)
        assert back.wait(10), "port_back was not recorded"
        wait_for(lambda: port.bytes_read >= len(after) + 17, 10, "reading after the return")
        gaps = port.gaps()
    assert (tmp_path / "uart.raw").read_bytes() == b"before the reset\n" + after
    (event,) = port_backs(events)
    assert event.fields["attempts"] >= 2  # the device was absent for a while: tries failed meanwhile
    assert event.fields["return_seen_by"] == ("device node" if kind == "pty" else "polling")
    assert 0 <= event.fields["return_to_back_s"] <= event.fields["gone_s"]
    (gap,) = gaps
    assert (gap.reason, gap.attempts, gap.return_to_back_s) == (
        "lost",
        event.fields["attempts"],
        event.fields["return_to_back_s"],
    )
    assert gap.seconds is not None and round(gap.seconds, 3) == event.fields["gone_s"]


@pytest.mark.parametrize("kind", ["rfc2217", "socket"])
def test_what_ser2net_says_while_the_device_is_absent_is_never_recorded_as_the_devices_bytes(
    kind: str, pty_device: PtyDevice, ser2net: Callable[..., Ser2net], tmp_path: Path
) -> None:
    url = url_of(kind, pty_device, ser2net)
    events = EventLog()
    with Uart(url, 115200, events=events, name="hub") as port:
        settle(pty_device, port)
        port.record(tmp_path)
        pty_device.vanish()
        wait_for(lambda: bool(port.gaps()), 5, "the loss")
        time.sleep(1.0)  # dozens of sessions refused by ser2net meanwhile
        pty_device.appear()
        pty_device.write(b"back\n")
        port.expect("^back$", timeout=10)
    assert (tmp_path / "uart.raw").read_bytes() == b"back\n"
    (event,) = port_backs(events)
    assert event.fields["attempts"] > 10


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("socket", "the server refused the session: 'Device open failure: Value or file not found'"),
        ("rfc2217", "the server closed the connection before"),
    ],
)
def test_an_absent_device_behind_ser2net_is_refused_naming_what_ser2net_said(
    kind: str, said: str, pty_device: PtyDevice, ser2net: Callable[..., Ser2net]
) -> None:
    url = url_of(kind, pty_device, ser2net)
    pty_device.vanish()
    with pytest.raises(UartError) as caught:
        Uart(url, 115200, name="hub").open(timeout=0.3)
    message = str(caught.value)
    assert message.startswith(f"hub: cannot open {url} at 115200 baud (")
    assert said in message
    assert "check the adapter is plugged in" in message


def test_lending_the_port_is_a_gap_too(pty_device: PtyDevice) -> None:
    with Uart(pty_device.url, 115200, name="hub") as port:
        with port.lend():
            (lent,) = port.gaps()
            assert (lent.reason, lent.back) == ("lent", None)  # still gone: no end yet
        (gap,) = port.gaps()
    assert gap.reason == "lent" and gap.seconds is not None and gap.seconds >= 0


def test_gaps_since_a_moment_leave_out_the_ones_over_before_it(pty_device: PtyDevice) -> None:
    with Uart(pty_device.url, 115200, name="hub") as port:
        for _ in range(2):
            with port.lend():
                pass
        first, second = port.gaps()
        assert first.back is not None and second.back is not None
        assert port.gaps(since=first.back + 1e-6) == [second]
        assert port.gaps(since=second.back + 1e-6) == []


def test_ser2nets_refusals_are_recognised_from_their_first_bytes() -> None:
    assert refusal(b"Device open failure: Value or file not found\r\n") == (
        "Device open failure: Value or file not found"
    )
    assert refusal(b"Port already in use\r\n") == "Port already in use"
    assert refusal(b"Device open") == ""  # may still become one: wait for the rest of the line
    assert refusal(b"boot: image sha256=ab\r\n") is None
    assert refusal(b"D") == ""
    assert refusal(b"Dx") is None


def test_a_uart_closed_while_its_port_was_gone_ends_that_gap_when_opened_again(pty_device: PtyDevice) -> None:
    port = Uart(pty_device.url, 115200, name="hub")
    port.open(timeout=5)
    pty_device.vanish()
    wait_for(lambda: bool(port.gaps()), 5, "the loss")
    port.close()
    pty_device.appear()
    port.open(timeout=5)
    try:
        (gap,) = port.gaps()
        assert gap.back is not None and gap.reason == "lost"
        pty_device.vanish()
        wait_for(lambda: len(port.gaps()) == 2, 5, "a second loss, recorded as a gap of its own")
    finally:
        port.close()
