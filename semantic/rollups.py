"""Pre-aggregations: materialized as tables in ``dw_rollup`` and matched to queries exactly.

A rollup ``sales.monthlyByCategory`` becomes ``dw_rollup.sales_monthly_by_category`` with
one column per dimension (``products_category``), ``bucket`` (the local time truncated to
the rollup's granularity in its timezone) and one column per measure part (``m_revenue``;
an ``avg`` keeps ``m_x_sum`` and ``m_x_count``). ``dw_rollup.build`` records the warehouse
version each was built from; the planner only uses rollups built from the current version.
The ETL keeps them current with :func:`refresh` (fact deltas added up:
``semantic.rollup_delta``; or touched buckets re-aggregated).

A query is answered from a rollup only when that is exact: same timezone, every measure in
it (count/sum/min/max/avg, or ``number`` measures of those), every dimension and filter
member in it, time buckets derivable from its granularity, and time filter bounds on
bucket boundaries. Otherwise the facts answer.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from semantic import rollup_delta
from semantic.dates import time_bounds, truncate
from semantic.model import Granularity, MeasureType, Model, PreAggregation, derivable
from semantic.query import Condition, Junction, Member, Op
from semantic.rollup_delta import WATERMARK_SQL, DeltaSources
from semantic.sources import (
    ROLLUP_SCHEMA,
    SOURCE_ROWS,
    Binder,
    RawSource,
    rollup_dim_column,
    rollup_key,
    rollup_measure_columns,
    rollup_table,
    trunc,
)

if TYPE_CHECKING:
    from semantic.planner import FactPlan

_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


def _conditions(filters: Sequence[Condition | Junction]) -> list[Condition]:
    out: list[Condition] = []
    for f in filters:
        out.extend(_conditions(f.items) if isinstance(f, Junction) else [f])
    return out


def match_rollup(
    model: Model,
    fact: FactPlan,
    grans: Sequence[Granularity | None],
    timezone: str,
    fresh: frozenset[str],
) -> PreAggregation | None:
    cube = model.cube(fact.cube)
    assert cube is not None
    if fact.segments:
        return None
    for p in cube.pre_aggregations:
        if f"{cube.name}.{p.name}" not in fresh or p.timezone != timezone:
            continue
        if not set(fact.measures) <= {Member(cube.name, n) for n in p.measures}:
            continue
        if _covers(p, cube.name, fact, grans):
            return p
    return None


def _covers(
    p: PreAggregation, cube: str, fact: FactPlan, grans: Sequence[Granularity | None]
) -> bool:
    dims = {Member.parse(r, cube) for r in p.dimensions}
    t = Member(cube, p.time_dimension)
    for m, g in zip(fact.dims, grans, strict=True):
        if m == t:
            if g is None or g is Granularity.VALUE or not derivable(p.granularity, g):
                return False
        elif m not in dims or g is not None:
            return False
    for c in _conditions(fact.filters):
        if c.member == t:
            if c.op is Op.SET:
                continue
            lo, hi = time_bounds(c)
            for bound in (lo, hi):
                if bound is not None and truncate(p.granularity, bound) != bound:
                    return False
        elif c.member not in dims:
            return False
    return True


# ---------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------
def build_select(
    model: Model, cube_name: str, p: PreAggregation, only: Buckets | None = None
) -> sa.Select[Any]:
    """The rollup's rows (of the buckets ``only``, else all)."""
    cube = model.cube(cube_name)
    assert cube is not None
    dims = [Member.parse(r, cube_name) for r in p.dimensions]
    joins = tuple(dict.fromkeys(m.cube for m in dims if m.cube != cube_name))
    src = RawSource(model, cube_name, joins, Binder(p.timezone))
    cols: list[sa.ColumnElement[Any]] = [src.dim(m).label(rollup_dim_column(m)) for m in dims]
    bucket = trunc(p.granularity, src.local_time(Member(cube_name, p.time_dimension)))
    cols.append(bucket.label("bucket"))
    where: list[sa.ColumnElement[bool]] = []
    if only is not None:
        # the days' index of the warehouse facts narrows the scan, the buckets decide
        date_key: sa.ColumnElement[Any] = sa.literal_column(f"{cube_name}.date_key")
        where = [date_key.between(only.first_day, only.last_day), bucket.in_(only.buckets)]
    for name in p.measures:
        measure = cube.measure(name)
        assert measure is not None
        m = Member(cube_name, name)
        names = rollup_measure_columns(m, measure.type)
        inputs = src.inputs(m)
        if measure.type is MeasureType.AVG:
            cols += [
                sa.func.sum(inputs[0]).label(names[0]),
                sa.func.count(inputs[0]).label(names[1]),
            ]
        else:
            cols.append(src.aggregate(m, inputs).label(names[0]))
    cols.append(sa.func.count().label(SOURCE_ROWS))
    select = sa.select(*cols).select_from(src.from_()).where(*where)
    return select.group_by(*range_(len(dims) + 1))


