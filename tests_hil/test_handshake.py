"""The HIL matrix: every firmware variant × every path of the bench completes its TLS handshake.

The rig's pytest plugin parametrizes `cell` from `--firmware-dir` × the bench file's paths, orders the
cells so each variant is programmed once, and runs each one to its verdict (image, path, reset, live
verdict) in the test's setup, so that a bench problem is an error, never a failure. The verdict is the
judge's (`rig.hil.judge`), the same one `rig gate` uses: `completed` already means within the path's time
budget and with an ECDHE AES-GCM suite AWS IoT Core offers. A cell whose variant file says
`fail <category> [at <STATE>]` on that path is a strict xfail: it passes only when the handshake fails
with exactly that diagnosis.
"""

from __future__ import annotations

from rig.hil.matrix import Cell


def test_handshake_completes_and_mqtt_connects(cell: Cell) -> None:
    cell.handshake().raise_for_failure()  # the judge's summary is the failure's message
