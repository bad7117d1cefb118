"""The simulated bench: the same hardware as a real bench, built from real parts on this machine.

A virtual hub (C, linked against the system's Mbed TLS), an ipecmd-compatible programmer, a pty UART,
an OpenSSH router with landline and satellite uplinks, and an AWS IoT Core stand-in (`rig.sim.cloud`:
a TLS 1.2 server with an Amazon-like certificate chain from `rig.sim.pki`, relaying MQTT to a real
mosquitto from `rig.sim.broker`). The harness drives it through the same drivers and bench-file format
as a real bench and never imports this package; `rig sim` in the CLI is the only way in.
"""
