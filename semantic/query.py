"""The typed cube query: what a client asks for, independent of GraphQL.

``semantic.checks.check_query`` validates one against the model; ``semantic.planner``
turns it into SQL. ``cache_key`` is its normalized form (filters of an AND in a stable
order, no field aliases), which the result cache keys on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


class Change(Enum):
    """What a ``compare`` field returns: the earlier value, or how the value moved since."""

    VALUE = "VALUE"
    DIFFERENCE = "DIFFERENCE"  # value - earlier
    PERCENT_CHANGE = "PERCENT_CHANGE"  # (value - earlier) / |earlier|, a fraction


class ToDate(Enum):
    YEAR = "YEAR"
    QUARTER = "QUARTER"
    MONTH = "MONTH"


MAX_WINDOW = 1_000


@dataclass(frozen=True)
class Rolling:
    """A moving window of ``count`` ``unit``s ending with the row's bucket (trailing) or
    starting with it (``leading``)."""

    count: int
    unit: Granularity
    leading: bool = False

    def label(self) -> str:
        return f"{'next' if self.leading else 'last'} {self.count} {self.unit.value}"


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
    change: Change = Change.VALUE  # with compare only
    rolling: Rolling | None = None

    @property
    def modifiers(self) -> list[str]:
        """The time-intelligence arguments set on the field (at most one is allowed)."""
        named = {
            "compare": self.compare is not None,
            "toDate": self.to_date is not None,
            "rolling": self.rolling is not None,
            "shareOfTotal": self.share_of_total,
            "rank": self.rank,
        }
        return [k for k, on in named.items() if on]

    @property
    def windowed(self) -> bool:
        """A running total or moving window: reads rows outside the filtered time range."""
        return self.to_date is not None or self.rolling is not None


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
        """The query without its field aliases (they only name the answer's keys)."""
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
        window = node.rolling and node.rolling.label()
        flags = [node.share_of_total, node.rank, node.change.value, window]
        return [str(node.member), *mods, *flags]
    if isinstance(node, DimensionField):
        return node.label()
    if isinstance(node, Condition):
        return [str(node.member), node.op.value, list(node.values)]
    if isinstance(node, Junction):
        items = [_normal(i) for i in node.items]
        return [node.kind, sorted(items, key=json.dumps) if node.kind == "and" else items]
    raise TypeError(node)