def build_sql(model: Model, cube: str, p: PreAggregation) -> str:
    """The SQL that fills the rollup (its definition: a changed one is rebuilt)."""
    compiled = build_select(model, cube, p).compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    return str(compiled)


def _digest(sql: str) -> str:
    return hashlib.md5(sql.encode(), usedforsecurity=False).hexdigest()


_definitions: dict[int, tuple[Model, dict[str, str]]] = {}  # by id (hashing a model is slow)


def definitions(model: Model) -> dict[str, str]:
    """Each declared rollup's definition digest, by ``cube.name``."""
    found = _definitions.get(id(model))
    if found is None or found[0] is not model:
        digests = {
            f"{c.name}.{p.name}": _digest(build_sql(model, c.name, p))
            for c in model.cubes
            for p in c.pre_aggregations
        }
        found = _definitions[id(model)] = (model, digests)
    return found[1]


def range_(n: int) -> list[sa.ColumnElement[Any]]:
    return [sa.literal_column(str(i + 1)) for i in range(n)]


@dataclass(frozen=True)
class Built:
    name: str
    rows: int
    seconds: float
    how: str = "rebuilt"  # or "buckets" (re-aggregated), "deltas" (added up)


def ensure_schema(conn: Connection) -> None:
    conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {ROLLUP_SCHEMA}"))
    conn.execute(
        sa.text(
            f"CREATE TABLE IF NOT EXISTS {ROLLUP_SCHEMA}.build ("
            " name text PRIMARY KEY, version bigint NOT NULL, built_at timestamptz NOT NULL,"
            " row_count bigint NOT NULL, seconds double precision NOT NULL)"
        )
    )
    # fact rows summarized, queries answered (note_hit), the definition built from
    conn.execute(
        sa.text(
            f"ALTER TABLE {ROLLUP_SCHEMA}.build"
            " ADD COLUMN IF NOT EXISTS source_rows bigint NOT NULL DEFAULT 0,"
            " ADD COLUMN IF NOT EXISTS hits bigint NOT NULL DEFAULT 0,"
            " ADD COLUMN IF NOT EXISTS definition text NOT NULL DEFAULT '',"
            # the last dw.fact_delta it holds (semantic/rollup_delta.py); NULL: unknown
            " ADD COLUMN IF NOT EXISTS delta_seq bigint"
        )
    )
    grant_readers(conn)


# queries each rollup answered, by database, not yet added to its dw_rollup.build
_hits: Counter[tuple[str, str]] = Counter()
_hits_lock = threading.Lock()


def _database(conn: Connection) -> str:
    return conn.engine.url.render_as_string(hide_password=True)


def note_hit(conn: Connection, names: Collection[str]) -> None:
    """Count a query the rollups ``names`` answered on ``conn``'s database (the planner's
    choice, not a scan: the ETL's refreshes read the tables too)."""
    if names:
        db = _database(conn)
        with _hits_lock:
            _hits.update((db, n) for n in names)


