"""The `rig` command: the root group; every command group lives in a module of its own.

Every command reports problems as `RigError`s; this module prints them one line each on stderr and
exits with the error's code (2 bad input, 3 bench problem, 1 firmware failure). No traceback reaches
the user for a problem the rig knows about.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console

from rig import __version__
from rig.cli import bench, config, gate, history, logs, report, wire
from rig.errors import RigError
from rig.sim import cli as sim_cli

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class RigGroup(click.Group):
    """A click group that turns RigErrors into clean stderr lines and the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RigError as exc:
            for line in exc.lines():
                err_console.print(f"[bold red]error:[/] {line}", markup=True, highlight=False)
            ctx.exit(exc.exit_code)


@click.group(cls=RigGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="rig")
def main() -> None:
    """Hardware-in-the-loop rig for the hub: firmware variants × network paths × the TLS handshake.

    \b
    Start with `rig config check benches/*.yaml firmware_configs/*.yaml`, then `make bench`.
    Exit codes: 0 ok, 1 firmware failure, 2 bad input, 3 bench (infrastructure) problem.
    """


# The command groups that live in their own modules, each listing its click commands in `commands`.
# `rig.sim` is the simulated bench: the harness imports nothing of it but this command group.
for _module in (config, logs, wire, bench, gate, history, report, sim_cli):
    for _command in _module.commands:
        main.add_command(_command)


def run() -> None:
    """Entry point for `python -m rig`."""
    main(prog_name="rig")


if __name__ == "__main__":
    sys.exit(main())
