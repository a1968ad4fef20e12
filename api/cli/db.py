"""``cdms db ...``: migrations and other database chores."""

from __future__ import annotations

from pathlib import Path

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


@app.command("erd")
def erd(
    output: Path = typer.Option(Path("docs/erd.md"), "--output", "-o", help="File to write."),
    live: bool = typer.Option(
        False, "--live", help="Draw the database as it is, instead of a fresh migration of it."
    ),
    check: bool = typer.Option(
        False, "--check", help="Write nothing; fail if the file differs from the diagram."
    ),
) -> None:
    """Write the Mermaid ERD of schemas app, dw and ml (docs/erd.md)."""
    from db.engine import make_engine
    from db.erd import StaleErdError, generate, generate_from_migrations

    url = resolve_url()
    if live:
        with console.status("reading the catalog"):
            page = generate(make_engine(url))
    else:
        with console.status("migrating a scratch database and reading its catalog"):
            page = generate_from_migrations(url)
    current = output.read_text(encoding="utf-8") if output.exists() else None
    if check:
        if current != page:
            raise StaleErdError(f"{output} is stale: run cdms db erd")
        console.print(f"{output} is up to date")
        return
    if current == page:
        console.print(f"{output} is already up to date")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    console.print(f"wrote {output} ({page.count(chr(10))} lines)")