def flush_hits(conn: Connection) -> None:
    """Add the hits this process counted on ``conn``'s database to ``dw_rollup.build``
    (each process flushes its own; the API's housekeeping does it every minute)."""
    db = _database(conn)
    with _hits_lock:
        pending = {name: n for (d, name), n in _hits.items() if d == db}
        for name in pending:
            del _hits[(db, name)]
    if not pending:
        return
    try:
        conn.execute(
            sa.text(
                f"UPDATE {ROLLUP_SCHEMA}.build AS b SET hits = b.hits + h.n"
                " FROM unnest(CAST(:names AS text[]), CAST(:counts AS bigint[])) AS h(name, n)"
                " WHERE b.name = h.name"
            ),
            {"names": list(pending), "counts": list(pending.values())},
        )
    except Exception:
        with _hits_lock:  # not lost: the next flush tries again
            _hits.update({(db, name): n for name, n in pending.items()})
        raise


def grant_readers(conn: Connection) -> None:
    """Let the API's role read the rollups as it reads dw.* (db/sql/0006_security.sql)."""
    conn.execute(
        sa.text(
            "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdms_api') THEN"
            f" GRANT USAGE ON SCHEMA {ROLLUP_SCHEMA} TO cdms_api;"
            f" GRANT SELECT ON ALL TABLES IN SCHEMA {ROLLUP_SCHEMA} TO cdms_api;"
            " END IF; END $$"
        )
    )


def warehouse_version(conn: Connection) -> int:
    return int(conn.execute(sa.text("SELECT version FROM dw.etl_state")).scalar_one())


def build_all(
    engine: Engine,
    model: Model,
    *,
    force: bool = False,
    on_done: Callable[[str], None] | None = None,
) -> list[Built]:
    """(Re)build every declared rollup not yet built from the current warehouse version.

    Each rollup is swapped in within one transaction (readers see the old or the new one).
    Tables of rollups the model no longer declares are dropped."""
    done: list[Built] = []
    declared = {
        f"{c.name}.{p.name}": rollup_table(c.name, p)
        for c in model.cubes
        for p in c.pre_aggregations
    }
    with engine.begin() as conn:
        ensure_schema(conn)
        _drop_undeclared(conn, declared)
    for cube in model.cubes:
        for p in cube.pre_aggregations:
            name = f"{cube.name}.{p.name}"
            with engine.begin() as conn:
                ensure_schema(conn)
                version = warehouse_version(conn)
                if _built(conn, name) == (version, definitions(model)[name]) and not force:
                    if on_done:
                        on_done(name)
                    continue
                done.append(_build(conn, model, cube.name, p, version))
            if on_done:
                on_done(name)
    return done


def _drop_undeclared(conn: Connection, declared: dict[str, str]) -> None:
    tables = conn.execute(
        sa.text("SELECT tablename FROM pg_tables WHERE schemaname = :s AND tablename <> 'build'"),
        {"s": ROLLUP_SCHEMA},
    ).scalars()
    for table in set(tables) - set(declared.values()):
        conn.execute(sa.text(f'DROP TABLE {ROLLUP_SCHEMA}."{table}"'))
    conn.execute(
        sa.text(f"DELETE FROM {ROLLUP_SCHEMA}.build WHERE NOT (name = ANY(:names))"),
        {"names": list(declared)},
    )


def _built(conn: Connection, name: str) -> tuple[int, str] | None:
    """(warehouse version, definition digest) the rollup was built from, if it was."""
    built = conn.execute(
        sa.text(f"SELECT version, definition FROM {ROLLUP_SCHEMA}.build WHERE name = :n"),
        {"n": name},
    ).one_or_none()
    return None if built is None else (int(built[0]), str(built[1]))


