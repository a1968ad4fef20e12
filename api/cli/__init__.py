"""The ``cdms`` command.

Every failure is one line on stderr, ``error[CODE]: message``, and a non-zero exit:
1 for a runtime failure, 2 for a usage error, 130 for an interrupt (Ctrl-C:
``error[ABORTED]``), 128 + the signal's number for a SIGTERM or SIGHUP a command turns
into a clean stop (``cdms db backup``: 143, 129, ``error[ABORTED]``). No traceback
reaches the user.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import Abort, TyperException

from api.cli import apikey as apikey_cli
from api.cli import bi as bi_cli
from api.cli import db as db_cli
from api.cli import etl as etl_cli
from api.cli import ml as ml_cli
from api.cli import persisted as persisted_cli
from api.cli import semantic as semantic_cli
from api.cli.common import err_console
from api.cli.export_schema import export_schema
from api.cli.report import report
from api.cli.seed import seed
from api.cli.serve import serve

app = typer.Typer(
    name="cdms",
    help="cdms: customer-data platform (GraphQL API, warehouse, cubes, models).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_cli.app, name="db")
app.add_typer(etl_cli.app, name="etl")
app.add_typer(semantic_cli.app, name="semantic")
app.add_typer(ml_cli.app, name="ml")
app.add_typer(apikey_cli.app, name="apikey")
app.add_typer(bi_cli.app, name="bi")
app.add_typer(persisted_cli.app, name="persisted")
app.command("serve")(serve)
app.command("export-schema")(export_schema)
app.command("seed")(seed)
app.command("report")(report)


# typer turns a KeyboardInterrupt into this exit code of its own, silently
# (``typer.core._main``), wherever it lands between parsing and the command's end
INTERRUPTED = 130


def _fail(code: str, message: str, exit_code: int) -> None:
    """``error[CODE]: message`` on one line of stderr: each value quoted in it clipped as the
    API's errors are, and control characters escaped (an escape sequence in a file name or an
    argument would otherwise run on the operator's terminal)."""
    from db.errors import printable
    from schema.errors import bounded

    shown = printable(bounded(message.rstrip()))  # (libpq's messages end in a line break)
    err_console.print(
        f"error[{code}]: {shown}", markup=False, highlight=False, emoji=False, soft_wrap=True
    )
    sys.exit(exit_code)


def _fail_database(exc: BaseException) -> None:
    """A database error (SQLAlchemy's or psycopg's) as ``error[CODE]``: its domain code where
    db/errors.py knows the SQLSTATE, else ``DATABASE`` and the server's first line."""
    from db.errors import from_db_error

    mapped = from_db_error(exc)
    if mapped is None:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _fail("DATABASE", first, 1)
    else:
        _fail(mapped.code, mapped.message, 1)


def _check_settings_text() -> None:
    """DATABASE_URL and the CDMS_* values are text: a byte that is not UTF-8 (which Python
    keeps as a surrogate) reached psycopg or the database as an encoding traceback. A data
    folder is a path, which the file system takes as any bytes."""
    import os

    for name, value in os.environ.items():
        if (name == "DATABASE_URL" or name.startswith("CDMS_")) and name != "CDMS_DATA_DIR":
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                # (the value is not shown: it may be a password or a secret)
                _fail("CONFIG", f"{name} is not UTF-8 text", 1)


def main(argv: list[str] | None = None) -> None:
    from sqlalchemy.exc import DBAPIError

    from db.errors import CdmsError, Terminated

    _check_settings_text()
    try:
        command = typer.main.get_command(app)
        rv = command.main(args=argv, prog_name="cdms", standalone_mode=False)
    except TyperException as exc:  # typer's (vendored click) usage and parameter errors
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(0)  # `cdms` or `cdms db` alone: the usage was printed, as with --help
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        _fail("USAGE", exc.format_message() + hint, 2)
    except Abort:
        _fail("ABORTED", "aborted", 130)
    except KeyboardInterrupt:
        _fail("ABORTED", "interrupted", INTERRUPTED)
    except Terminated as exc:
        _fail(exc.code, f"terminated by {exc.name}", 128 + exc.signum)
    except CdmsError as exc:
        _fail(exc.code, exc.message, 1)
    except DBAPIError as exc:
        _fail_database(exc)
    except OSError as exc:
        _fail("OS", f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), 1)
    except Exception as exc:
        # psycopg's own errors, from the commands that use it without SQLAlchemy (COPY,
        # the prediction log's retention): mapped as SQLAlchemy's are. Looked up, not
        # imported: a psycopg error exists only once psycopg is loaded, and the CLI does not
        # load it to start.
        psycopg = sys.modules.get("psycopg")
        if psycopg is None or not isinstance(exc, psycopg.Error):
            raise
        _fail_database(exc)
    if rv == INTERRUPTED:  # (no command exits with it: only typer, for an interrupt)
        _fail("ABORTED", "interrupted", INTERRUPTED)
    if isinstance(rv, int) and rv != 0:
        sys.exit(rv)
