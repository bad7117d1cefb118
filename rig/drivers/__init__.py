"""Drivers: one per part of a bench, each doing I/O and nothing else.

`uart` (the DUT's console), `programmers` (ipecmd, mdb, pic32prog), `ssh` (one pinned-key connection),
`router` (network paths over SSH, packet capture), `cloud` (AWS IoT lifecycle events over MQTT) and
`lease` (one owner per bench). Every part has the same lifecycle (`rig.drivers.part.Part`): `open()`,
`close()`, and `with part:` for both. Drivers read `rig.config` and report through `rig.events` and
`rig.errors`; they know nothing of cells, verdicts or reports.
"""
