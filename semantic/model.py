"""The declared cube model as typed frozen objects (built by ``semantic.loader``).

Kinds are enums; every node keeps where it was declared (``Loc``) so validation issues and
planner errors can point at ``file:line``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import assert_never

NAME_RE = re.compile(r"^[a-z][A-Za-z0-9]*$")
CUBE_NAME_RE = re.compile(r"^[a-z][A-Za-z0-9_]*$")
REF_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\}")


class DimensionType(Enum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    TIME = "time"


class MeasureType(Enum):
    COUNT = "count"
    COUNT_DISTINCT = "count_distinct"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    NUMBER = "number"
    LAST = "last"  # semi-additive: the last snapshot in each bucket, summed across the rest
    PERCENTILE = "percentile"  # exact percentile_cont of the rows (0.5: the median)


class Relationship(Enum):
    MANY_TO_ONE = "many_to_one"
    ONE_TO_MANY = "one_to_many"
    ONE_TO_ONE = "one_to_one"


class Format(Enum):
    NONE = "none"
    NUMBER = "number"
    INTEGER = "integer"
    CURRENCY = "currency"
    PERCENT = "percent"


class Granularity(Enum):
    """Time buckets, finest first; ``VALUE`` is the raw timestamp."""

    VALUE = "value"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


def derivable(fine: Granularity, coarse: Granularity) -> bool:
    """Can buckets of ``coarse`` be formed by merging buckets of ``fine``?"""
    if fine is coarse:
        return True
    match fine:
        case Granularity.VALUE:
            return True
        case Granularity.DAY:
            return coarse is not Granularity.VALUE
        case Granularity.WEEK:
            return False  # weeks straddle months and years
        case Granularity.MONTH:
            return coarse in (Granularity.QUARTER, Granularity.YEAR)
        case Granularity.QUARTER:
            return coarse is Granularity.YEAR
        case Granularity.YEAR:
            return False
        case _:
            assert_never(fine)


def additive(kind: MeasureType) -> bool:
    """Can the measure be re-aggregated from partial aggregates (a rollup)?"""
    match kind:
        case MeasureType.COUNT | MeasureType.SUM | MeasureType.MIN | MeasureType.MAX:
            return True
        case MeasureType.AVG:
            return True  # from a sum and a count kept side by side
        case (
            MeasureType.COUNT_DISTINCT
            | MeasureType.NUMBER
            | MeasureType.LAST
            | MeasureType.PERCENTILE
        ):
            return False
        case _:
            assert_never(kind)


def summable(kind: MeasureType) -> bool:
    """Is the measure a sum over rows (so running totals and shares make sense)?"""
    return kind in (MeasureType.COUNT, MeasureType.SUM)


# The API's roles (api/auth): who may see a member declared ``public: false``.
ROLES = ("admin", "analyst", "service", "customer")
HIDDEN_DEFAULT_ROLES = ("admin",)


@dataclass(frozen=True)
class Loc:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Dimension:
    name: str
    type: DimensionType
    sql: str
    loc: Loc
    title: str = ""
    description: str = ""
    format: Format = Format.NONE
    primary_key: bool = False
    # the closed set of values a string dimension takes (filters are matched against it)
    values: tuple[str, ...] = ()
    public: bool = True
    roles: tuple[str, ...] = ()  # who sees it when not public (default: admins)

    def visible_to(self, role: str | None) -> bool:
        return visible(self.public, self.roles, role)

    def refs(self) -> tuple[tuple[str, str], ...]:
        """Dimensions of other cubes its SQL reads (``{rfm.segment}``): (cube, dimension).
        A query using it joins those cubes from its fact (``customers.rfmSegment`` is the
        segment of the order's month because sales joins ``rfm`` by that month)."""
        return tuple(
            (owner, name)
            for owner, _, name in (r.rpartition(".") for r in REF_RE.findall(self.sql))
            if owner
        )


@dataclass(frozen=True)
class Measure:
    name: str
    type: MeasureType
    sql: str | None
    loc: Loc
    title: str = ""
    description: str = ""
    format: Format = Format.NONE
    percentile: float | None = None  # percentile measures: the fraction (0.5, 0.9)
    time_dimension: str | None = None  # last measures: the snapshot time they pick the last of
    public: bool = True
    roles: tuple[str, ...] = ()  # who sees it when not public (default: admins)

    def refs(self) -> tuple[str, ...]:
        """Members named in a ``number`` measure's SQL (``name`` or ``cube.name``)."""
        return tuple(REF_RE.findall(self.sql or "")) if self.type is MeasureType.NUMBER else ()

    def visible_to(self, role: str | None) -> bool:
        return visible(self.public, self.roles, role)

    @property
    def integer(self) -> bool:
        """Are its values whole numbers (GraphQL ``Int``)? Counts always; a sum (or a last
        snapshot) when declared ``format: integer``, i.e. over an integer column."""
        match self.type:
            case MeasureType.COUNT | MeasureType.COUNT_DISTINCT:
                return True
            case MeasureType.SUM | MeasureType.LAST:
                return self.format is Format.INTEGER
            case (
                MeasureType.AVG
                | MeasureType.MIN
                | MeasureType.MAX
                | MeasureType.NUMBER
                | MeasureType.PERCENTILE
            ):
                return False
            case _:
                assert_never(self.type)


def visible(public: bool, roles: tuple[str, ...], role: str | None) -> bool:
    """A member is visible to everyone when public, else to ``roles`` (admins by default);
    ``role`` None is the unauthenticated demo principal, an admin."""
    if public:
        return True
    allowed = roles or HIDDEN_DEFAULT_ROLES
    return (role or "admin") in allowed


@dataclass(frozen=True)
class Join:
    cube: str
    relationship: Relationship
    sql: str
    loc: Loc


@dataclass(frozen=True)
class Segment:
    name: str
    sql: str
    loc: Loc
    title: str = ""
    description: str = ""


@dataclass(frozen=True)
class Hierarchy:
    name: str
    levels: tuple[str, ...]
    loc: Loc
    title: str = ""


@dataclass(frozen=True)
class PreAggregation:
    """A rollup: ``measures`` and ``dimensions`` (``member`` or ``cube.member``) grouped by
    ``time_dimension`` truncated to ``granularity`` in ``timezone``."""

    name: str
    measures: tuple[str, ...]
    dimensions: tuple[str, ...]
    time_dimension: str
    granularity: Granularity
    loc: Loc
    timezone: str = "UTC"


@dataclass(frozen=True)
class Cube:
    name: str
    loc: Loc
    sql_table: str | None = None
    sql: str | None = None
    title: str = ""
    description: str = ""
    joins: tuple[Join, ...] = ()
    dimensions: tuple[Dimension, ...] = ()
    measures: tuple[Measure, ...] = ()
    segments: tuple[Segment, ...] = ()
    hierarchies: tuple[Hierarchy, ...] = ()
    pre_aggregations: tuple[PreAggregation, ...] = ()

    def dimension(self, name: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.name == name), None)

    def measure(self, name: str) -> Measure | None:
        return next((m for m in self.measures if m.name == name), None)

    def segment(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def join(self, cube: str) -> Join | None:
        return next((j for j in self.joins if j.cube == cube), None)

    def member_names(self) -> list[str]:
        return [d.name for d in self.dimensions] + [m.name for m in self.measures]

    def visible_names(self, role: str | None) -> list[str]:
        """Names of the dimensions and measures ``role`` may see."""
        members: list[Dimension | Measure] = [*self.dimensions, *self.measures]
        return [m.name for m in members if m.visible_to(role)]

    def visible(self, name: str, role: str | None) -> bool:
        """Is ``name`` a member ``role`` may see?"""
        member = self.dimension(name) or self.measure(name)
        return member is not None and member.visible_to(role)

    def named_nodes(self) -> list[tuple[str, Loc]]:
        """Every named node of the cube (one namespace): (name, where declared)."""
        groups: tuple[tuple[Dimension | Measure | Segment | Hierarchy | PreAggregation, ...], ...]
        groups = (
            self.dimensions,
            self.measures,
            self.segments,
            self.hierarchies,
            self.pre_aggregations,
        )
        return [(n.name, n.loc) for group in groups for n in group]

    def time_dimensions(self) -> tuple[Dimension, ...]:
        return tuple(d for d in self.dimensions if d.type is DimensionType.TIME)

    @property
    def primary_key(self) -> tuple[Dimension, ...]:
        return tuple(d for d in self.dimensions if d.primary_key)


@dataclass(frozen=True)
class Model:
    cubes: tuple[Cube, ...] = field(default_factory=tuple)

    def cube(self, name: str) -> Cube | None:
        return next((c for c in self.cubes if c.name == name), None)

    def names(self) -> list[str]:
        return [c.name for c in self.cubes]
