"""The ``cdms`` console script. Loading the commands (typer, and what they import, some of
it only once a command is chosen) takes about half a second; a Ctrl-C meanwhile is
``error[ABORTED]``, as it is once they run (api/cli: ``main`` maps its commands' own)."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from api.cli import main as cli

        cli()
    except KeyboardInterrupt:  # (a command's own is error[ABORTED] already, in cli())
        sys.stderr.write("error[ABORTED]: interrupted\n")
        sys.exit(130)
