"""``cdms seed``: fill an empty database with realistic, deterministic demo data."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from api.cli.common import console, progress, resolve_url, task_per_key

if TYPE_CHECKING:
    from api.settings import Settings
    from db.seed import ProgressFn

_LABELS = {
    "generate": "generating",
    "indexes": "rebuilding indexes",
    "check": "checking invariants",
}


@contextmanager
def seed_progress() -> Iterator[ProgressFn]:
    """A rich progress bar per stage (generation, each table's COPY, the checks)."""
    with progress() as bar:
        yield task_per_key(bar, lambda stage: _LABELS.get(stage, f"app.{stage}"))


def seed(
    customers: int = typer.Option(2_000, help="Number of customers."),
    orders: int = typer.Option(20_000, help="Number of orders (about 2.4 lines each)."),
    seed: int = typer.Option(42, help="Random seed: the same seed gives the same data."),
    products: int | None = typer.Option(
        None, help="Catalogue size (default: 150 + customers/6, between 200 and 5,000)."
    ),
    end: dt.datetime | None = typer.Option(
        None,
        formats=["%Y-%m-%d"],
        help="Last day of history is the day before (default and latest: today).",
    ),
    years: int = typer.Option(3, help="Years of order history."),
    reset: bool = typer.Option(
        False,
        "--reset",
        help="Delete all app data first (otherwise a non-empty database is refused).",
    ),
) -> None:
    """Seed demo data into an empty database (migrating it first), in one transaction."""
    from api.extras import require

    require("seed", "cdms seed")
    from db.migrate import upgrade
    from db.seed import seed as run_seed
    from db.seed import validate
    from db.seed.load import ensure_empty

    validate(customers, orders, seed, products, years, end.date() if end else None)
    url = resolve_url()
    with console.status("applying migrations"):
        upgrade(url)
    if not reset:
        ensure_empty(url)  # refuse before any progress bar is drawn
    started = time.perf_counter()
    with seed_progress() as report:
        counts = run_seed(
            url, customers, orders, seed, report, products=products,
            end=end.date() if end else None, years=years, reset=reset,
        )  # fmt: skip
    elapsed = time.perf_counter() - started
    table = Table("table", "rows", title=f"seeded in {elapsed:.1f} s (seed {seed})")
    for name, rows in counts.items():
        table.add_row(f"app.{name}", f"{rows:,}")
    table.add_row("total", f"{sum(counts.values()):,}", style="bold")
    console.print(table)


def seed_demo_if_empty(url: str, settings: Settings) -> None:
    """Start-up step of ``cdms serve``: seed the demo scale when app.customers is empty."""
    import psycopg

    from db.config import to_libpq_url
    from db.errors import ConflictError
    from db.seed import seed as run_seed

    with psycopg.connect(to_libpq_url(url)) as conn:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM app.customers)").fetchone()
    if row and row[0]:
        return
    from api.extras import hint, installed

    if not installed("seed"):
        console.print(
            "[yellow]demo data not seeded[/]: the 'seed' extra is not installed"
            f" ({hint('seed')}); serving an empty database"
        )
        return
    console.print(
        f"seeding demo data: {settings.demo_customers:,} customers, "
        f"{settings.demo_orders:,} orders (seed {settings.demo_seed})"
    )
    try:
        with seed_progress() as report:
            run_seed(url, settings.demo_customers, settings.demo_orders, settings.demo_seed, report)
    except ConflictError as exc:  # another process seeded first, or other tables hold data
        console.print(f"demo data not seeded: {exc.message}")
