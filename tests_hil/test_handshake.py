"""The HIL matrix: every firmware variant × every path of the bench completes its TLS handshake.

The rig's pytest plugin parametrizes `cell` from `--firmware-dir` × the bench file's paths, orders the
cells so each variant is programmed once, and runs each one to its verdict (image, path, reset, live
verdict) in the test's setup, so that a bench problem is an error, never a failure. A cell whose variant
file says `fail <category>` on that path is a strict xfail: it passes only
when the handshake fails with exactly that diagnosis.
"""

from __future__ import annotations

import re

from rig.hil.matrix import Cell

# Suites AWS IoT Core's TLS 1.2 policies offer that the hub's Mbed TLS build enables (ECDHE, AES-GCM).
EXPECTED_CIPHERSUITE = re.compile(r"^TLS-ECDHE-(RSA|ECDSA)-WITH-AES-(128|256)-GCM-SHA(256|384)$")


def test_handshake_completes_and_mqtt_connects(cell: Cell) -> None:
    result = cell.handshake()

    result.raise_for_failure()  # the diagnosis summary is the failure's message
    assert result.seconds.reset_to_verdict <= cell.time_budget_s, (
        f"connected, but after {result.seconds.reset_to_verdict:.1f} s: over the {cell.spec.path} "
        f"budget of {cell.time_budget_s:.1f} s (timeouts.boot_s + 10 round trips)"
    )
    assert result.ciphersuite and EXPECTED_CIPHERSUITE.match(result.ciphersuite), (
        f"negotiated {result.ciphersuite!r}, not an ECDHE AES-GCM suite AWS IoT Core offers"
    )