def _build(
    conn: Connection, model: Model, cube_name: str, p: PreAggregation, version: int
) -> Built:
    """Rebuild one rollup whole, swapped in within ``conn``'s transaction (readers see the
    old table or the new one)."""
    name, table = f"{cube_name}.{p.name}", rollup_table(cube_name, p)
    t0 = time.perf_counter()
    select = build_sql(model, cube_name, p)
    q = f"{ROLLUP_SCHEMA}.{table}"
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {q}__new"))
    # free space per page: a refresh rewrites the measures of a few rows in place (HOT)
    conn.execute(sa.text(f"CREATE TABLE {q}__new WITH (fillfactor = 90) AS {select} WITH NO DATA"))
    # filled through RETURNING: the rows and the fact rows they stand for, without a scan;
    # the last fact delta in the same statement (one snapshot: the facts hold those deltas)
    rows, source, delta_seq = conn.execute(
        sa.text(
            f"WITH ins AS (INSERT INTO {q}__new {select} RETURNING {SOURCE_ROWS})"
            f" SELECT count(*), coalesce(sum({SOURCE_ROWS}), 0), {WATERMARK_SQL} FROM ins"
        )
    ).one()
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {q}"))
    conn.execute(sa.text(f"ALTER TABLE {q}__new RENAME TO {table}"))
    keys = ", ".join(rollup_key(cube_name, p))
    conn.execute(sa.text(f"CREATE UNIQUE INDEX {table}_key ON {q} ({keys}) NULLS NOT DISTINCT"))
    conn.execute(sa.text(f"ANALYZE {q}"))
    grant_readers(conn)
    seconds = time.perf_counter() - t0
    conn.execute(
        sa.text(
            f"INSERT INTO {ROLLUP_SCHEMA}.build (name, version, built_at, row_count, seconds,"
            " source_rows, definition, delta_seq) VALUES (:n, :v, now(), :r, :s, :src, :d, :ds)"
            " ON CONFLICT (name) DO UPDATE SET version = :v, built_at = now(), row_count = :r,"
            " seconds = :s, source_rows = :src, definition = :d, delta_seq = :ds"
        ),
        {"n": name, "v": version, "r": rows, "s": seconds, "src": source}
        | {"d": definitions(model)[name], "ds": delta_seq},
    )
    return Built(name, int(rows), seconds)


@dataclass(frozen=True)
class Buckets:
    """The buckets of a rollup to re-aggregate, and the UTC days (date keys) they span."""

    buckets: tuple[datetime, ...]
    first_day: int
    last_day: int


_BUCKETS = sa.text(
    """
    WITH b AS (
        SELECT DISTINCT date_trunc(:gran, timezone(:tz, t)) AS bucket
        FROM unnest(CAST(:days AS integer[])) AS d(k),
             LATERAL (SELECT to_date(d.k::text, 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC') AS s(t0),
             LATERAL (VALUES (s.t0), (s.t0 + interval '1 day' - interval '1 microsecond')) AS v(t)
    )
    SELECT array_agg(bucket ORDER BY bucket),
           dw.date_key(timezone(:tz, min(bucket))),
           dw.date_key(timezone(:tz, max(bucket) + CAST(:step AS interval)))
    FROM b
    """
)


