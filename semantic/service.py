"""Run a cube query: check, plan, compile, execute (or answer from the cache).

``execute`` takes a SQLAlchemy connection (the API passes its request's read transaction)
and returns a ``CubeResult``: one row per combination of the selected dimensions, the SQL
that ran, the rollups used, the warehouse version and freshness, and the time taken.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from semantic.cache import ResultCache
from semantic.checks import canonical, check_query
from semantic.compile import compile_plan
from semantic.model import Model
from semantic.planner import Plan, plan_query
from semantic.query import CubeQuery
from semantic.rollups import fresh_rollups
from semantic.validate import default_model

Row = dict[str, Any]


@dataclass(frozen=True)
class CubeResult:
    rows: tuple[Row, ...]  # key: a measure field's alias, a dimension field's alias
    totals: tuple[tuple[str, ...], ...]  # per row, the dimensions it totals (subtotals)
    sql: str
    params: dict[str, Any]
    rollups: tuple[str, ...]
    version: int
    freshness: datetime | None
    seconds: float
    cached: bool = False


CACHE: ResultCache[CubeResult] = ResultCache()
_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


def render(stmt: sa.Select[Any]) -> tuple[str, dict[str, Any]]:
    """The SQL text (placeholders, never values) and its bound values, compiled once."""
    compiled = stmt.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


def plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    return v


def _out(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, datetime | date):
        return v.isoformat()
    return v


def warehouse_state(conn: Connection) -> tuple[int, datetime | None]:
    row = conn.execute(sa.text("SELECT version, last_success_at FROM dw.etl_state")).one()
    return int(row[0]), row[1]


def execute(
    conn: Connection,
    query: CubeQuery,
    *,
    model: Model | None = None,
    use_rollups: bool = True,
    use_cache: bool = True,
) -> CubeResult:
    t0 = time.perf_counter()
    model = model or default_model()
    query = canonical(model, query)
    check_query(model, query)
    version, freshness = warehouse_state(conn)
    key = (conn.engine.url.render_as_string(), query.cache_key() + f"|r{use_rollups:d}", version)
    if use_cache:
        hit = CACHE.get(key)
        if hit is not None:
            return replace(hit, cached=True, seconds=time.perf_counter() - t0)
    fresh = fresh_rollups(conn, version) if use_rollups else frozenset()
    plan = plan_query(model, query, fresh, checked=True)
    sql, params = render(compile_plan(model, plan))
    raw = conn.exec_driver_sql(sql, params).all()
    rows, totals = shape(plan, raw)
    params = {k: plain(v) for k, v in params.items()}
    used = tuple(f"{f.cube}.{f.rollup}" for f in plan.facts if f.rollup)
    result = CubeResult(
        rows, totals, sql, params, used, version, freshness, time.perf_counter() - t0
    )
    if use_cache:
        CACHE.put(key, result)
    return result


def shape(plan: Plan, raw: Sequence[Any]) -> tuple[tuple[Row, ...], tuple[tuple[str, ...], ...]]:
    """Database rows → rows keyed by field alias, plus the totalled dimensions of each."""
    n = len(plan.slots)
    subtotals = plan.query.subtotals
    rows: list[Row] = []
    totals: list[tuple[str, ...]] = []
    for r in raw:
        row: Row = {}
        for i, slot in enumerate(plan.slots):
            for f in slot.fields:
                row[f.alias] = _out(r[i])
        off = n + (1 if subtotals else 0)
        for j, mf in enumerate(plan.query.measures):
            row[mf.alias] = _out(r[off + j])
        rows.append(row)
        if subtotals:
            mask = int(r[n])
            totals.append(
                tuple(
                    f.label()
                    for i, slot in enumerate(plan.slots)
                    if mask >> (n - 1 - i) & 1
                    for f in slot.fields
                )
            )
        else:
            totals.append(())
    return tuple(rows), tuple(totals)
