"""Feature queries over ``dw``: one set-based statement per call, for training or a batch.

Each ``ml/sql/*.sql`` file computes the features of the objects of a *scope* (a CTE that
selects their ids). A scope is either "every event before a time" (training) or "these
ids" (a serving batch: ``= ANY(:ids)``), so serving and training share the same SQL and
cannot drift apart. The queries name the warehouse relations as placeholders
(``{{fact_orders}}``): :data:`WAREHOUSE` fills in the dw tables; ``ml.online`` the same rows
computed from the operational tables, for objects not loaded yet. Results become numpy
columns in the spec's input types: numerics float32 (NULL → NaN, imputed by the model),
categories str (NULL → "", which the one-hot encoder ignores like any unknown value).

Imports only numpy and SQLAlchemy: this module runs inside the API server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from db.engine import set_local
from ml.specs import FeatureKind, ModelSpec

SQL_DIR = Path(__file__).resolve().parent / "sql"

# What each query's rows are about, and the scopes it can be restricted to.
_SCOPES: dict[str, dict[str, str]] = {
    "orders.sql": {
        "ids": "SELECT x.order_id FROM {{fact_orders}} AS x WHERE x.order_id = ANY(:ids)",
        "before": "SELECT x.order_id FROM {{fact_orders}} AS x WHERE x.ordered_at < :until",
    },
    "tickets.sql": {
        "ids": "SELECT x.ticket_id FROM {{fact_support}} AS x WHERE x.ticket_id = ANY(:ids)",
        "before": "SELECT x.ticket_id FROM {{fact_support}} AS x WHERE x.opened_at < :until",
    },
    "churn.sql": {
        # every customer who ordered, at the start of every UTC month before :until
        "before": "SELECT DISTINCT o.customer_id, m.cutoff FROM generate_series("
        "(SELECT date_trunc('month', min(ordered_at) AT TIME ZONE 'UTC') + interval '1 month'"
        " FROM {{fact_orders}}), CAST(:until AS timestamptz) AT TIME ZONE 'UTC',"
        " interval '1 month') AS g (m)"
        " CROSS JOIN LATERAL (SELECT g.m AT TIME ZONE 'UTC' AS cutoff) AS m"
        " JOIN {{fact_orders}} AS o ON o.ordered_at < m.cutoff AND NOT o.is_cancelled",
    },
    "customers.sql": {
        "ids": "SELECT x.customer_id FROM {{dim_customer}} AS x WHERE x.customer_id = ANY(:ids)"
        " AND x.is_current",
    },
}
# The relations the feature queries read, as the warehouse holds them.
RELATIONS = ("fact_orders", "fact_sales", "fact_returns", "fact_support", "dim_customer",
             "dim_product")  # fmt: skip
WAREHOUSE: dict[str, str] = {name: f"dw.{name}" for name in RELATIONS}

Column = np.ndarray[Any, np.dtype[Any]]


@dataclass(frozen=True)
class FeatureFrame:
    """Rows of one feature query as columns (row order: event time, then key)."""

    keys: np.ndarray[Any, np.dtype[np.int64]]
    event_at: list[dt.datetime]
    columns: dict[str, Column]

    def __len__(self) -> int:
        return int(self.keys.size)

    def take(self, index: np.ndarray[Any, np.dtype[Any]]) -> FeatureFrame:
        return FeatureFrame(
            keys=self.keys[index],
            event_at=[self.event_at[i] for i in np.arange(len(self))[index]],
            columns={k: v[index] for k, v in self.columns.items()},
        )

    def concat(self, other: FeatureFrame) -> FeatureFrame:
        """Both frames' rows (this one's first); the same columns."""
        if not len(other):
            return self
        if not len(self):
            return other
        return FeatureFrame(
            keys=np.concatenate([self.keys, other.keys]),
            event_at=self.event_at + other.event_at,
            columns={k: np.concatenate([v, other.columns[k]]) for k, v in self.columns.items()},
        )

    def inputs(self, spec: ModelSpec) -> dict[str, Column]:
        """The model's inputs: one [n, 1] array per feature, in the spec's types."""
        return {f.name: self.columns[f.name].reshape(-1, 1) for f in spec.features}


def query_text(sql_file: str, scope: str, relations: Mapping[str, str] = WAREHOUSE) -> str:
    """The text of the feature query of ``sql_file`` restricted to ``scope`` (a name of
    ``_SCOPES`` or, for the ETL, a SELECT of ids) over ``relations``."""
    scope_sql = _SCOPES[sql_file].get(scope, scope)
    text = (SQL_DIR / sql_file).read_text(encoding="utf-8").replace("{{scope}}", scope_sql)
    for name in RELATIONS:
        text = text.replace("{{" + name + "}}", relations[name])
    assert "{{" not in text, f"a placeholder of {sql_file} has no relation"
    return text


@cache
def statement(sql_file: str, scope: str) -> sa.TextClause:
    """The feature query of ``sql_file`` over the warehouse restricted to ``scope`` ("ids"
    or "before")."""
    stmt = sa.text(query_text(sql_file, scope))
    if scope == "ids":
        stmt = stmt.bindparams(sa.bindparam("ids", type_=ARRAY(sa.BigInteger())))
    return stmt


def to_frame(
    rows: Sequence[sa.Row[Any]], kinds: dict[str, FeatureKind], extra: Sequence[str] = ()
) -> FeatureFrame:
    """Rows (with ``key``, ``event_at`` and every column in ``kinds``) → typed columns.

    ``extra`` names further columns kept as plain object arrays (e.g. the targets).
    """
    n = len(rows)
    maps = [r._mapping for r in rows]
    columns: dict[str, Column] = {}
    for name, kind in kinds.items():
        if kind is FeatureKind.NUMERIC:
            columns[name] = np.array(
                [np.nan if m[name] is None else m[name] for m in maps], dtype=np.float32
            ).reshape(n)
        else:
            columns[name] = np.array(
                ["" if m[name] is None else str(m[name]) for m in maps], dtype=object
            ).reshape(n)
    for name in extra:
        columns[name] = np.array([m[name] for m in maps], dtype=object).reshape(n)
    return FeatureFrame(
        keys=np.array([m["key"] for m in maps], dtype=np.int64).reshape(n),
        event_at=[m["event_at"] for m in maps],
        columns=columns,
    )


def kinds_of(*specs: ModelSpec) -> dict[str, FeatureKind]:
    """Every feature of ``specs`` with its kind (specs sharing a query agree on kinds)."""
    out: dict[str, FeatureKind] = {}
    for s in specs:
        for f in s.features:
            out[f.name] = f.kind
    return out


def load_before(
    conn: Connection, spec: ModelSpec, until: dt.datetime, extra: Sequence[str] = ()
) -> FeatureFrame:
    """Features (and ``extra`` columns) of every event of ``spec``'s query before ``until``."""
    rows = conn.execute(statement(spec.sql, "before"), {"until": until}).all()
    return to_frame(rows, kinds_of(spec), extra)


_SERIAL = {"max_parallel_workers_per_gather": "0"}


def load_ids(
    conn: Connection, sql_file: str, ids: Sequence[int], kinds: dict[str, FeatureKind]
) -> FeatureFrame:
    """Features of the objects ``ids`` (one statement); objects not in ``dw`` are absent.
    Planned without parallel workers: a few ids' rows (a pipeline run's touched orders, its
    customers) went to a parallel scan of ``dw.dim_customer`` that took the second core
    from the shop's requests for 18 ms (the caller's setting is put back after)."""
    was = set_local(conn, _SERIAL)
    rows = conn.execute(statement(sql_file, "ids"), {"ids": list(ids)}).all()
    set_local(conn, was)
    return to_frame(rows, kinds)
