"""Run a cube query: check, plan, compile, execute (or answer from the cache).

PostgreSQL writes every answer row as JSON text in the caller's ``Shape`` (GraphQL's nested
objects, or the Python API's flat rows), so an answer of any size costs no per-cell Python
work: the rows are joined into one JSON array.

``answer`` returns that JSON (``CubeAnswer``, for the GraphQL layer); ``execute`` parses it
into rows keyed by field alias (``CubeResult``, for the report and scripts). Both carry the
SQL that ran, the rollups used, the conformed-time re-targetings, whether the limit cut the
answer, the warehouse version and freshness, and the time taken.

The result cache keys on the database, the query without its aliases and the shape's
skeleton, so the same question under other aliases is a hit (its keys are swapped in the
cached text). An entry holds the warehouse version it was read at and what it read (its
``Scope``): a later version serves it when none of the versions since changed a table, or
a day of a fact table, it read (``semantic.scope.still_valid``), so today's orders do not
evict last year's dashboard.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from db.errors import BadUserInputError, WarehouseLoadingError
from db.iso import iso
from semantic.answer import answer_statement
from semantic.cache import ResultCache, footprint
from semantic.checks import ALL, canonical, check_access, check_query, check_timezone
from semantic.model import Model
from semantic.planner import plan_query
from semantic.query import CubeQuery
from semantic.rollups import fresh_rollups, note_hit
from semantic.scope import Scope, scope, still_valid
from semantic.shape import Obj, flat, keys, retarget, skeleton
from semantic.validate import default_model

Row = dict[str, Any]
TOTALS_KEY = "@totals"


@dataclass(frozen=True)
class Computed:
    """What the cache keeps: the rows, the keys they were written with, and how they ran."""

    text: str  # a JSON array
    names: tuple[str, ...]  # its keys in document order (``shape.keys``)
    count: int
    truncated: bool  # rows beyond offset + limit exist
    sql: str
    params: dict[str, Any]
    rollups: tuple[str, ...]
    retargeted: tuple[dict[str, str], ...]
    version: int  # the warehouse version it holds at
    scope: Scope  # the dw tables (and days of them) it read

    @property
    def size(self) -> int:
        """Every byte the entry keeps (the cache's budget counts them all)."""
        return sys.getsizeof(self) + sum(footprint(getattr(self, f.name)) for f in fields(self))

    @property
    def answer_size(self) -> int:
        return footprint(self.text)


@dataclass(frozen=True)
class CubeAnswer:
    json: str  # the rows as a JSON array, keyed as the shape says
    count: int
    truncated: bool
    sql: str
    params: dict[str, Any]
    rollups: tuple[str, ...]
    retargeted: tuple[dict[str, str], ...]
    version: int
    freshness: datetime | None
    seconds: float
    cached: bool = False


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
    truncated: bool = False
    retargeted: tuple[dict[str, str], ...] = ()


CACHE: ResultCache[Computed] = ResultCache()
_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


MAX_BOUND = 65_535  # the most values one statement can bind (PostgreSQL's protocol)


def render(stmt: sa.Select[Any]) -> tuple[str, dict[str, Any]]:
    """The SQL text (placeholders, never values) and its bound values, compiled once;
    BAD_USER_INPUT past ``MAX_BOUND`` values (the driver would refuse the statement)."""
    compiled = stmt.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    params = dict(compiled.params)
    if len(params) > MAX_BOUND:
        raise BadUserInputError(
            f"the query binds {len(params)} values (filter values, repeated for time"
            f" intelligence), more than one statement can ({MAX_BOUND}): send fewer",
            field="where",
        )
    return str(compiled), params


def plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, datetime | date):
        return iso(v)
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    return v


def warehouse_state(conn: Connection) -> tuple[int, datetime | None, int]:
    """The warehouse's version, its last successful run, and its incarnation: the oids of
    the database and of its state table. A database created again under the same URL
    (from a template too) has a new database oid, a restore into it (``cdms db restore
    --force`` drops and creates every object) a new table oid, so versions of two
    histories are never compared."""
    row = conn.execute(_STATE).one()
    return int(row[0]), row[1], (int(row[2]) << 32) | int(row[3])


