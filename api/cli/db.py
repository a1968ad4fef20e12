"""``cdms db ...``: migrations and other database chores."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from api.cli.common import console, progress, resolve_url, task_per_key

app = typer.Typer(help="Database chores: migrations, ERD, backups.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Apply pending migrations (idempotent)."""
    from db.migrate import upgrade as run_upgrade

    url = resolve_url(create=True)  # the command that starts a new database
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

    url = resolve_url(create=not live)  # a scratch database beside the app's
    if live:
        with console.status("reading the catalog"):
            page = generate(make_engine(url))
    else:
        with console.status("migrating a scratch database and reading its catalog"):
            page = generate_from_migrations(url)
    # compared as bytes: a file that is not UTF-8 text is stale, not a decoding error
    current = output.read_bytes() if output.exists() else None
    if check:
        if current != page.encode("utf-8"):
            raise StaleErdError(f"{output} is stale: run cdms db erd")
        console.print(f"{output} is up to date")
        return
    if current == page.encode("utf-8"):
        console.print(f"{output} is already up to date")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    console.print(f"wrote {output} ({page.count(chr(10))} lines)")


@contextmanager
def _bar() -> Iterator[Callable[[str, int, int | None], None]]:
    with progress() as bar:
        yield task_per_key(bar, lambda s: "dumping tables" if s == "dump" else "restoring objects")


@app.command("backup")
def backup(
    file: Path = typer.Argument(..., help="Backup file to write (pg_dump custom format)."),
) -> None:
    """Back up the database (pg_dump -Fc of the embedded or configured server)."""
    from db.backup import backup as run_backup

    url = resolve_url()
    with _bar() as report:
        size = run_backup(url, file, report)
    console.print(f"wrote {file} ({size / 1e6:.1f} MB)")


@app.command("restore")
def restore(
    file: Path = typer.Argument(..., help="Backup file written by cdms db backup."),
    force: bool = typer.Option(
        False, "--force", help="Restore into a database that holds data, replacing it."
    ),
) -> None:
    """Restore a backup into an empty database (CONFLICT otherwise, unless --force)."""
    from db.backup import restore as run_restore

    url = resolve_url(create=True)  # a backup restores onto a new machine
    with _bar() as report:
        items = run_restore(url, file, force=force, progress=report)
    console.print(f"restored {items} objects from {file}")
