"""Feature tables: the serving copy of the features of orders and tickets, read by id.

Features are "as of the event time" (no look-ahead), so an order's or a ticket's features
are fixed once it is in the warehouse. ``refresh`` computes them with the very feature
query training uses (``ml/sql/orders.sql``, ``tickets.sql``) for every fact that has no
row yet, in one set-based ``INSERT ... SELECT``: the ETL runs it as its last step
(``etl.runner``), and a full load, which truncates the tables with the facts, refills them.
``fetch`` reads the features of a batch of ids in one statement (an index lookup instead
of the feature query's windows over the customers' histories).

Customer features (``customers.sql``, for ``Customer.expectedOrderValue`` and
``churnRisk``) are as of the start of the current UTC day; they have no feature table (the
query itself computes them: churn risks are stored per day by ``ml.stored_customers``,
expected order values computed on request).

Imports only numpy and SQLAlchemy: this module runs inside the API server and the ETL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from ml.features import FeatureFrame, kinds_of, load_ids, query_text
from ml.specs import ORDER_STATUS, ORDER_VALUE, SUPPORT_STATUS, FeatureKind, ModelSpec


@dataclass(frozen=True)
class Table:
    """A feature table: the facts it follows, the query that fills it, its columns."""

    name: str  # qualified, e.g. "ml.order_features"
    key: str  # its primary key (the fact's natural id)
    fact: str  # the fact table it follows
    sql_file: str  # the feature query (ml/sql/...)
    specs: tuple[ModelSpec, ...]

    @property
    def kinds(self) -> dict[str, FeatureKind]:
        return kinds_of(*self.specs)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.kinds)


ORDERS = Table("ml.order_features", "order_id", "dw.fact_orders", "orders.sql",
               (ORDER_STATUS, ORDER_VALUE))  # fmt: skip
TICKETS = Table("ml.ticket_features", "ticket_id", "dw.fact_support", "tickets.sql",
                (SUPPORT_STATUS,))  # fmt: skip
TABLES: tuple[Table, ...] = (ORDERS, TICKETS)
BY_SQL: dict[str, Table] = {t.sql_file: t for t in TABLES}


@dataclass(frozen=True)
class Refreshed:
    """What :func:`refresh` did to one table: rows inserted, and the keys whose features
    changed (their stored predictions no longer hold)."""

    inserted: int = 0
    changed: tuple[int, ...] = ()


@cache
def _refresh_sql(table: Table, scope: str) -> str:
    """``INSERT INTO <table> SELECT <features of the facts in scope> ON CONFLICT`` rewrite
    the rows that differ; returns (rows inserted, keys changed)."""
    query = query_text(table.sql_file, scope)
    query = re.sub(r"\s*ORDER BY [^\n]*\s*$", "", query.strip())  # no need to sort
    names = ("event_at", *table.columns)
    cols = ", ".join(names)
    new = ", ".join(f"EXCLUDED.{c}" for c in names)
    return f"""
        WITH u AS (
            INSERT INTO {table.name} AS t ({table.key}, {cols})
            SELECT q.key, {", ".join(f"q.{c}" for c in names)}
            FROM ({query}) AS q
            -- in key order: a page of neighbouring ids (the newest orders) reads few pages
            ORDER BY q.key
            ON CONFLICT ({table.key}) DO UPDATE
            SET ({cols}, computed_at) = ({new}, now())
            WHERE ({", ".join(f"t.{c}" for c in names)}) IS DISTINCT FROM ({new})
            RETURNING t.{table.key} AS key, (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted),
               coalesce(array_agg(key ORDER BY key) FILTER (WHERE NOT inserted), '{{}}')
        FROM u
    """


def _scope(table: Table, keys: Sequence[int] | None, missing: bool) -> str:
    facts = f"SELECT n.{table.key} FROM {table.fact} AS n"
    parts = [facts if keys is None else f"{facts} WHERE n.{table.key} = ANY(:keys)"]
    if missing and keys is not None:
        parts.append(
            f"{facts} WHERE NOT EXISTS"
            f" (SELECT 1 FROM {table.name} AS x WHERE x.{table.key} = n.{table.key})"
        )
    return " UNION ".join(parts)


def refresh(
    conn: Connection, keys: Mapping[str, Sequence[int]] | None = None, *, missing: bool = False
) -> dict[str, Refreshed]:
    """Compute the features of the facts whose keys are in ``keys[<fact table>]`` (of every
    fact when ``keys`` is None; with ``missing``, also of every fact that has none), in the
    caller's transaction; a row whose features are unchanged is left alone."""
    out: dict[str, Refreshed] = {}
    for table in TABLES:
        wanted = None if keys is None else list(keys.get(table.fact, ()))
        if wanted is not None and not wanted and not missing:
            out[table.name] = Refreshed()
            continue
        sql = _refresh_sql(table, _scope(table, wanted, missing))
        inserted, changed = conn.execute(sa.text(sql), {"keys": wanted or []}).one()
        out[table.name] = Refreshed(int(inserted), tuple(int(k) for k in changed))
    return out


def lacking(conn: Connection) -> bool:
    """Whether a fact table's newest key has no features (e.g. a warehouse loaded before
    the feature tables existed, or a run stopped between its facts and its features)."""
    newest = " OR ".join(
        f"(SELECT max({t.key}) FROM {t.fact}) IS DISTINCT FROM (SELECT max({t.key}) FROM {t.name})"
        for t in TABLES
    )
    return bool(conn.execute(sa.text(f"SELECT {newest}")).scalar_one())


@cache
def _fetch_stmt(table: Table) -> sa.TextClause:
    cols = ", ".join(table.columns)
    return sa.text(
        f"SELECT {table.key} AS key, event_at, {cols} FROM {table.name}"
        f" WHERE {table.key} = ANY(:ids) ORDER BY event_at, {table.key}"
    ).bindparams(sa.bindparam("ids", type_=ARRAY(sa.BigInteger())))


def fetch(
    conn: Connection, sql_file: str, ids: Sequence[int], kinds: dict[str, FeatureKind]
) -> FeatureFrame:
    """Features (``kinds``) of the objects ``ids`` in one statement: from the feature table
    for orders and tickets (objects the ETL has not loaded yet are absent), from the
    feature query itself for customers (current features). Same values, types and row
    order as :func:`ml.features.load_ids`."""
    table = BY_SQL.get(sql_file)
    if table is None:
        return load_ids(conn, sql_file, ids, kinds)
    rows = conn.execute(_fetch_stmt(table), {"ids": list(ids)}).all()
    frame = _columns(rows, table.kinds)
    if set(kinds) == set(table.kinds):
        return frame
    return FeatureFrame(frame.keys, frame.event_at, {k: frame.columns[k] for k in kinds})


def _columns(rows: Sequence[sa.Row[Any]], kinds: dict[str, FeatureKind]) -> FeatureFrame:
    """As :func:`ml.features.to_frame`, column by column (rows are tuples: key, event_at,
    then the features in ``kinds`` order)."""
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if rows else [()] * (2 + len(kinds))
    columns: dict[str, np.ndarray[Any, np.dtype[Any]]] = {}
    for j, (name, kind) in enumerate(kinds.items(), start=2):
        if kind is FeatureKind.NUMERIC:
            columns[name] = np.array(
                [np.nan if v is None else v for v in cols[j]], dtype=np.float32
            ).reshape(n)
        else:
            columns[name] = np.array(
                ["" if v is None else str(v) for v in cols[j]], dtype=object
            ).reshape(n)
    return FeatureFrame(
        keys=np.array(cols[0], dtype=np.int64).reshape(n),
        event_at=list(cols[1]),
        columns=columns,
    )
