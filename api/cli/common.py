"""Shared pieces of the CLI: consoles, progress bars, resolving the database."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

console = Console()
err_console = Console(stderr=True)


def progress() -> Progress:
    """The house progress bar: spinner, description, bar, n/m, elapsed."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def resolve_url() -> str:
    """libpq URL of the application database; starts the embedded server when needed."""
    from db.engine import check_connection, database_url

    url = database_url()
    check_connection(url)
    return url
