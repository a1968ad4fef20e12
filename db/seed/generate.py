"""Draw the whole data set in memory, as COPY-ready tables, from one seed."""

from __future__ import annotations

import datetime as dt

import numpy as np

from db.seed import aftercare, orders
from db.seed.catalog import default_products, make_catalog
from db.seed.copy import ProgressFn, Table
from db.seed.people import DAY, make_people

GENERATE_STEPS = 5


def window(end: dt.date, years: int) -> tuple[int, int]:
    """(start, now) in epoch seconds: ``years`` of history ending at midnight UTC of ``end``."""
    now = (end - dt.date(1970, 1, 1)).days * DAY
    return now - round(365.25 * years) * DAY, now


def build_tables(
    customers: int,
    orders_: int,
    seed: int,
    *,
    products: int | None = None,
    end: dt.date,
    years: int = 3,
    progress: ProgressFn | None = None,
) -> list[Table]:
    """Every app table in load order (parents first). Same arguments, same bytes."""
    start, now = window(end, years)
    # one independent stream per part: changing one part never shifts another's draws
    streams = [
        np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(8)
    ]

    def step(k: int) -> None:
        if progress:
            progress("generate", k, GENERATE_STEPS)

    step(0)
    catalog = make_catalog(streams[0], products or default_products(customers), start)
    people = make_people(streams[1], customers, start, now, seed)
    step(1)
    o = orders.make_orders(streams[2], orders_, people, catalog, start, now, streams[7])
    step(2)
    ret = aftercare.make_returns(streams[3], o, people, catalog, now)
    step(3)
    tables = [
        people.table,
        catalog.table,
        orders.orders_table(o, ret.returned_at),
        orders.items_table(o),
        orders.history_table(o, ret.returned_at),
        aftercare.returns_table(streams[4], o, ret),
        aftercare.feedback_table(streams[5], o, ret, now),
    ]
    step(4)
    tables.append(aftercare.tickets_table(streams[6], o, ret, people, now))
    step(5)
    return tables