_STATE = sa.text(
    "SELECT version, last_success_at,"
    " (SELECT oid FROM pg_database WHERE datname = current_database()),"
    " 'dw.etl_state'::regclass::oid FROM dw.etl_state"
)


def loaded(version: int, last_success_at: datetime | None) -> bool:
    """Whether the warehouse was ever loaded: a run succeeded, or one published (the
    version is bumped by the first run's publish step, before its features and scoring)."""
    return version > 0 or last_success_at is not None


# the first load's run: its start, the steps it finished so far (a full load commits them
# with its last step, so an estimate exists only for incremental first loads), the rows of
# app.orders (the planner's estimate: what the load reads most of)
_LOADING = sa.text(
    """
    SELECT r.run_id, r.status, r.started_at, clock_timestamp() - r.started_at,
           (SELECT count(*) FROM dw.etl_run_step s
             WHERE s.run_id = r.run_id AND s.status = 'succeeded'),
           (SELECT greatest(reltuples, 0)::bigint FROM pg_class
             WHERE oid = 'app.orders'::regclass)
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (SELECT run_id, status, started_at FROM dw.etl_run
                       ORDER BY run_id DESC LIMIT 1) AS r ON true
    """
)
# the steps of a first load until the warehouse is loaded: etl.steps.STEPS and publish
# (semantic imports nothing from etl: tests/etl/test_serve_first.py keeps the two equal)
LOAD_STEPS = 10


def loading_error(conn: Connection) -> WarehouseLoadingError:
    """WAREHOUSE_LOADING with what is loading: the run, since when, its steps done and an
    estimate of the seconds left when there is one."""
    run_id, status, started, elapsed, done, orders = conn.execute(_LOADING).one()
    fields: dict[str, Any] = {
        "runId": run_id,
        "state": status,  # None: no run yet
        "startedAt": None if started is None else iso(started),
        "stepsDone": int(done or 0),
        "steps": LOAD_STEPS,
        "orders": None if orders is None else int(orders),
        "estimateSeconds": None,
    }
    if status == "running" and done and elapsed is not None:
        spent = elapsed.total_seconds()
        fields["estimateSeconds"] = round(spent / done * max(LOAD_STEPS - done, 0), 1)
    what = (
        f"the first warehouse load is running (run {run_id}, {fields['stepsDone']} of"
        f" {LOAD_STEPS} steps done)"
        if status == "running"
        else "the warehouse has not been loaded yet (the first load starts in the background)"
    )
    return WarehouseLoadingError(
        f"{what}; cube answers start when it is loaded (see /readyz)", **fields
    )


_zones: dict[str, dict[str, str]] = {}
_zones_lock = threading.Lock()


def server_zones(conn: Connection) -> dict[str, str]:
    """The server's time zone names (``pg_timezone_names``) by their lower case, read once
    per database."""
    url = conn.engine.url.render_as_string()
    found = _zones.get(url)
    if found is None:
        names = conn.execute(sa.text("SELECT name FROM pg_timezone_names")).scalars()
        found = {str(n).lower(): str(n) for n in names}
        with _zones_lock:
            _zones[url] = found
    return found


def prepare(model: Model, query: CubeQuery, role: str | None = ALL) -> CubeQuery:
    """The checked query (closed-set values spelled as declared); BadUserInputError if not."""
    query = canonical(model, query)
    check_access(model, query, role)
    check_query(model, query)
    return query


def checked(
    conn: Connection,
    query: CubeQuery,
    model: Model,
    role: str | None = ALL,
    *,
    prepared: bool = False,
) -> CubeQuery:
    """Every check an answer makes before it reads: ``prepare`` (unless ``prepared``), then
    the time zone, spelled as the server's data has it. A question with nothing to read
    (the deepest level of a drill down) is refused by it exactly as one that has."""
    if not prepared:
        query = prepare(model, query, role)
    tz = check_timezone(query.timezone, server_zones(conn))
    # one spelling: one cache entry, the same SQL
    return query if tz == query.timezone else replace(query, timezone=tz)


