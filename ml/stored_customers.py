"""Stored churn_risk predictions of customers (``ml.customer_predictions``, migration 0013).

A customer's churn features are as of the start of the current UTC day
(``ml/sql/customers.sql``), so a prediction made today holds all day: the row keeps the
cut-off (``as_of``) and the ``dw.dim_customer`` version its features read
(``customer_key``). The read path (``schema/sql.py``) serves a row while its model version
is the active one and ``as_of`` is today's cut-off, so ``Customer.churnRisk`` is the same
answer as computing it on request; any other customer is computed on request, as before.

:func:`refresh` (called by ``ml.stored.refresh``, hence after every ETL load with changes,
after a model activation and by ``cdms ml score``) scores every current customer whose row
is missing, by another version, of another day or of another customer version, in chunks
of their own transactions; :func:`forget` drops the rows of customers whose orders a load
touched (a cancelled old order changes their history).

Imports only numpy, psycopg and SQLAlchemy (onnxruntime comes with the scorer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ml.features import kinds_of, load_ids

if TYPE_CHECKING:
    from ml.scorer import Scorer
    from ml.stored import Progress, Stored

# the rows (current customers) that lack a prediction valid today by version :v
_LACKING = """
    FROM dw.dim_customer AS d
    LEFT JOIN ml.customer_predictions AS p ON p.customer_id = d.customer_id
    WHERE d.is_current AND (p.customer_id IS NULL
          OR p.churn_risk_version IS DISTINCT FROM :v
          OR p.as_of <> date_trunc('day', now(), 'UTC')
          OR p.customer_key <> d.customer_key)
"""


def _only(ids: Sequence[int] | None) -> str:
    return "" if ids is None else " AND d.customer_id = ANY(:ids)"


def count(conn: Connection, version: int, ids: Sequence[int] | None = None) -> int:
    """Current customers (of ``ids``) lacking a prediction valid today by ``version``."""
    stmt = sa.text(f"SELECT count(*) {_LACKING}{_only(ids)}")
    return int(conn.execute(stmt, {"v": version, "ids": list(ids or ())}).scalar_one())


def refresh(
    engine: Engine,
    s: Stored,
    model: Scorer,
    total: int,
    progress: Progress | None,
    chunk: int,
    ids: Sequence[int] | None = None,
) -> int:
    """Score ``total`` customers (of ``ids``; the first by id, when more lack one) lacking a
    valid prediction by ``model``, ``chunk`` at a time (each its own transaction); returns
    the predictions written."""
    from ml.stored import _fragments

    page = sa.text(
        f"SELECT d.customer_id, d.customer_key {_LACKING}{_only(ids)}"
        " AND d.customer_id > :after ORDER BY d.customer_id LIMIT :n"
    )
    kinds = kinds_of(*(spec for spec in s.features.specs))
    done = written = 0
    after = -1
    while done < total:
        with engine.begin() as conn:
            rows = conn.execute(
                page,
                {
                    "v": model.version,
                    "after": after,
                    "n": min(chunk, total - done),
                    "ids": list(ids or ()),
                },
            ).all()
            if not rows:
                break
            versions = {int(r[0]): int(r[1]) for r in rows}
            frame = load_ids(conn, s.features.sql_file, list(versions), kinds)
            if len(frame):
                inputs = {f.name: frame.columns[f.name].reshape(-1, 1) for f in model.spec.features}
                parts = _fragments(model, model.score(inputs))
                lines = [
                    f"{key}\t{at.isoformat()}\t{versions[key]}\t{part}\n"
                    for key, at, part in zip(
                        frame.keys.tolist(), frame.event_at, parts, strict=True
                    )
                ]
                _upsert(conn, s, lines)
                written += len(lines)
        after = int(rows[-1][0])
        done += len(rows)
        if progress is not None:
            progress(s.table, min(done, total), total)
    return written


def _upsert(conn: Connection, s: Stored, lines: Sequence[str]) -> None:
    from ml.stored import upsert

    names = (s.key, "as_of", "customer_key", *s.columns)
    new = ", ".join(f"{c} = EXCLUDED.{c}" for c in names[1:])
    upsert(conn, s, names, new, lines)


def forget(conn: Connection, orders: Sequence[int] | None) -> int:
    """Delete the stored predictions of the customers of ``orders`` (orders a load
    touched; None: every customer, after a full load); returns the rows deleted."""
    if orders is None:
        return int(conn.execute(sa.text("DELETE FROM ml.customer_predictions")).rowcount or 0)
    if not orders:
        return 0
    result = conn.execute(
        sa.text(
            "DELETE FROM ml.customer_predictions WHERE customer_id IN"
            " (SELECT customer_id FROM dw.fact_orders WHERE order_id = ANY(:orders))"
        ),
        {"orders": list(orders)},
    )
    return int(result.rowcount or 0)
