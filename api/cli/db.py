"""``cdms db ...``: migrations and other database chores."""

from __future__ import annotations

import typer

from api.cli.common import console, resolve_url

app = typer.Typer(help="Database chores: migrations, ERD, backups.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Apply pending migrations (idempotent)."""
    from db.migrate import upgrade as run_upgrade

    url = resolve_url()
    with console.status("applying migrations"):
        before, after = run_upgrade(url)
    if before == after:
        console.print(f"database already at revision [bold]{after}[/]")
    else:
        console.print(f"database upgraded from {before or 'empty'} to [bold]{after}[/]")
