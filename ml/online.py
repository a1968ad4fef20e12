"""Online features: the feature queries over the operational rows, for objects not loaded yet.

An order placed a second ago has no row in ``dw`` (nor in ``ml.order_features``) until the
next load. Its features are then computed by the very feature query the warehouse uses
(``ml/sql/orders.sql``), over the same relations computed from ``app``:
``ml/sql/online.sql`` selects, for the object's customer, the rows of the views that define
each warehouse table over the operational tables (``dw.fact_orders_source`` ..., which the
ETL loads from). One feature definition, two sources; once the object is loaded, both give
the same features (``tests/ml/test_online.py``), unless a customer's or product's SCD2
attributes changed since the event (online uses the current ones).

One statement: the feature query over the rows of the ids' customers, whom it finds
itself (``customers_of_<file>`` in online.sql). The relations are
materialized CTEs in front of the query's own (a few rows each): as subqueries in every
place the query names them, planning took 5-20 ms, as CTEs 0.7-2 ms, for the same
execution time. Imports only numpy, SQLAlchemy and db.engine: it runs inside the API
server.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from db.engine import set_local
from ml.features import RELATIONS, SQL_DIR, FeatureFrame, query_text, to_frame
from ml.specs import FeatureKind

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_IDS = sa.bindparam("ids", type_=ARRAY(sa.BigInteger()))
_PLANNING = {"plan_cache_mode": "force_generic_plan", "random_page_cost": "1.1"}


@cache
def _named() -> dict[str, str]:
    parts = _NAME.split((SQL_DIR / "online.sql").read_text(encoding="utf-8"))
    return {n: b.strip() for n, b in zip(parts[1::2], parts[2::2], strict=True)}


def _ctes() -> str:
    """Each warehouse relation of the feature queries as a CTE ``online_<name>`` over the
    ``app`` rows of the customers ``:customers`` (one not referenced is not computed)."""
    return ",\n".join(f"online_{n} AS MATERIALIZED (\n{_named()[n]}\n)" for n in RELATIONS)


@cache
def statement(sql_file: str) -> sa.TextClause:
    """The feature query of ``sql_file`` for the ids ``:ids`` over the rows of their
    customers computed from ``app`` (found by the statement itself: the round trip that
    asked for them first cost a new order's prediction 0.4 ms, and once the statement runs
    on a generic plan the planner no longer sees their number anyway)."""
    text = query_text(sql_file, "ids", {n: f"online_{n}" for n in RELATIONS})
    text, found = re.subn(r"^WITH ", f"WITH {_ctes()},\n", text, count=1, flags=re.MULTILINE)
    assert found == 1, f"{sql_file} does not start with a WITH clause"
    customers = _named()[f"customers_of_{sql_file.removesuffix('.sql')}"]
    text = text.replace(":customers", f"ARRAY({customers})")
    return sa.text(text).bindparams(_IDS)


def load(
    conn: Connection, sql_file: str, ids: Sequence[int], kinds: dict[str, FeatureKind]
) -> FeatureFrame:
    """Features of the objects ``ids`` computed from the operational rows (ids that do not
    exist are absent); the values, types and row order of :func:`ml.features.load_ids`."""
    # A generic plan once the driver has prepared the statement (its fifth run on a
    # connection): PostgreSQL otherwise planned it again on every run, its custom plans
    # being judged cheaper; at 1M orders 5.7-6.1 ms a run against 2.9-3.0 ms generic, a new
    # order's prediction 9.9 -> 7.5 ms (in-process, docs/benchmarks.md). A generic plan
    # cannot see how few customers the array holds, and at the default random_page_cost it
    # read the demo's 49,000 order lines three times over (17.7 ms a run, against 2.9 ms
    # through the indexes): the rows of a few customers are a few random reads, priced as
    # the cached pages they are.
    # (put back after a success only: a failed statement aborts the transaction, which
    # ends its settings, and a restore there would fail and hide the statement's error)
    was = set_local(conn, _PLANNING)
    rows = conn.execute(statement(sql_file), {"ids": list(ids)}).all()
    set_local(conn, was)
    return to_frame(rows, kinds)
