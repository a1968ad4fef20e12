"""Shared pieces of the CLI: consoles, progress bars, resolving the database."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

console = Console()
err_console = Console(stderr=True)


def plain(text: str | None) -> str:
    """A name from the database as a console line may hold it: control characters escaped
    (db.errors.printable) and rich's markup too (``[/x]`` raised a MarkupError after a key
    was stored and before its secret was shown; ``[link=…]`` made a name a hyperlink)."""
    from db.errors import printable

    return escape(printable(text or ""))


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


def task_per_key(
    bar: Progress, label: Callable[[str], str]
) -> Callable[[str, int, int | None], None]:
    """A progress callback ``(key, done, total)`` with a task of ``bar`` per key."""
    tasks: dict[str, TaskID] = {}

    def report(key: str, done: int, total: int | None) -> None:
        if key not in tasks:
            tasks[key] = bar.add_task(label(key), total=total)
        bar.update(tasks[key], completed=done, total=total)

    return report


def utf8(value: str, what: str) -> str:
    """``value``, if it is UTF-8 text. Bytes of the command line that are not are kept by
    Python as surrogates, which no database text (nor psycopg) takes: refused up front."""
    from db.errors import BadUserInputError

    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadUserInputError(f"{what} is not UTF-8 text: {value!r}", field=what) from None
    return value


def resolve_url(*, create: bool = False) -> str:
    """libpq URL of the application database; starts the embedded server when needed.
    Without ``create``, an embedded data folder that holds no cluster yet is refused
    (``error[NO_DATABASE]`` naming the folder) rather than started empty."""
    from db.engine import check_connection, database_url

    url = database_url(create=create)
    check_connection(url)
    return url


def app_engine() -> Engine:
    """An engine on the application database (:func:`resolve_url`)."""
    from db.engine import make_engine

    return make_engine(resolve_url())