def refresh(
    conn: Connection,
    model: Model,
    days: Mapping[str, Collection[int]] | None,
    *,
    previous: int,
    version: int,
    deltas: DeltaSources | None = None,
) -> list[Built]:
    """Bring every rollup up to the facts ``conn``'s transaction sees and record it built
    from ``version`` (the ETL calls it in the transaction that publishes ``version``).

    A rollup built from ``previous`` adds up the fact deltas it has not applied when it
    can (``semantic.rollup_delta``: the load records them for the tables in ``deltas``);
    else it re-aggregates only the buckets holding the UTC days (``date_key``) of
    ``days[<its cube's table>]`` (its rows of those buckets are deleted and inserted again,
    merged from a finer rollup of the cube that holds its dimensions and measures when
    there is one, else from the facts). One built from another version, never built, or
    ``days`` None is rebuilt whole (so is one whose table, or its unique key, is missing).
    Rollups are taken finest first. The deltas every rollup now holds are deleted.
    Returns what it (re)built."""
    ensure_schema(conn)
    upto, pruned = rollup_delta.watermark(conn)
    done: list[Built] = []
    for cube in model.cubes:
        current: list[PreAggregation] = []  # complete in this transaction, finest first
        for p in sorted(
            cube.pre_aggregations, key=lambda p: list(Granularity).index(p.granularity)
        ):
            name = f"{cube.name}.{p.name}"
            table = f"{ROLLUP_SCHEMA}.{rollup_table(cube.name, p)}"
            built, definition, applied = _state(conn, name)
            if (
                days is None
                or (built, definition) != (previous, definitions(model)[name])
                or conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"{table}_key"}).scalar()
                is None
                or p.granularity is Granularity.VALUE
                or cube.sql_table is None
            ):
                done.append(_build(conn, model, cube.name, p, version))
                current.append(p)
                continue
            touched = sorted(days.get(cube.sql_table, ()))
            t0 = time.perf_counter()
            rows, how = 0, "buckets"
            if (
                deltas is not None
                and applied is not None
                and applied >= pruned  # the deltas after it are all there
                and rollup_delta.maintainable(conn, model, cube, p, deltas)
                and not rollup_delta.marked(conn, cube.sql_table, applied, upto)
            ):
                how = "deltas"
                rows = rollup_delta.apply(conn, model, cube.name, p, applied, upto)
            elif touched:
                finer = next((q for q in current if _derives(model, cube.name, q, p)), None)
                rows = _refresh_buckets(conn, model, cube.name, p, touched, finer)
            seconds = time.perf_counter() - t0
            conn.execute(
                sa.text(
                    f"UPDATE {ROLLUP_SCHEMA}.build SET version = :v, delta_seq = :ds"
                    " WHERE name = :n"
                ),
                {"v": version, "n": name, "ds": upto},
            )
            current.append(p)
            if touched or rows:
                done.append(Built(name, rows, seconds, how))
    rollup_delta.prune(conn, upto)
    return done


def _state(conn: Connection, name: str) -> tuple[int | None, str | None, int | None]:
    """(warehouse version, definition digest, last fact delta held) of a rollup."""
    row = conn.execute(
        sa.text(
            f"SELECT version, definition, delta_seq FROM {ROLLUP_SCHEMA}.build WHERE name = :n"
        ),
        {"n": name},
    ).one_or_none()
    if row is None:
        return None, None, None
    return int(row[0]), str(row[1]), None if row[2] is None else int(row[2])


_MERGE = {MeasureType.COUNT: "sum", MeasureType.SUM: "sum", MeasureType.AVG: "sum",
          MeasureType.MIN: "min", MeasureType.MAX: "max"}  # fmt: skip


def _derives(model: Model, cube_name: str, fine: PreAggregation, p: PreAggregation) -> bool:
    """Can ``p``'s buckets be re-aggregated from ``fine``'s rows (same cube and timezone,
    coarser buckets, its dimensions and measures among ``fine``'s, measures that merge)?"""
    cube = model.cube(cube_name)
    assert cube is not None
    dims = {Member.parse(r, cube_name) for r in fine.dimensions}
    return (
        fine.timezone == p.timezone
        and fine.time_dimension == p.time_dimension
        and derivable(fine.granularity, p.granularity)
        and {Member.parse(r, cube_name) for r in p.dimensions} <= dims
        and set(p.measures) <= set(fine.measures)
        and all((m := cube.measure(n)) is not None and m.type in _MERGE for n in p.measures)
    )


def _from_finer(model: Model, cube_name: str, fine: PreAggregation, p: PreAggregation) -> str:
    """``p``'s rows of the buckets ``%(b)s`` merged from ``fine``'s rows (a few rollup
    rows per bucket instead of every fact row joined to its dimensions), columns named."""
    cube = model.cube(cube_name)
    assert cube is not None
    dims = [rollup_dim_column(Member.parse(r, cube_name)) for r in p.dimensions]
    bucket = f"date_trunc('{p.granularity.value}', f.bucket)"
    values = [*(f"f.{d}" for d in dims), f"{bucket} AS bucket"]
    for n in p.measures:
        measure = cube.measure(n)
        assert measure is not None
        for c in rollup_measure_columns(Member(cube_name, n), measure.type):
            values.append(f"{_MERGE[measure.type]}(f.{c}) AS {c}")
    values.append(f"sum(f.{SOURCE_ROWS}) AS {SOURCE_ROWS}")
    source = f"{ROLLUP_SCHEMA}.{rollup_table(cube_name, fine)}"
    return (
        f"SELECT {', '.join(values)} FROM {source} AS f"
        " WHERE f.bucket >= %(lo)s AND f.bucket < CAST(%(hi)s AS timestamp) + CAST(%(step)s AS"
        f" interval) AND {bucket} = ANY(%(b)s)"
        f" GROUP BY {', '.join(str(i + 1) for i in range(len(dims) + 1))}"
    )


