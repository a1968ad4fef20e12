"""The typed cube query: what a client asks for, independent of GraphQL.

``semantic.checks.check_query`` validates one against the model; ``semantic.planner``
turns it into SQL. ``cache_key`` is its normalized form (filters of an AND in a stable
order), which the result cache keys on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Literal

from semantic.model import Granularity

MAX_LIMIT = 50_000
DEFAULT_LIMIT = 10_000

Value = str | int | float | bool


class Op(Enum):
    EQUALS = "equals"
    NOT_EQUALS = "notEquals"
    IN = "in"
    NOT_IN = "notIn"
    CONTAINS = "contains"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    SET = "set"
    IN_DATE_RANGE = "inDateRange"
    NOT_IN_DATE_RANGE = "notInDateRange"
    BEFORE_DATE = "beforeDate"
    AFTER_DATE = "afterDate"


class Compare(Enum):
    PRIOR_PERIOD = "PRIOR_PERIOD"
    PRIOR_YEAR = "PRIOR_YEAR"


class ToDate(Enum):
    YEAR = "YEAR"
    QUARTER = "QUARTER"
    MONTH = "MONTH"


@dataclass(frozen=True, order=True)
class Member:
    cube: str
    name: str

    def __str__(self) -> str:
        return f"{self.cube}.{self.name}"

    @classmethod
    def parse(cls, ref: str, default_cube: str) -> Member:
        cube, _, name = ref.rpartition(".")
        return cls(cube or default_cube, name)


@dataclass(frozen=True)
class MeasureField:
    alias: str
    member: Member
    compare: Compare | None = None
    to_date: ToDate | None = None
    share_of_total: bool = False
    rank: bool = False

    @property
    def modified(self) -> bool:
        return bool(self.compare or self.to_date or self.share_of_total or self.rank)


@dataclass(frozen=True)
class DimensionField:
    alias: str
    member: Member
    granularity: Granularity | None = None  # time dimensions only

    def label(self) -> str:
        g = f".{self.granularity.value}" if self.granularity else ""
        return f"{self.member}{g}"


@dataclass(frozen=True)
class Condition:
    member: Member
    op: Op
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Junction:
    kind: Literal["and", "or"]
    items: tuple[Filter, ...]


Filter = Condition | Junction


@dataclass(frozen=True)
class OrderItem:
    member: Member
    descending: bool = False


@dataclass(frozen=True)
class CubeQuery:
    measures: tuple[MeasureField, ...] = ()
    dimensions: tuple[DimensionField, ...] = ()
    filters: tuple[Filter, ...] = ()  # ANDed
    segments: tuple[Member, ...] = ()
    order: tuple[OrderItem, ...] = ()
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    timezone: str = "UTC"
    subtotals: bool = False

    def cache_key(self) -> str:
        return json.dumps(_normal(self), sort_keys=True, separators=(",", ":"))


def _normal(node: object) -> object:
    if isinstance(node, CubeQuery):
        return {
            "m": [_normal(m) for m in node.measures],
            "d": [_normal(d) for d in node.dimensions],
            "f": sorted((_normal(f) for f in node.filters), key=json.dumps),
            "s": sorted(str(s) for s in node.segments),
            "o": [[str(o.member), o.descending] for o in node.order],
            "p": [node.limit, node.offset, node.timezone, node.subtotals],
        }
    if isinstance(node, MeasureField):
        mods = [node.compare and node.compare.value, node.to_date and node.to_date.value]
        return [node.alias, str(node.member), *mods, node.share_of_total, node.rank]
    if isinstance(node, DimensionField):
        return [node.alias, node.label()]
    if isinstance(node, Condition):
        return [str(node.member), node.op.value, list(node.values)]
    if isinstance(node, Junction):
        items = [_normal(i) for i in node.items]
        return [node.kind, sorted(items, key=json.dumps) if node.kind == "and" else items]
    raise TypeError(node)


# ---------------------------------------------------------------------------------------
# dates: a filter value is a local date (a whole day) or a local date-time (an instant)
# ---------------------------------------------------------------------------------------
EPSILON = timedelta(microseconds=1)


def parse_when(text: Value) -> tuple[datetime, datetime] | None:
    """``[start, end)`` in local time of a date (its day) or a date-time (that instant)."""
    if not isinstance(text, str):
        return None
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            start = datetime(d.year, d.month, d.day)
            return start, start + timedelta(days=1)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        return None
    return moment, moment + EPSILON


def time_bounds(cond: Condition) -> tuple[datetime | None, datetime | None]:
    """The local ``[lo, hi)`` a time condition selects (``notInDateRange``: its complement).

    Call only on a checked condition."""
    spans = [parse_when(v) for v in cond.values]
    assert all(s is not None for s in spans)
    first, last = spans[0], spans[-1]
    assert first is not None and last is not None
    match cond.op:
        case Op.IN_DATE_RANGE | Op.NOT_IN_DATE_RANGE:
            return first[0], last[1]
        case Op.BEFORE_DATE:
            return None, first[0]
        case Op.AFTER_DATE:
            return first[1], None
        case _:
            raise ValueError(cond.op)
