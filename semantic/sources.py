"""Where a fact's rows come from: the star tables (``RawSource``) or a rollup table in
``dw_rollup`` (``RollupSource``). Both give SQLAlchemy expressions for dimensions, time
buckets, time ranges, measure inputs and their aggregation, and segment conditions.

Model SQL (``{CUBE}.net``) is trusted text from the YAML files; user values never reach
it: they are bound parameters made by ``Binder``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, assert_never

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from semantic.model import Cube, Granularity, MeasureType, Model, PreAggregation
from semantic.query import Member

Expr = ColumnElement[Any]
ROLLUP_SCHEMA = "dw_rollup"


@dataclass
class Binder:
    """Names every bound parameter of one statement uniquely (``p0``, ``p1`` ...)."""

    timezone: str
    count: int = 0
    tz: Any = field(init=False)

    def __post_init__(self) -> None:
        self.tz = sa.bindparam("tz", self.timezone, type_=sa.Text)

    def __call__(
        self, value: Any, *, expanding: bool = False, type_: Any = None
    ) -> sa.BindParameter[Any]:
        name = f"p{self.count}"
        self.count += 1
        return sa.bindparam(name, value, expanding=expanding, type_=type_)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def trunc(gran: Granularity, local: Expr) -> Expr:
    match gran:
        case Granularity.VALUE:
            return local
        case (
            Granularity.DAY
            | Granularity.WEEK
            | Granularity.MONTH
            | Granularity.QUARTER
            | Granularity.YEAR
        ):
            return sa.func.date_trunc(sa.literal_column(f"'{gran.value}'"), local)
        case _:
            assert_never(gran)


def model_sql(template: str, aliases: dict[str, str], own: str) -> str:
    """``{CUBE}`` → the cube's alias, ``{other}`` → that cube's alias (quoted when it has
    capitals, ``segmentMigration``, as SQLAlchemy quotes the alias it names)."""
    return re.sub(
        r"\{(\w+)\}",
        lambda m: ident(aliases.get(m[1], own) if m[1] != "CUBE" else own),
        template,
    )


def expand_refs(model: Model, template: str) -> str:
    """``{cube.dimension}`` in a dimension's SQL → that dimension's SQL over ``cube``'s
    alias (the cube is joined by whoever uses it: the planner, the BI views)."""

    def one(m: re.Match[str]) -> str:
        owner, _, name = m[1].partition(".")
        cube = model.cube(owner)
        dim = cube.dimension(name) if cube else None
        assert dim is not None, m[1]  # semantic.validate.dimension_refs
        return "(" + model_sql(dim.sql, {}, owner) + ")"

    return re.sub(r"\{(\w+\.\w+)\}", one, template)


def ident(name: str) -> str:
    """A cube alias as SQL: quoted when it has capitals (``"segmentMigration"``)."""
    return name if name == name.lower() else f'"{name}"'


class RawSource:
    """A fact cube joined (LEFT, many-to-one) to the cubes in ``joins``."""

    rollup: PreAggregation | None = None

    def __init__(self, model: Model, root: str, joins: tuple[str, ...], binder: Binder) -> None:
        self.model = model
        self.root = root
        self.joins = joins
        self.binder = binder

    def _cube(self, name: str) -> Cube:
        cube = self.model.cube(name)
        assert cube is not None
        return cube

    def _table(self, cube: Cube) -> FromClause:
        if cube.sql_table is not None:
            schema, _, table = cube.sql_table.rpartition(".")
            return sa.table(table, schema=schema or None).alias(cube.name)
        assert cube.sql is not None
        return sa.text(cube.sql).columns().subquery(cube.name)

    def from_(self) -> FromClause:
        source = self._table(self._cube(self.root))
        joined = {self.root}
        for name in self.joins:
            parent = next(c for c in joined if self._cube(c).join(name) is not None)
            join = self._cube(parent).join(name)
            assert join is not None
            on = sa.text(model_sql(join.sql, {name: name, parent: parent}, parent))
            source = source.outerjoin(self._table(self._cube(name)), on)
            joined.add(name)
        return source

    def _sql(self, cube: str, template: str) -> Expr:
        return sa.literal_column(f"({model_sql(template, {}, cube)})")

    def dim(self, m: Member) -> Expr:
        d = self._cube(m.cube).dimension(m.name)
        assert d is not None
        return self._sql(m.cube, expand_refs(self.model, d.sql))

    def local_time(self, m: Member) -> Expr:
        return sa.func.timezone(self.binder.tz, self.dim(m))

    def bucket(self, m: Member, gran: Granularity) -> Expr:
        return trunc(gran, self.local_time(m))

    def time_range(self, m: Member, lo: datetime | None, hi: datetime | None) -> Expr:
        """``lo <= t < hi`` (local bounds), sargable on the raw timestamp column."""
        t = self.dim(m)
        parts = []
        if lo is not None:
            parts.append(t >= sa.func.timezone(self.binder.tz, self.binder(lo, type_=sa.DateTime)))
        if hi is not None:
            parts.append(t < sa.func.timezone(self.binder.tz, self.binder(hi, type_=sa.DateTime)))
        return sa.and_(*parts)

    def segment(self, s: Member) -> Expr:
        seg = self._cube(s.cube).segment(s.name)
        assert seg is not None
        return self._sql(s.cube, seg.sql)

    def inputs(self, m: Member) -> list[Expr]:
        """Row-level expressions a measure aggregates (none for ``count(*)``)."""
        measure = self._cube(m.cube).measure(m.name)
        assert measure is not None
        return [] if measure.sql is None else [self._sql(m.cube, measure.sql)]

    def aggregate(self, m: Member, cols: list[Expr]) -> Expr:
        measure = self._cube(m.cube).measure(m.name)
        assert measure is not None
        kind = measure.type
        match kind:
            case MeasureType.COUNT:
                return sa.func.count(cols[0]) if cols else sa.func.count()
            case MeasureType.COUNT_DISTINCT:
                return sa.func.count(sa.distinct(cols[0]))
            case MeasureType.SUM:
                return sa.func.sum(cols[0])
            case MeasureType.AVG:
                return sa.func.avg(cols[0])
            case MeasureType.MIN:
                return sa.func.min(cols[0])
            case MeasureType.MAX:
                return sa.func.max(cols[0])
            case MeasureType.PERCENTILE:
                assert measure.percentile is not None
                fraction: Expr = sa.literal_column(repr(float(measure.percentile)))
                return sa.func.percentile_cont(fraction).within_group(cols[0])
            case MeasureType.NUMBER:
                raise AssertionError("number measures are computed from their parts")
            case MeasureType.LAST:
                raise AssertionError("last measures are aggregated in two steps (compile)")
            case _:
                assert_never(kind)


def rollup_table(cube: str, p: PreAggregation) -> str:
    return f"{cube}_{snake(p.name)}"


def rollup_dim_column(m: Member) -> str:
    return f"{m.cube}_{snake(m.name)}"


SOURCE_ROWS = "source_rows"  # per rollup row: the fact rows it stands for


def rollup_key(cube: str, p: PreAggregation) -> list[str]:
    """A rollup's unique key: its bucket, then its dimension columns."""
    return ["bucket", *(rollup_dim_column(Member.parse(r, cube)) for r in p.dimensions)]