def answer(
    conn: Connection,
    query: CubeQuery,
    shape: Obj,
    *,
    model: Model | None = None,
    role: str | None = ALL,
    use_rollups: bool = True,
    use_cache: bool = True,
    prepared: bool = False,
) -> CubeAnswer:
    """The answer's rows as JSON in ``shape``; ``role`` may see only its members (``ALL``:
    every member); ``prepared``: ``query`` already went through ``prepare``."""
    t0 = time.perf_counter()
    model = model or default_model()
    query = checked(conn, query, model, role, prepared=prepared)
    version, freshness, incarnation = warehouse_state(conn)
    if not loaded(version, freshness):  # a first start loads it in the background
        raise loading_error(conn)
    form = json.dumps(skeleton(shape), separators=(",", ":"))
    database = f"{conn.engine.url.render_as_string()}#{incarnation}"
    key = (database, f"{query.cache_key()}|{form}|r{use_rollups:d}")
    names = keys(shape)
    use_cache = use_cache and CACHE.keyable(key)  # a huge question is computed every time
    found = CACHE.get(key) if use_cache else None
    if found is not None and found.version != version:
        if still_valid(conn, found.scope, found.version, version):
            found = replace(found, version=version)
            CACHE.put(key, found)
        else:
            found = None
    text = None if found is None else retarget(found.text, list(found.names), names)
    cached = text is not None
    if found is None or text is None:  # a miss, or keys too tangled to swap
        found = _compute(conn, model, query, shape, version, use_rollups)
        text = found.text
        if use_cache:
            CACHE.put(key, found)
    return CubeAnswer(
        json=text,
        count=found.count,
        truncated=found.truncated,
        sql=found.sql,
        params=found.params,
        rollups=found.rollups,
        retargeted=found.retargeted,
        version=version,
        freshness=freshness,
        seconds=time.perf_counter() - t0,
        cached=cached,
    )


def _compute(
    conn: Connection, model: Model, query: CubeQuery, shape: Obj, version: int, rollups: bool
) -> Computed:
    fresh = fresh_rollups(conn, version, model) if rollups else frozenset()
    plan = plan_query(model, query, fresh, checked=True)
    sql, params = render(answer_statement(model, plan, shape))
    rows: list[str] = list(conn.exec_driver_sql(sql, params).scalars().all())
    truncated = len(rows) > query.limit
    del rows[query.limit :]
    used = tuple(f"{f.cube}.{f.rollup}" for f in plan.facts if f.rollup)
    note_hit(conn, used)
    return Computed(
        text="[" + ",".join(rows) + "]",
        names=tuple(keys(shape)),
        count=len(rows),
        truncated=truncated,
        sql=sql,
        params={k: plain(v) for k, v in params.items()},
        rollups=used,
        retargeted=tuple(r.as_json() for r in plan.retargeted),
        version=version,
        scope=scope(model, plan, sql),
    )


def execute(
    conn: Connection,
    query: CubeQuery,
    *,
    model: Model | None = None,
    role: str | None = ALL,
    use_rollups: bool = True,
    use_cache: bool = True,
) -> CubeResult:
    """The answer as rows keyed by field alias (dimensions, then measures)."""
    shape = flat([m.alias for m in query.measures], [d.alias for d in query.dimensions], TOTALS_KEY)
    got = answer(
        conn, query, shape, model=model, role=role, use_rollups=use_rollups, use_cache=use_cache
    )
    rows: list[Row] = json.loads(got.json)
    totals = tuple(tuple(r.pop(TOTALS_KEY)) for r in rows)
    return CubeResult(
        rows=tuple(rows),
        totals=totals,
        sql=got.sql,
        params=got.params,
        rollups=got.rollups,
        version=got.version,
        freshness=got.freshness,
        seconds=got.seconds,
        cached=got.cached,
        truncated=got.truncated,
        retargeted=got.retargeted,
    )
