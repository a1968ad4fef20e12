"""Stored predictions of customers (``ml.customer_predictions``, migrations 0014 and 0027):
``churn_risk`` (``Customer.churnRisk``) and ``order_value`` (``Customer.expectedOrderValue``).

A customer's features, for both models, are as of the start of the current UTC day
(``ml/sql/customers.sql``), so a prediction made today holds all day: the row keeps the
cut-off (``as_of``) and the ``dw.dim_customer`` version its features read
(``customer_key``), one set of columns per model. The read path (``schema/sql.py``) serves
a model's columns while their version is the active one and ``as_of`` is today's cut-off,
so each field is the same answer as computing it on request; any other customer is
computed on request, as before.

:func:`refresh` (called by ``ml.stored.refresh``, hence after every ETL load with changes,
after a model activation and by ``cdms ml score``) scores every current customer whose row
is missing, by another version, of another day or of another customer version, in chunks
of their own transactions: both models from one feature query per chunk, each model over
the customers that lack its prediction. A row moved to a new day or customer version by
one model alone (``cdms ml score --model``) loses the other's columns (never served as
today's), which the next refresh by every model writes. :func:`forget` drops the rows of
customers whose orders a load touched (a cancelled old order changes their history).

Imports only numpy, psycopg and SQLAlchemy (onnxruntime comes with the scorer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ml.features import FeatureFrame, kinds_of, load_ids

if TYPE_CHECKING:
    from ml.scorer import Array, Scorer
    from ml.stored import Progress, Stored

# a current customer ``d`` (its stored row ``p`` LEFT JOINed) lacks model ``m``'s prediction
# valid today by version ``:v<j>`` when it has no row, a row of another day or of another
# customer version (every model's columns are stale then), or none by that version
_FROM = (
    "FROM dw.dim_customer AS d"
    " LEFT JOIN ml.customer_predictions AS p ON p.customer_id = d.customer_id"
)
_STALE = (
    "p.customer_id IS NULL OR p.as_of <> date_trunc('day', now(), 'UTC')"
    " OR p.customer_key <> d.customer_key"
)


def _lacks(versions: Mapping[str, int]) -> tuple[list[str], dict[str, int]]:
    """Per model of ``versions`` (name: version), the condition that ``d`` lacks its
    prediction valid today by that version; with the bound parameters."""
    lacks = [
        f"({_STALE} OR p.{name}_version IS DISTINCT FROM :v{j})" for j, name in enumerate(versions)
    ]
    return lacks, {f"v{j}": int(v) for j, v in enumerate(versions.values())}


def _where(lacks: Sequence[str], ids: Sequence[int] | None) -> str:
    only = "" if ids is None else " AND d.customer_id = ANY(:ids)"
    return f" WHERE d.is_current AND ({' OR '.join(lacks)}){only}"


def count(conn: Connection, versions: Mapping[str, int], ids: Sequence[int] | None = None) -> int:
    """Current customers (of ``ids``) lacking a prediction valid today by one of
    ``versions`` (model name: version; none: 0)."""
    if not versions:
        return 0
    lacks, params = _lacks(versions)
    stmt = sa.text(f"SELECT count(*) {_FROM}{_where(lacks, ids)}")
    return int(conn.execute(stmt, {**params, "ids": list(ids or ())}).scalar_one())


def refresh(
    engine: Engine,
    s: Stored,
    models: Sequence[Scorer],
    total: int,
    progress: Progress | None,
    chunk: int,
    ids: Sequence[int] | None = None,
) -> int:
    """Score ``total`` customers (of ``ids``; the first by id, when more lack one) lacking a
    valid prediction by one of ``models``, ``chunk`` at a time (each its own transaction):
    each model scores, in one run per chunk, the customers that lack its prediction; returns
    the predictions written (customer x model)."""
    if not models:
        return 0
    lacks, params = _lacks({m.name: m.version for m in models})
    page = sa.text(
        f"SELECT d.customer_id, d.customer_key, {', '.join(lacks)} {_FROM}{_where(lacks, ids)}"
        " AND d.customer_id > :after ORDER BY d.customer_id LIMIT :n"
    )
    kinds = kinds_of(*(spec for spec in s.features.specs))
    done = written = 0
    after = -1
    while done < total:
        with engine.begin() as conn:
            bound = {
                **params,
                "after": after,
                "n": min(chunk, total - done),
                "ids": list(ids or ()),
            }
            rows = conn.execute(page, bound).all()
            if not rows:
                break
            versions = {int(r[0]): int(r[1]) for r in rows}
            lacking = {int(r[0]): tuple(bool(f) for f in r[2:]) for r in rows}
            frame = load_ids(conn, s.features.sql_file, list(versions), kinds)
            if len(frame):
                keys = frame.keys.tolist()
                flags = np.array([lacking[k] for k in keys], dtype=bool).reshape(
                    len(keys), len(models)
                )
                lines, n = _lines(s, models, frame, flags, versions)
                if lines:
                    _upsert(conn, s, lines)
                written += n
        after = int(rows[-1][0])
        done += len(rows)
        if progress is not None:
            progress(s.table, min(done, total), total)
    return written


def _lines(
    s: Stored,
    models: Sequence[Scorer],
    frame: FeatureFrame,
    flags: Array,
    versions: Mapping[int, int],
) -> tuple[list[str], int]:
    """The COPY lines (key, as_of, customer_key, then every model's columns of the table:
    its prediction where the customer lacked it, else NULLs) of the customers of ``frame``
    lacking some prediction (``flags[:, j]``: model ``j`` of ``models``); with the
    predictions they hold."""
    from ml.stored import _fragments, _nulls

    n = len(frame.keys)
    parts: dict[str, list[str]] = {}
    for j, model in enumerate(models):
        lacking = flags[:, j]
        if not lacking.any():
            continue
        rows = np.flatnonzero(lacking)
        part = frame if len(rows) == n else frame.take(rows)
        inputs = {f.name: part.columns[f.name].reshape(-1, 1) for f in model.spec.features}
        got = iter(_fragments(model, model.score(inputs)))
        empty = _nulls(model.name)
        parts[model.name] = [next(got) if hit else empty for hit in lacking.tolist()]
    cols = [parts.get(m) or [_nulls(m)] * n for m in s.models]
    keys = frame.keys.tolist()
    lines = [
        f"{keys[i]}\t{frame.event_at[i].isoformat()}\t{versions[keys[i]]}\t"
        + "\t".join(c[i] for c in cols)
        + "\n"
        for i in np.flatnonzero(flags.any(axis=1)).tolist()
    ]
    return lines, int(flags.sum())


def _upsert(conn: Connection, s: Stored, lines: Sequence[str]) -> None:
    """Write ``lines`` (of :func:`_lines`): a model's columns that a line leaves NULL keep
    the row's while it is of the same day and customer version, else are NULL (a prediction
    of another cut-off is never served as today's)."""
    from ml.stored import columns, upsert

    names = (s.key, "as_of", "customer_key", *s.columns)
    same = "t.as_of = EXCLUDED.as_of AND t.customer_key = EXCLUDED.customer_key"
    new = ", ".join(
        [
            "as_of = EXCLUDED.as_of",
            "customer_key = EXCLUDED.customer_key",
            *(
                f"{c} = CASE WHEN EXCLUDED.{m}_version IS NOT NULL THEN EXCLUDED.{c}"
                f" WHEN {same} THEN t.{c} END"
                for m in s.models
                for c in columns(m)
            ),
        ]
    )
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