def rollup_measure_columns(m: Member, kind: MeasureType) -> list[str]:
    base = f"m_{snake(m.name)}"
    return [f"{base}_sum", f"{base}_count"] if kind is MeasureType.AVG else [base]


class RollupSource(RawSource):
    """A materialized rollup: dimensions are columns, time is the local ``bucket``."""

    def __init__(self, model: Model, root: str, rollup: PreAggregation, binder: Binder) -> None:
        super().__init__(model, root, (), binder)
        self.rollup = rollup
        self.table = sa.table(rollup_table(root, rollup), schema=ROLLUP_SCHEMA).alias(root)

    def from_(self) -> FromClause:
        return self.table

    def dim(self, m: Member) -> Expr:
        return sa.literal_column(f'{self.root}."{rollup_dim_column(m)}"')

    def local_time(self, m: Member) -> Expr:
        return sa.literal_column(f"{self.root}.bucket")

    def time_range(self, m: Member, lo: datetime | None, hi: datetime | None) -> Expr:
        t = self.local_time(m)
        parts = []
        if lo is not None:
            parts.append(t >= self.binder(lo, type_=sa.DateTime))
        if hi is not None:
            parts.append(t < self.binder(hi, type_=sa.DateTime))
        return sa.and_(*parts)

    def segment(self, s: Member) -> Expr:
        raise AssertionError("segments are never answered from a rollup")

    def inputs(self, m: Member) -> list[Expr]:
        measure = self._cube(m.cube).measure(m.name)
        assert measure is not None
        cols = rollup_measure_columns(m, measure.type)
        return [sa.literal_column(f'{self.root}."{c}"') for c in cols]

    def aggregate(self, m: Member, cols: list[Expr]) -> Expr:
        measure = self._cube(m.cube).measure(m.name)
        assert measure is not None
        kind = measure.type
        match kind:
            case MeasureType.COUNT:
                return sa.func.coalesce(sa.func.sum(cols[0]), 0)
            case MeasureType.SUM:
                return sa.func.sum(cols[0])
            case MeasureType.AVG:
                return sa.func.sum(cols[0]) / sa.func.nullif(sa.func.sum(cols[1]), 0)
            case MeasureType.MIN:
                return sa.func.min(cols[0])
            case MeasureType.MAX:
                return sa.func.max(cols[0])
            case (
                MeasureType.COUNT_DISTINCT
                | MeasureType.NUMBER
                | MeasureType.LAST
                | MeasureType.PERCENTILE
            ):
                raise AssertionError(f"{m} cannot come from a rollup")
            case _:
                assert_never(kind)
