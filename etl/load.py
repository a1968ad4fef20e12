"""Execute one step's SQL inside the caller's transaction; return what it changed.

Set-based only: every statement works on the whole change window at once. The SQL text
comes from ``etl/sql/<step>.sql`` and the ``<table>_source`` views; what is generated here
is structure (column lists, the key semi-join), never a value - values are bound parameters.

Every row written gets the run's id (``run_id``). An incremental fact step logs in
``dw.etl_touched`` the facts it inserted, changed or deleted, with their dates before and
after (and a dimension step the facts it re-keyed or whose type-1 attributes it changed),
in the same transaction: the steps after the load redo only those (``etl/pipeline.py``).
It also records in ``dw.fact_delta`` each changed fact row as it was (sign -1) and as it is
(sign +1), and so does a dimension step for the facts it re-keys; a type-1 change that
alters what facts stand for records a marker (sign 0): the rollups add up the deltas
instead of re-aggregating their buckets (``semantic/rollup_delta.py``).
A step that reads everything (``lo = -infinity``) logs nothing: its run step row, with no
``watermark_from``, tells the steps after it to redo everything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.engine import set_local
from etl import retile
from etl.errors import MissingDimensionError
from etl.steps import DimRef, Disposition, Step, facts_referencing
from semantic import rfm

NEG_INF = "-infinity"
# fact_stock_daily: a product changed from this many days before the horizon's day or later
# has its movements read by date (its lines in the orders since then, a range of the index
# on (product_id, order_id)), one changed from an earlier day by product (all its lines): at
# 1M orders a product's lines cost 2-3 ms (~500) to 0.6 s (the best seller's 110,000)
RECENT_DAYS = 1
T = TypeVar("T")


@dataclass(frozen=True)
class Counts:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)


def effective_low(conn: Connection, step: Step, lo: datetime | str, hi: datetime) -> datetime | str:
    """Where the step must start reading: its watermark, or ``-infinity`` (every source row)
    when the target is empty or a source table was truncated in the window. Both cover bulk
    loads that write old ``updated_at`` values (the seed: into empty tables, or after
    TRUNCATE in the same transaction), which a watermark alone would never see. The
    truncate marker has no upper bound: a TRUNCATE we can see has committed, and with it
    every row its transaction wrote; the next run re-reads once more (a no-op)."""
    if lo == NEG_INF:
        return lo
    empty, truncated = conn.execute(
        sa.text(
            f"""
            SELECT NOT EXISTS (SELECT 1 FROM {step.table}),
                   EXISTS (SELECT 1 FROM dw.etl_source_delete
                           WHERE source = ANY(CAST(:sources AS text[])) AND key_id IS NULL
                             AND deleted_at >= :lo)
            """
        ),
        {"sources": list(step.delete_sources), "lo": lo},
    ).one()
    return NEG_INF if empty or truncated else lo


def run_step(conn: Connection, step: Step, lo: datetime | str, hi: datetime, run_id: int) -> Counts:
    """Load ``step`` for source changes in ``[lo, hi)``; ``lo = '-infinity'`` means all rows
    (facts whose source row is gone are then deleted by a whole-table comparison)."""
    if step.disposition is Disposition.SCD2:
        counts = _dimension(conn, step, lo, hi, run_id)
    elif step.disposition is Disposition.SNAPSHOT:
        counts = run_snapshot(conn, step, lo, hi, run_id)
    elif step.disposition is Disposition.MONTHLY:
        counts = run_monthly(conn, step, lo, hi, run_id)
    else:
        counts = _fact(conn, step, lo, hi, run_id)
    # for the next step of a full load (one transaction); not after a failure, which
    # aborted the transaction (a DROP there would hide the error behind its own)
    conn.execute(sa.text("DROP TABLE IF EXISTS _src, _closed, _type1, _keys, _before"))
    return counts


# ---------------------------------------------------------------------------------------
# dimensions (SCD type 2)
# ---------------------------------------------------------------------------------------
def _dimension(
    conn: Connection, step: Step, lo: datetime | str, hi: datetime, run_id: int
) -> Counts:
    sql = step.sql()
    run = {"run": run_id}
    conn.execute(sa.text(sql["stage"]), {"lo": lo, "hi": hi})
    read = int(conn.execute(sa.text("SELECT count(*) FROM _src")).scalar_one())
    conn.execute(
        sa.text(
            "CREATE TEMP TABLE _closed (natural_id bigint PRIMARY KEY, old_key bigint NOT NULL,"
            " changed_at timestamptz NOT NULL) ON COMMIT DROP"
        )
    )
    conn.execute(sa.text("CREATE TEMP TABLE _type1 (dim_key bigint PRIMARY KEY) ON COMMIT DROP"))
    type1 = _rowcount(conn.execute(sa.text(sql["type1"]), run))
    closed = _rowcount(conn.execute(sa.text(sql["close"]), run))
    opened = _rowcount(conn.execute(sa.text(sql["open"]), run))
    new = _rowcount(conn.execute(sa.text(sql["new"]), run))
    rekeyed = 0
    for fact, ref in facts_referencing(step.name):
        if closed:
            rekeyed += int(conn.execute(sa.text(_rekey_sql(step, fact, ref)), run).scalar_one())
        if type1:
            conn.execute(sa.text(_type1_touched_sql(fact, ref)), run)
            conn.execute(sa.text(_type1_marker_sql(fact, ref)), run)
    return Counts(read=read, inserted=opened + new, updated=type1 + closed + rekeyed)


def _rekey_sql(dim: Step, fact: Step, ref: DimRef) -> str:
    """Facts whose event falls in a version opened by this step move to that version (and
    are logged as touched, and recorded as deltas: the row with its old key, -1, and with
    its new one, +1); returns how many moved."""
    natural = dim.key_columns[0]
    row = f"to_jsonb(m) - '_old_key' - '{LINEAGE}'"
    return f"""
        WITH moved AS (
            UPDATE {fact.table} AS f SET {ref.key_column} = n.{ref.key_column}, run_id = :run
            FROM _closed AS c
            JOIN {dim.table} AS n ON n.{natural} = c.natural_id AND n.valid_from = c.changed_at
            WHERE f.{ref.key_column} = c.old_key AND f.{fact.event_column} >= c.changed_at
            RETURNING f.*, c.old_key AS _old_key
        ), logged AS (
            INSERT INTO dw.etl_touched (run_id, fact, key_id, date_key)
            SELECT DISTINCT :run, '{fact.name}', {fact.key_columns[0]}, date_key FROM moved
            ON CONFLICT DO NOTHING
        ), delta AS (
            INSERT INTO dw.fact_delta (run_id, fact_table, sign, fact)
            SELECT :run, '{fact.table}', s.sign,
                   CASE WHEN s.sign = 1 THEN {row}
                        ELSE jsonb_set({row}, '{{{ref.key_column}}}', to_jsonb(m._old_key)) END
            FROM moved AS m CROSS JOIN (VALUES (-1), (1)) AS s(sign)
        )
        SELECT count(*) FROM moved
    """


def _type1_marker_sql(fact: Step, ref: DimRef) -> str:
    """A marker delta (sign 0) when facts point at a dimension version whose type-1
    attributes changed: what they stand for in a rollup changed without a delta."""
    return f"""
        INSERT INTO dw.fact_delta (run_id, fact_table, sign)
        SELECT :run, '{fact.table}', 0
        WHERE EXISTS (SELECT 1 FROM {fact.table} AS f
                      WHERE f.{ref.key_column} IN (SELECT dim_key FROM _type1))
    """


def _type1_touched_sql(fact: Step, ref: DimRef) -> str:
    """Facts pointing at a dimension version whose type-1 attributes changed are touched
    (a cube grouping by ``brand`` must re-aggregate them)."""
    return f"""
        INSERT INTO dw.etl_touched (run_id, fact, key_id, date_key)
        SELECT DISTINCT :run, '{fact.name}', f.{fact.key_columns[0]}, f.date_key
        FROM {fact.table} AS f WHERE f.{ref.key_column} IN (SELECT dim_key FROM _type1)
        ON CONFLICT DO NOTHING
    """


# ---------------------------------------------------------------------------------------
# snapshots (etl/sql/fact_stock_daily.sql)
# ---------------------------------------------------------------------------------------
def run_snapshot(
    conn: Connection, step: Step, lo: datetime | str, hi: datetime, run_id: int
) -> Counts:
    """Rebuild every series from ``-infinity`` (or when the first order's day moved);
    otherwise bring the series of the products changed in ``[lo, hi)`` up to date from
    the first day their changes can move (each rebuilt whole if it fails the check), and
    extend the others to the horizon's day. The rows written carry ``run_id``."""
    sql = step.sql()
    first, last, stored_first, stored_last = conn.execute(sa.text(sql["span"]), {"hi": hi}).one()
    days = {"first_day": first, "last_day": last, "run_id": run_id}
    if (
        lo == NEG_INF
        or first is None
        or stored_last is None
        or (stored_first is not None and first != stored_first)  # the first day moved
    ):
        conn.execute(sa.text(sql["keys_all"]))
        read = _count(conn, "_stock_whole")
        deleted = _rowcount(conn.execute(sa.text(sql["clear_all"])))
        inserted = 0
        if first is not None:
            conn.execute(sa.text("ANALYZE _stock_whole"))
            inserted = _rowcount(conn.execute(sa.text(sql["rebuild"]), days))
        counts = Counts(read=read, inserted=inserted, deleted=deleted)
    else:
        # (each statement reads a few rows through indexes: starting a parallel worker
        # cost more than the statement, 5 of 7 ms, at 1M orders)
        workers = set_local(conn, {"max_parallel_workers_per_gather": "0"})
        counts = _snapshot_changed(conn, sql, lo, hi, days, stored_last)
        set_local(conn, workers)
    # for the next step of a full load (one transaction); not after a failure or an
    # interrupt: the transaction is lost and its temporary tables with it, and a statement
    # on that connection would replace the error (or the KeyboardInterrupt) with its own
    conn.execute(
        sa.text("DROP TABLE IF EXISTS _stock_keys, _stock_moves, _stock_levels, _stock_whole")
    )
    return counts


def _snapshot_changed(
    conn: Connection,
    sql: dict[str, str],
    lo: datetime | str,
    hi: datetime,
    days: dict[str, Any],
    stored_last: date,
) -> Counts:
    """The incremental run of :func:`run_snapshot` (steps 1-4 of its SQL file)."""
    last: date = days["last_day"]
    cap = min(last, stored_last + timedelta(days=1))
    keys = {"lo": lo, "hi": hi, "cap": cap, "first_day": days["first_day"]}
    conn.execute(sa.text(sql["keys_changed"]), keys)
    read, since = conn.execute(sa.text("SELECT count(*), min(since) FROM _stock_keys")).one()
    inserted = updated = deleted = 0
    if read:
        # (estimated at 2,000 rows unanalysed: a statement then scanned every order line)
        conn.execute(sa.text("ANALYZE _stock_keys"))
        recent = max(since or cap, cap - timedelta(days=RECENT_DAYS))
        conn.execute(sa.text(sql["moves"]), {"recent_day": recent})
        conn.execute(sa.text(sql["levels"]), days)
        conn.execute(sa.text(sql["whole"]))
        updated = _rowcount(conn.execute(sa.text(sql["update"]), days))
        inserted = _rowcount(conn.execute(sa.text(sql["insert"]), days))
        if _count(conn, "_stock_whole"):
            conn.execute(sa.text("ANALYZE _stock_whole"))
            deleted = _rowcount(conn.execute(sa.text(sql["clear"])))
            inserted += _rowcount(conn.execute(sa.text(sql["rebuild"]), days))
    if stored_last < last:
        extend = {"last_day": last, "stored_last": stored_last, "run_id": days["run_id"]}
        inserted += _rowcount(conn.execute(sa.text(sql["extend"]), extend))
    elif stored_last > last:
        deleted += _rowcount(conn.execute(sa.text(sql["trim"]), {"last_day": last}))
    return Counts(read=read, inserted=inserted, updated=updated, deleted=deleted)


def _count(conn: Connection, table: str) -> int:
    return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def run_monthly(
    conn: Connection, step: Step, lo: datetime | str, hi: datetime, run_id: int
) -> Counts:
    """Recompute the months from the first one a change in ``[lo, hi)`` can move (the
    earliest changed order's, or the last stored one, whose open snapshot the horizon
    moved) to the horizon's month; everything from ``-infinity``. Only RFM is monthly."""
    sql = step.sql()
    first, last, stored_last = conn.execute(sa.text(sql["span"]), {"hi": hi}).one()
    if first is None:
        deleted = _rowcount(conn.execute(sa.text(sql["clear"]), {"from_month": "-infinity"}))
        return Counts(deleted=deleted)
    rules = rfm.default_rules()
    start = first
    if lo != NEG_INF and stored_last is not None:
        changed = conn.execute(sa.text(sql["changed_from"]), {"lo": lo, "hi": hi}).scalar_one()
        candidates = [stored_last] if stored_last < last else []
        if changed == "-infinity":
            candidates.append(first)
        elif changed != "infinity":
            candidates.append(date.fromisoformat(changed))
        if not candidates:
            # a customer's new version moves the open month's customer_key only
            if not conn.execute(sa.text(sql["customers_changed"]), {"lo": lo, "hi": hi}).scalar():
                return Counts()
            candidates.append(last)
        start = max(first, min(candidates))
        if start == last == stored_last:
            opened = _open_month(conn, sql, rules, last, lo, hi, run_id)
            if opened is not None:
                return opened
    deleted = _rowcount(conn.execute(sa.text(sql["clear"]), {"from_month": start}))
    conn.execute(sa.text(sql["rules_used"]), {"rules": rules.digest()})
    inserted = _rowcount(
        conn.execute(
            sa.text(sql["rebuild"]),
            {
                "from_month": start,
                "last_month": last,
                "hi": hi,
                "window": rules.window_days,
                "scores": rules.scores,
                "cells": rules.cells(),
                "run_id": run_id,
            },
        )
    )
    if stored_last is None or last > stored_last:
        # a month the table did not have: without its statistics the planner takes the
        # month for a few rows, and the next runs' reads of the open month by score
        # (open_edges) sort a whole tile instead of reading its edges from the index
        conn.execute(sa.text("ANALYZE dw.fact_customer_rfm"))
    return Counts(read=inserted, inserted=inserted, deleted=deleted)


def _open_month(
    conn: Connection,
    sql: dict[str, str],
    rules: rfm.RfmRules,
    month: date,
    lo: datetime | str,
    hi: datetime,
    run_id: int,
) -> Counts | None:
    """Redo the stored open month at ``hi`` by what moved since its newest ``as_of``: the
    rows of the customers whose values can differ, then the scores of the others where they
    moved (None: a row lacks ``last_at``, or the month was built with other rules, so it
    must be rebuilt). Its temporary tables go with the step's transaction."""
    state = conn.execute(sa.text(sql["open_state"]), {"month": month}).one()
    p, complete, built_with, n = state
    if p is None or not complete or built_with != rules.digest() or hi < p:
        # (a horizon behind the month's newest as_of, a clock set back: rows written at it
        # would not be exact at P, which the reads by what moved rely on)
        return None
    params = {"month": month, "lo": lo, "hi": hi, "p": p, "window": rules.window_days}
    for name in ("open_keys", "open_fresh"):  # analysed: few rows, estimated as many
        conn.execute(sa.text(sql[name]), params)
        conn.execute(sa.text(f"ANALYZE _rfm_{name.removeprefix('open_')}"))
    written = {**params, "scores": rules.scores, "cells": rules.cells(), "run_id": run_id}
    values = conn.execute(sa.text(sql["open_values"]), params).all()
    fresh = [v for v in values if v[0]]
    w = retile.edge_rows(len(values) - len(fresh), len(fresh))
    if 2 * w * (rules.scores - 1) > int(n) * EDGE_SHARE:
        conn.execute(sa.text(sql["open_sorted"]), written)  # the edges are much of the month
    else:
        _retile(conn, sql, rules.scores, month, int(n), values, w)
    keys, inserted, updated, deleted = conn.execute(sa.text(sql["open_write"]), written).one()
    return Counts(read=int(keys), inserted=int(inserted), updated=int(updated),
                  deleted=int(deleted))  # fmt: skip


# fact_customer_rfm: the open month is re-tiled from the rows at its tiles' edges while
# those are at most this share of its rows, else sorted whole (open_sorted)
EDGE_SHARE = 0.25
# each score and the value it orders the customers by (etl/sql/fact_customer_rfm.sql)
RFM_SCORES = (("r_score", "last_at"), ("f_score", "frequency"), ("m_score", "monetary"))


def _retile(
    conn: Connection,
    sql: dict[str, str],
    tiles: int,
    month: date,
    n: int,
    values: Sequence[Any],
    w: int,
) -> None:
    """Fill ``_rfm_named`` with the fresh rows' scores and the others' that moved
    (``etl.retile``), each score from the ``w`` rows each side of its tiles' edges."""
    fresh_ids = {int(v[1]) for v in values if v[0]}
    named: dict[int, list[int | None]] = {c: [None, None, None] for c in fresh_ids}
    for i, (score, value) in enumerate(RFM_SCORES):
        removed = [(v[2 + i], int(v[1])) for v in values if not v[0]]
        fresh = [(v[2 + i], int(v[1])) for v in values if v[0]]
        last: dict[int, list[retile.Key]] = defaultdict(list)
        first: dict[int, list[retile.Key]] = defaultdict(list)
        stored: dict[retile.Key, int] = {}
        edges = sql["open_edges"].replace("{score}", score).replace("{value}", value)
        for s, is_last, v, customer in conn.execute(
            sa.text(edges), {"month": month, "tiles": tiles, "w": w}
        ):
            key = (v, int(customer))
            (last if is_last else first)[int(s)].append(key)
            stored[key] = int(s)
        for rows in last.values():
            rows.sort(reverse=True)
        for rows in first.values():
            rows.sort()
        fetched = retile.positions(n, tiles, last, first)
        for key, tile in retile.retile(n, tiles, fetched, removed, fresh).items():
            if key[1] in fresh_ids or stored.get(key) != tile:
                named.setdefault(key[1], [None, None, None])[i] = tile
    ids = sorted(named)
    conn.execute(
        sa.text(sql["open_named"]),
        {
            "ids": ids,
            "fresh": [c in fresh_ids for c in ids],
            "r": [named[c][0] for c in ids],
            "f": [named[c][1] for c in ids],
            "m": [named[c][2] for c in ids],
        },
    )


# ---------------------------------------------------------------------------------------
# facts (merge)
# ---------------------------------------------------------------------------------------
def _fact(conn: Connection, step: Step, lo: datetime | str, hi: datetime, run_id: int) -> Counts:
    sql = step.sql()
    everything = lo == NEG_INF
    read = 0  # an "everything" pass counts the source table afterwards
    cols = ", ".join(step.key_columns)
    if everything:
        scope = dates_scope = "TRUE"
    else:
        key_ddl = ", ".join(f"{c} {t} NOT NULL" for c, t in step.key)
        conn.execute(
            sa.text(f"CREATE TEMP TABLE _keys ({key_ddl}, PRIMARY KEY ({cols})) ON COMMIT DROP")
        )
        conn.execute(sa.text(sql["changed"]), {"lo": lo, "hi": hi})
        read = int(conn.execute(sa.text("SELECT count(*) FROM _keys")).scalar_one())
        if read == 0:
            return Counts()
        conn.execute(sa.text("ANALYZE _keys"))
        scope = step.keys_scope()
        dates_scope = f"{step.scope_expr} IN (SELECT {cols} FROM _keys)"
        _capture_before(conn, step)

    order_scope = "TRUE" if everything else "o.id IN (SELECT order_id FROM _keys)"
    _ensure_dates(
        conn, sql["dates"].replace("{scope}", dates_scope).replace("{order_scope}", order_scope)
    )
    source = step.source(scope)
    inserted, updated = _upsert(conn, step, source, run_id)
    if everything:
        read = int(conn.execute(sa.text(f"SELECT count(*) FROM {step.source_table}")).scalar_one())
    deleted = _delete_missing(conn, step, everywhere=everything)
    if not everything:
        _log_touched(conn, step, run_id)
        _log_deltas(conn, step, run_id)
    return Counts(read=read, inserted=inserted, updated=updated, deleted=deleted)


def _capture_before(conn: Connection, step: Step) -> None:
    """The facts about to be reloaded, as they are (for :func:`_log_touched` and
    :func:`_log_deltas`)."""
    cols = ", ".join(step.key_columns)
    conn.execute(
        sa.text(
            f"CREATE TEMP TABLE _before ON COMMIT DROP AS SELECT *"
            f" FROM {step.table} WHERE ({cols}) IN (SELECT {cols} FROM _keys)"
        )
    )


def _log_deltas(conn: Connection, step: Step, run_id: int) -> None:
    """Record in ``dw.fact_delta`` the facts of ``_keys`` as they were and are no more
    (sign -1) and as they are and were not (sign +1); an unchanged row cancels out."""
    keys = ", ".join(step.key_columns)
    data = ", ".join(data_columns(conn, step.table))
    now = f"SELECT {data} FROM {step.table} WHERE ({keys}) IN (SELECT {keys} FROM _keys)"
    was = f"SELECT {data} FROM _before"
    conn.execute(
        sa.text(
            f"""
            INSERT INTO dw.fact_delta (run_id, fact_table, sign, fact)
            SELECT :run, :table, -1, to_jsonb(x) FROM ({was} EXCEPT ALL {now}) AS x
            UNION ALL
            SELECT :run, :table, 1, to_jsonb(x) FROM ({now} EXCEPT ALL {was}) AS x
            """
        ),
        {"run": run_id, "table": step.table},
    )


def _log_touched(conn: Connection, step: Step, run_id: int) -> None:
    """Log the facts this run wrote (their new date) and those it deleted or rewrote
    (their old date) in ``dw.etl_touched``."""
    cols = ", ".join(step.key_columns)
    first = step.key_columns[0]
    same = " AND ".join(f"t.{c} = b.{c}" for c in step.key_columns)
    conn.execute(
        sa.text(
            f"""
            INSERT INTO dw.etl_touched (run_id, fact, key_id, date_key)
            SELECT :run, :fact, t.{first}, t.date_key FROM {step.table} AS t
            WHERE t.run_id = :run AND ({cols}) IN (SELECT {cols} FROM _keys)
            UNION
            SELECT :run, :fact, b.{first}, b.date_key FROM _before AS b
            WHERE NOT EXISTS (SELECT 1 FROM {step.table} AS t
                              WHERE {same} AND t.run_id IS NOT DISTINCT FROM b.run_id)
            ON CONFLICT DO NOTHING
            """
        ),
        {"run": run_id, "fact": step.name},
    )


def load_fact_full(conn: Connection, step: Step, run_id: int) -> Counts:
    """Insert every source row into an empty fact table (``--full``)."""
    sql = step.sql()
    _ensure_dates(conn, sql["dates"].replace("{scope}", "TRUE").replace("{order_scope}", "TRUE"))
    source = step.source("TRUE")
    cols = ", ".join(data_columns(conn, step.table))
    stmt = (
        f"INSERT INTO {step.table} ({cols}, {LINEAGE})"
        f" SELECT {cols}, CAST(:run AS bigint) FROM ({source}) AS s"
    )
    inserted = _guarded(
        conn,
        step,
        source,
        lambda: _rowcount(conn.execute(sa.text(stmt), {"run": run_id})),
        full=True,
    )
    return Counts(read=inserted, inserted=inserted)


def _ensure_dates(conn: Connection, dates_sql: str) -> None:
    dmin, dmax = conn.execute(sa.text(dates_sql)).one()
    if dmin is None:
        return
    assert isinstance(dmin, date) and isinstance(dmax, date)
    covered = conn.execute(
        sa.text(
            "SELECT min(date) <= CAST(:dmin AS date)"
            " AND max(date) >= (CAST(:dmax AS date) + interval '1 year')::date FROM dw.dim_date"
        ),
        {"dmin": dmin, "dmax": dmax},
    ).scalar_one()
    if covered:
        return
    conn.execute(
        sa.text(
            """
            SELECT dw.ensure_dates(
                least(CAST(:dmin AS date), (SELECT min(date) FROM dw.dim_date)),
                greatest((CAST(:dmax AS date) + interval '1 year')::date,
                         (SELECT max(date) FROM dw.dim_date)))
            """
        ),
        {"dmin": dmin, "dmax": dmax},
    )


def _upsert(conn: Connection, step: Step, source: str, run_id: int) -> tuple[int, int]:
    """Insert new rows, rewrite changed ones (stamped with ``run_id``); an unchanged row is
    left alone, its ``run_id`` included."""
    cols = data_columns(conn, step.table)
    keys = step.key_columns
    rest = [c for c in cols if c not in keys]
    col_list = ", ".join(cols)
    stmt = f"""
        WITH u AS (
            INSERT INTO {step.table} AS t ({col_list}, {LINEAGE})
            SELECT {col_list}, CAST(:run AS bigint) FROM ({source}) AS s
            ON CONFLICT ({", ".join(keys)}) DO UPDATE
            SET {", ".join(f"{c} = EXCLUDED.{c}" for c in (*rest, LINEAGE))}
            WHERE ({", ".join(f"t.{c}" for c in rest)})
                  IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in rest)})
            RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM u
    """

    def go() -> tuple[int, int]:
        ins, upd = conn.execute(sa.text(stmt), {"run": run_id}).one()
        return int(ins), int(upd)

    return _guarded(conn, step, source, go)


def _guarded(
    conn: Connection, step: Step, source: str, write: Callable[[], T], *, full: bool = False
) -> T:
    """Run ``write`` under a savepoint; a NULL dimension key becomes MissingDimensionError
    (``full``: in a full load)."""
    try:
        with conn.begin_nested():
            return write()
    except sa.exc.IntegrityError as exc:
        diag = getattr(exc.orig, "diag", None)
        column = getattr(diag, "column_name", None)
        if getattr(exc.orig, "sqlstate", None) == "23502" and column in {
            d.key_column for d in step.dims
        }:
            missing = _missing_dimension_ids(conn, step, source)
            if missing:
                raise _missing_error(step, missing, full=full) from None
        raise


def _missing_dimension_ids(conn: Connection, step: Step, source: str) -> dict[str, list[int]]:
    parts = []
    for d in step.dims:
        cond = f"s.{d.key_column} IS NULL"
        if d.nullable:
            cond += f" AND s.{d.id_column} IS NOT NULL"
        parts.append(
            f"SELECT '{d.id_column}' AS what, s.{d.id_column} AS id FROM ({source}) AS s"
            f" WHERE {cond}"
        )
    stmt = (
        "SELECT what, array_agg(DISTINCT id ORDER BY id) FROM ("
        + " UNION ALL ".join(parts)
        + ") AS m GROUP BY what ORDER BY what"
    )
    return {str(w): [int(i) for i in ids] for w, ids in conn.execute(sa.text(stmt))}


def _missing_error(
    step: Step, missing: dict[str, list[int]], *, full: bool = False
) -> MissingDimensionError:
    """The error naming the missing ids, with the advice that fits the run: an incremental
    run's dimension lacks rows whose ``updated_at`` is older than its watermark (written
    against the writers' contract), which touching them or a full load brings in; a full
    load takes every row app has, so app itself lacks them (a reference without its row)."""
    parts = []
    for what, ids in missing.items():
        shown = ", ".join(str(i) for i in ids[:20]) + (" ..." if len(ids) > 20 else "")
        dim = next(d.dimension for d in step.dims if d.id_column == what)
        parts.append(f"{what} {shown} not in dw.{dim} at the event time")
    if full:
        advice = (
            "the full rebuild was rolled back; it loads every customer and product app has,"
            " so app lacks those rows: restore them (or the references to them) in app"
        )
    else:
        advice = (
            "the step was rolled back; load those rows into the dimension (touch them in app)"
            " or run `cdms etl run --full`"
        )
    return MissingDimensionError(
        f"{step.name}: source rows name " + "; ".join(parts) + " - " + advice,
        step=step.name,
        **missing,
    )


def _delete_missing(conn: Connection, step: Step, *, everywhere: bool) -> int:
    """Delete facts whose source row no longer exists (among ``_keys``, or all of them)."""
    match = " AND ".join(
        f"s.{sk} = x.{k}" for sk, k in zip(step.source_key, step.key_columns, strict=True)
    )
    gone = f"NOT EXISTS (SELECT 1 FROM {step.source_table} AS s WHERE {match})"
    if everywhere:
        stmt = f"DELETE FROM {step.table} AS x WHERE {gone}"
    else:
        # the few keys without a source row first, then their facts (index lookups)
        on_keys = " AND ".join(f"t.{k} = m.{k}" for k in step.key_columns)
        gone_k = gone.replace("x.", "k.")
        cols = ", ".join(f"k.{k}" for k in step.key_columns)
        stmt = (
            f"DELETE FROM {step.table} AS t USING ("
            f"SELECT {cols} FROM _keys AS k WHERE {gone_k} OFFSET 0) AS m WHERE {on_keys}"
        )
    return _rowcount(conn.execute(sa.text(stmt)))


_columns: dict[str, tuple[str, ...]] = {}
LINEAGE = "run_id"  # every dw table's: the run that last wrote the row


def table_columns(conn: Connection, table: str) -> tuple[str, ...]:
    """Column names of ``table`` in order (read from the catalog once per process)."""
    cols = _columns.get(table)
    if cols is None:
        rows = conn.execute(
            sa.text(
                "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass)"
                " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            ),
            {"t": table},
        ).scalars()
        cols = tuple(str(r) for r in rows)
        _columns[table] = cols
    return cols


def data_columns(conn: Connection, table: str) -> tuple[str, ...]:
    """:func:`table_columns` but the lineage column (what a ``_source`` view yields)."""
    return tuple(c for c in table_columns(conn, table) if c != LINEAGE)


def _rowcount(result: sa.CursorResult[Any]) -> int:
    return max(int(result.rowcount or 0), 0)
