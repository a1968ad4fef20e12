"""Delta maintenance of rollups: a run's rollup work in proportion to the fact rows it
changed, not to the size of the buckets it touched.

The load records each fact row it changes in ``dw.fact_delta`` as it was (sign -1) and as
it is (sign +1), in the transaction that changes it (``etl/load.py``,
``db/sql/0015_fresh_rollup_deltas.sql``). A rollup whose measures all add up (count, sum
of a column that is never NULL, avg kept as a sum and a count, in integers or numerics,
so that adding is exact) applies the deltas it has not applied yet: they are aggregated
as :func:`semantic.rollups.build_select` aggregates the facts (same joins, dimensions and
buckets), each row weighted by its sign, and added to the rollup's rows; a row whose fact
rows all went is deleted. Its ``dw_rollup.build.delta_seq`` is the last delta it holds.

A rollup that cannot (another measure type, a dimension of a cube whose changes to it come
without deltas, a marker among its deltas, deltas already deleted) re-aggregates its
touched buckets or is rebuilt, as before (``semantic.rollups.refresh``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import FromClause

from semantic.model import Cube, MeasureType, Model, PreAggregation
from semantic.query import Member
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

DELTAS = "dw.fact_delta"
SIGN = "delta_sign"  # the sign's column in the aggregated deltas
_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
_ADDITIVE = frozenset({MeasureType.COUNT, MeasureType.SUM, MeasureType.AVG})
_EXACT_TYPES = frozenset({"smallint", "integer", "bigint", "numeric"})
_COLUMN = re.compile(r"^\{CUBE\}\.(\w+)$")
_OTHER_CUBE = re.compile(r"\{(?!CUBE\})[\w.]+\}")  # SQL that reads another cube than its own


@dataclass(frozen=True)
class DeltaSources:
    """What the load records deltas for: the fact tables every change of which comes as
    deltas, and the dimension tables whose changes to those facts come as deltas (re-keyed
    facts) or markers (type-1 changes)."""

    facts: frozenset[str]
    dimensions: frozenset[str]


# the same in a subquery: a rollup built outside the ETL's lock (build_all) takes it in
# the statement that reads the facts, so that both see one snapshot
WATERMARK_SQL = (
    f"(SELECT greatest((SELECT max(seq) FROM {DELTAS}), delta_pruned) FROM dw.etl_state)"
)


def watermark(conn: Connection) -> tuple[int, int]:
    """(the last delta ``conn``'s snapshot sees, the last one deleted)."""
    upto, pruned = conn.execute(
        sa.text(f"SELECT {WATERMARK_SQL}, (SELECT delta_pruned FROM dw.etl_state)")
    ).one()
    return int(upto), int(pruned)


def prune(conn: Connection, upto: int) -> None:
    """Delete the deltas up to ``upto`` (every rollup holds them)."""
    conn.execute(sa.text(f"DELETE FROM {DELTAS} WHERE seq <= :upto"), {"upto": upto})
    conn.execute(
        sa.text("UPDATE dw.etl_state SET delta_pruned = greatest(delta_pruned, :upto)"),
        {"upto": upto},
    )


def maintainable(
    conn: Connection, model: Model, cube: Cube, p: PreAggregation, sources: DeltaSources
) -> bool:
    """Can ``p`` be kept by adding deltas, exactly as a rebuild would give it?"""
    if cube.sql_table not in sources.facts:
        return False
    for ref in p.dimensions:
        m = Member.parse(ref, cube.name)
        owner = model.cube(m.cube)
        dim = owner.dimension(m.name) if owner else None
        if owner is None or dim is None or _OTHER_CUBE.search(dim.sql):
            return False  # a dimension read through another cube's join
        if m.cube != cube.name and owner.sql_table not in sources.dimensions:
            return False
    not_null: list[str] = []
    for name in p.measures:
        measure = cube.measure(name)
        if measure is None or measure.type not in _ADDITIVE:
            return False
        if _OTHER_CUBE.search(measure.sql or ""):
            return False  # an input read from a joined cube: its changes come without deltas
        if measure.type is MeasureType.SUM:
            column = _COLUMN.match(measure.sql or "")
            if column is None:
                return False  # a sum of NULLs is NULL, not 0: only plain NOT NULL columns
            not_null.append(column[1])
    if not_null and not _all_not_null(conn, cube.sql_table, not_null):
        return False
    return _exact_types(conn, cube.name, p)


def _all_not_null(conn: Connection, table: str, columns: list[str]) -> bool:
    found = conn.execute(
        sa.text(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = CAST(:t AS regclass)"
            " AND attname = ANY(:c) AND attnotnull AND NOT attisdropped"
        ),
        {"t": table, "c": columns},
    ).scalar_one()
    return int(found) == len(set(columns))


def _exact_types(conn: Connection, cube_name: str, p: PreAggregation) -> bool:
    """The rollup's measure columns add up exactly (no floating point)."""
    types = conn.execute(
        sa.text(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped"
        ),
        {"t": f"{ROLLUP_SCHEMA}.{rollup_table(cube_name, p)}"},
    )
    return all(t in _EXACT_TYPES for name, t in types if str(name).startswith("m_"))


def marked(conn: Connection, table: str, after: int, upto: int) -> bool:
    """Is there a marker (a change without deltas) for ``table`` in ``(after, upto]``?"""
    return bool(
        conn.execute(
            sa.text(
                f"SELECT EXISTS (SELECT 1 FROM {DELTAS} WHERE seq > :a AND seq <= :u"
                " AND fact_table = :t AND sign = 0)"
            ),
            {"a": after, "u": upto, "t": table},
        ).scalar_one()
    )


class DeltaSource(RawSource):
    """The deltas of the root cube's table in ``(after, upto]``, each a row of that table
    plus its sign, under the cube's alias; joined to the other cubes as the facts are."""

    def __init__(
        self,
        model: Model,
        root: str,
        joins: tuple[str, ...],
        binder: Binder,
        after: int,
        upto: int,
    ) -> None:
        super().__init__(model, root, joins, binder)
        self.after, self.upto = after, upto

    def _table(self, cube: Cube) -> FromClause:
        if cube.name != self.root:
            return super()._table(cube)
        assert cube.sql_table is not None
        return (
            sa.text(
                f"SELECT d.sign AS {SIGN}, r.* FROM {DELTAS} AS d,"
                f" LATERAL jsonb_populate_record(NULL::{cube.sql_table}, d.fact) AS r"
                " WHERE d.seq > :delta_after AND d.seq <= :delta_upto"
                " AND d.fact_table = :delta_table AND d.sign <> 0"
            )
            .bindparams(delta_after=self.after, delta_upto=self.upto, delta_table=cube.sql_table)
            .columns()
            .subquery(cube.name)
        )


def delta_select(
    model: Model, cube_name: str, p: PreAggregation, after: int, upto: int
) -> sa.Select[Any]:
    """What the deltas in ``(after, upto]`` add to each of ``p``'s rows: build_select's
    aggregation with every fact row weighted by its sign."""
    cube = model.cube(cube_name)
    assert cube is not None
    dims = [Member.parse(r, cube_name) for r in p.dimensions]
    joins = tuple(dict.fromkeys(m.cube for m in dims if m.cube != cube_name))
    src = DeltaSource(model, cube_name, joins, Binder(p.timezone), after, upto)
    sign: sa.ColumnElement[Any] = sa.literal_column(f"{cube_name}.{SIGN}")
    cols: list[sa.ColumnElement[Any]] = [src.dim(m).label(rollup_dim_column(m)) for m in dims]
    bucket = trunc(p.granularity, src.local_time(Member(cube_name, p.time_dimension)))
    cols.append(bucket.label("bucket"))

    def counted(x: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.sum(sa.case((x.is_not(None), sign), else_=0))

    for name in p.measures:
        measure = cube.measure(name)
        assert measure is not None
        m = Member(cube_name, name)
        names = rollup_measure_columns(m, measure.type)
        inputs = src.inputs(m)
        match measure.type:
            case MeasureType.COUNT:
                cols.append((counted(inputs[0]) if inputs else sa.func.sum(sign)).label(names[0]))
            case MeasureType.SUM:
                cols.append(sa.func.sum(sign * inputs[0]).label(names[0]))
            case MeasureType.AVG:
                cols += [
                    sa.func.sum(sign * inputs[0]).label(names[0]),
                    counted(inputs[0]).label(names[1]),
                ]
            case _:
                raise AssertionError(f"{m} is not additive")
    cols.append(sa.func.sum(sign).label(SOURCE_ROWS))
    select = sa.select(*cols).select_from(src.from_())
    return select.group_by(*(sa.literal_column(str(i + 1)) for i in range(len(dims) + 1)))


def apply(
    conn: Connection, model: Model, cube_name: str, p: PreAggregation, after: int, upto: int
) -> int:
    """Add the deltas in ``(after, upto]`` to ``p``'s rows; delete the rows left standing
    for no fact row. Returns the rows written."""
    cube = model.cube(cube_name)
    assert cube is not None
    compiled = delta_select(model, cube_name, p, after, upto).compile(
        dialect=_DIALECT, compile_kwargs={"render_postcompile": True}
    )
    key = rollup_key(cube_name, p)
    sets: list[str] = []
    parts: list[str] = [SOURCE_ROWS]
    for name in p.measures:
        measure = cube.measure(name)
        assert measure is not None
        names = rollup_measure_columns(Member(cube_name, name), measure.type)
        parts += names
        if measure.type is MeasureType.AVG:
            total, n = names
            # NULL (as avg's sum over no value) when no value is left
            sets.append(
                f"{total} = CASE WHEN t.{n} + EXCLUDED.{n} = 0 THEN NULL"
                f" ELSE coalesce(t.{total}, 0) + coalesce(EXCLUDED.{total}, 0) END"
            )
            sets.append(f"{n} = t.{n} + EXCLUDED.{n}")
        else:
            sets.append(f"{names[0]} = t.{names[0]} + EXCLUDED.{names[0]}")
    sets.append(f"{SOURCE_ROWS} = t.{SOURCE_ROWS} + EXCLUDED.{SOURCE_ROWS}")
    q = f"{ROLLUP_SCHEMA}.{rollup_table(cube_name, p)}"
    cols = ", ".join([*key, *parts])
    changes = " OR ".join(f"coalesce({c}, 0) <> 0" for c in parts)  # deltas that cancel out
    sql = f"""
        WITH d AS MATERIALIZED ({compiled}),
        up AS (
            INSERT INTO {q} AS t ({cols}) SELECT {cols} FROM d WHERE {changes}
            ON CONFLICT ({", ".join(key)}) DO UPDATE SET {", ".join(sets)}
            RETURNING t.bucket, t.{SOURCE_ROWS}
        )
        SELECT count(*), array_agg(DISTINCT bucket) FILTER (WHERE {SOURCE_ROWS} = 0) FROM up
    """
    written, emptied = conn.exec_driver_sql(sql, compiled.params).one()
    if emptied:
        conn.execute(
            sa.text(f"DELETE FROM {q} WHERE bucket = ANY(:b) AND {SOURCE_ROWS} = 0"),
            {"b": list(emptied)},
        )
    return int(written)
