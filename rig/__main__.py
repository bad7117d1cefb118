"""`python -m rig` is the `rig` command."""

from rig.cli import run

run()