def _refresh_buckets(
    conn: Connection,
    model: Model,
    cube_name: str,
    p: PreAggregation,
    days: list[int],
    finer: PreAggregation | None,
) -> int:
    """Delete and insert again ``p``'s rows of the buckets holding ``days``: from the
    facts, or merged from the rows of ``finer`` (a rollup complete in this transaction)."""
    step = f"1 {p.granularity.value}"
    buckets, first, last = conn.execute(
        _BUCKETS, {"gran": p.granularity.value, "tz": p.timezone, "days": days, "step": step}
    ).one()
    only = Buckets(tuple(buckets), int(first), int(last))
    b = list(only.buckets)
    if finer is not None:
        select = _from_finer(model, cube_name, finer, p)
        params: dict[str, Any] = {"b": b, "lo": min(b), "hi": max(b), "step": step}
    else:
        compiled = build_select(model, cube_name, p, only).compile(
            dialect=_DIALECT, compile_kwargs={"render_postcompile": True}
        )
        select, params = str(compiled), {**compiled.params, "b": b}
    # the rows of the buckets computed again: those gone are deleted, the others upserted,
    # written only where a measure differs (a few rows per run, not the whole bucket: a
    # bucket deleted and inserted every second left the table mostly dead rows)
    key = rollup_key(cube_name, p)
    q = f"{ROLLUP_SCHEMA}.{rollup_table(cube_name, p)}"
    rest = [c for c in table_columns(conn, q) if c not in key]
    # the key compared as the text of a row (NULLs alike, and a hash join's equality)
    row_r, row_t = (f"ROW({', '.join(f'{a}.{c}' for c in key)})::text" for a in "rt")
    same = f"{row_r} = {row_t}"
    cols = ", ".join([*key, *rest])
    sql = f"""
        WITH r AS MATERIALIZED ({select}),
        gone AS (
            DELETE FROM {q} AS t WHERE t.bucket = ANY(%(b)s)
            AND NOT EXISTS (SELECT 1 FROM r WHERE {same}) RETURNING 1
        ), upserted AS (
            INSERT INTO {q} AS t ({cols}) SELECT {cols} FROM r
            ON CONFLICT ({", ".join(key)}) DO UPDATE
            SET {", ".join(f"{c} = EXCLUDED.{c}" for c in rest)}
            WHERE ({", ".join(f"t.{c}" for c in rest)})
                  IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in rest)})
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM upserted)
    """
    return int(conn.exec_driver_sql(sql, params).scalar_one())


def table_columns(conn: Connection, table: str) -> list[str]:
    rows = conn.execute(
        sa.text(
            "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass)"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
        {"t": table},
    )
    return [str(r) for r in rows.scalars()]


def fresh_rollups(conn: Connection, version: int, model: Model) -> frozenset[str]:
    """The rollups built from warehouse ``version`` as ``model`` declares them now."""
    exists = conn.execute(sa.text(f"SELECT to_regclass('{ROLLUP_SCHEMA}.build') IS NOT NULL"))
    if not exists.scalar_one():
        return frozenset()
    # (a build table from before the definition column has none: nothing matches until the
    # next build, which adds it; to_jsonb reads a missing column as null, without an error)
    rows = conn.execute(
        sa.text(
            f"SELECT name, to_jsonb(b) ->> 'definition' FROM {ROLLUP_SCHEMA}.build AS b"
            " WHERE version = :v"
        ),
        {"v": version},
    )
    expected = definitions(model)
    return frozenset(name for name, digest in rows if expected.get(name) == digest)
