"""Pre-aggregations: materialized as tables in ``dw_rollup`` and matched to queries exactly.

A rollup ``sales.monthlyByCategory`` becomes ``dw_rollup.sales_monthly_by_category`` with
one column per dimension (``products_category``), ``bucket`` (the local time truncated to
the rollup's granularity in its timezone) and one column per measure part (``m_revenue``;
an ``avg`` keeps ``m_x_sum`` and ``m_x_count``). ``dw_rollup.build`` records the warehouse
version each was built from; the planner only uses rollups built from the current version.

A query is answered from a rollup only when that is exact: same timezone, every measure in
it (count/sum/min/max/avg, or ``number`` measures of those), every dimension and filter
member in it, time buckets derivable from its granularity, and time filter bounds on
bucket boundaries. Otherwise the facts answer.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from semantic.dates import time_bounds, truncate
from semantic.model import Granularity, MeasureType, Model, PreAggregation, derivable
from semantic.query import Condition, Junction, Member, Op
from semantic.sources import (
    ROLLUP_SCHEMA,
    Binder,
    RawSource,
    rollup_dim_column,
    rollup_measure_columns,
    rollup_table,
    trunc,
)

if TYPE_CHECKING:
    from semantic.planner import FactPlan


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
def build_select(model: Model, cube_name: str, p: PreAggregation) -> sa.Select[Any]:
    cube = model.cube(cube_name)
    assert cube is not None
    dims = [Member.parse(r, cube_name) for r in p.dimensions]
    joins = tuple(dict.fromkeys(m.cube for m in dims if m.cube != cube_name))
    src = RawSource(model, cube_name, joins, Binder(p.timezone))
    cols: list[sa.ColumnElement[Any]] = [src.dim(m).label(rollup_dim_column(m)) for m in dims]
    bucket = trunc(p.granularity, src.local_time(Member(cube_name, p.time_dimension)))
    cols.append(bucket.label("bucket"))
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
    return sa.select(*cols).select_from(src.from_()).group_by(*range_(len(dims) + 1))


SOURCE_ROWS = "source_rows"  # per rollup row: the fact rows it stands for


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


def ensure_schema(conn: Connection) -> None:
    conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {ROLLUP_SCHEMA}"))
    conn.execute(
        sa.text(
            f"CREATE TABLE IF NOT EXISTS {ROLLUP_SCHEMA}.build ("
            " name text PRIMARY KEY, version bigint NOT NULL, built_at timestamptz NOT NULL,"
            " row_count bigint NOT NULL, seconds double precision NOT NULL)"
        )
    )
    # fact rows summarized, and the scans of the tables earlier builds replaced
    conn.execute(
        sa.text(
            f"ALTER TABLE {ROLLUP_SCHEMA}.build"
            " ADD COLUMN IF NOT EXISTS source_rows bigint NOT NULL DEFAULT 0,"
            " ADD COLUMN IF NOT EXISTS hits bigint NOT NULL DEFAULT 0,"
            " ADD COLUMN IF NOT EXISTS definition text NOT NULL DEFAULT ''"
        )
    )
    grant_readers(conn)


def scans(conn: Connection, table: str) -> int:
    """Queries that read ``table`` since it was built: PostgreSQL's scan count of it (on this
    server: reads on replicas are not counted; statistics reach it within seconds)."""
    found = conn.execute(
        sa.text(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables"
            " WHERE relid = to_regclass(:t)"
        ),
        {"t": table},
    ).scalar()
    return int(found or 0)


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
            name, table = f"{cube.name}.{p.name}", rollup_table(cube.name, p)
            select = build_sql(model, cube.name, p)
            with engine.begin() as conn:
                ensure_schema(conn)
                version = warehouse_version(conn)
                built = conn.execute(
                    sa.text(
                        f"SELECT version, definition FROM {ROLLUP_SCHEMA}.build WHERE name = :n"
                    ),
                    {"n": name},
                ).one_or_none()
                if built == (version, _digest(select)) and not force:
                    if on_done:
                        on_done(name)
                    continue
                t0 = time.perf_counter()
                q = f"{ROLLUP_SCHEMA}.{table}"
                replaced = scans(conn, q)
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {q}__new"))
                conn.execute(sa.text(f"CREATE TABLE {q}__new AS {select} WITH NO DATA"))
                # filled through RETURNING: counted without a scan (scans are its hits)
                rows, source = conn.execute(
                    sa.text(
                        f"WITH ins AS (INSERT INTO {q}__new {select} RETURNING {SOURCE_ROWS})"
                        f" SELECT count(*), coalesce(sum({SOURCE_ROWS}), 0) FROM ins"
                    )
                ).one()
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {q}"))
                conn.execute(sa.text(f"ALTER TABLE {q}__new RENAME TO {table}"))
                conn.execute(sa.text(f"ANALYZE {q}"))
                grant_readers(conn)
                seconds = time.perf_counter() - t0
                conn.execute(
                    sa.text(
                        f"INSERT INTO {ROLLUP_SCHEMA}.build (name, version, built_at, row_count,"
                        " seconds, source_rows, hits, definition)"
                        " VALUES (:n, :v, now(), :r, :s, :src, :h, :d)"
                        " ON CONFLICT (name) DO UPDATE SET version = :v, built_at = now(),"
                        f" row_count = :r, seconds = :s, source_rows = :src, definition = :d,"
                        f" hits = {ROLLUP_SCHEMA}.build.hits + :h"
                    ),
                    {"n": name, "v": version, "r": rows, "s": seconds}
                    | {"src": source, "h": replaced, "d": _digest(select)},
                )
            done.append(Built(name, int(rows), seconds))
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
