"""Realistic, deterministic demo data for ``app.*`` (``cdms seed``).

``seed(url, customers, orders, seed)`` fills an empty, migrated database in one
transaction and returns the row count per table. The same arguments (and the same ``end``
date) give byte-identical data; see ``docs/data.md`` for the distributions and the planted
relations, and ``relations.py`` for their coefficients.
"""

from __future__ import annotations

import datetime as dt

from db.errors import BadUserInputError
from db.seed.copy import ProgressFn
from db.seed.errors import SeedCheckError
from db.seed.generate import build_tables
from db.seed.load import SEEDED_TABLES, ensure_empty, load_tables

__all__ = ["SEEDED_TABLES", "ProgressFn", "SeedCheckError", "seed", "validate"]

MAX_CUSTOMERS = 5_000_000
MAX_ORDERS = 20_000_000
MAX_PRODUCTS = 100_000
MAX_YEARS = 20


def _bad(field: str, message: str) -> BadUserInputError:
    return BadUserInputError(message, field=field, reason="out_of_range")


EARLIEST_END = dt.date(2010, 1, 1)  # keeps every birth date after 1900
# the latest end is today (default_end): a row dated after now is outside every change
# window of the warehouse load (they end at the run's time), and a fact whose customer or
# product is not loaded yet fails the whole run


def validate(
    customers: int,
    orders: int,
    seed: int,
    products: int | None = None,
    years: int = 3,
    end: dt.date | None = None,
) -> None:
    """Raise BadUserInputError for a size, seed, span or end date the generator refuses."""
    if not 1 <= customers <= MAX_CUSTOMERS:
        raise _bad(
            "customers", f"customers must be between 1 and {MAX_CUSTOMERS:,}, got {customers}"
        )
    if not 1 <= orders <= MAX_ORDERS:
        raise _bad("orders", f"orders must be between 1 and {MAX_ORDERS:,}, got {orders}")
    if not 0 <= seed < 2**63:
        raise _bad("seed", f"seed must be between 0 and 2^63-1, got {seed}")
    if products is not None and not 1 <= products <= MAX_PRODUCTS:
        raise _bad("products", f"products must be between 1 and {MAX_PRODUCTS:,}, got {products}")
    if not 1 <= years <= MAX_YEARS:
        raise _bad("years", f"years must be between 1 and {MAX_YEARS}, got {years}")
    if end is not None and not EARLIEST_END <= end <= default_end():
        raise _bad(
            "end",
            f"end must be between {EARLIEST_END} and today ({default_end()}), got {end}"
            " (later rows would be dated after now)",
        )


def default_end() -> dt.date:
    """Today (UTC): the history ends at midnight at the start of today."""
    return dt.datetime.now(dt.UTC).date()


def seed(
    url: str,
    customers: int,
    orders: int,
    seed: int,
    progress: ProgressFn | None = None,
    *,
    products: int | None = None,
    end: dt.date | None = None,
    years: int = 3,
    reset: bool = False,
) -> dict[str, int]:
    """Seed the migrated database at ``url``; return rows written per table.

    Refuses (ConflictError, nothing written) when any app table holds rows, unless
    ``reset`` — then every seeded table is truncated first, in the same transaction.
    """
    validate(customers, orders, seed, products, years, end)
    if not reset:
        ensure_empty(url)  # fail fast, before spending time generating
    tables = build_tables(
        customers, orders, seed, products=products, end=end or default_end(), years=years,
        progress=progress,
    )  # fmt: skip
    return load_tables(url, tables, reset=reset, progress=progress)
