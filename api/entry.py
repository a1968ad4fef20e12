"""The ``cdms`` console script. Loading the commands (typer, and what they import) takes
about half a second; a Ctrl-C meanwhile is ``error[ABORTED]``, as it is once they run."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from api.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("error[ABORTED]: interrupted\n")
        sys.exit(130)
    cli()
