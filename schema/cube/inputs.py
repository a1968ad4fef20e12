"""GraphQL inputs of ``cube``: ``where`` (per-cube member filters, nested ``AND``/``OR``),
``orderBy`` and ``segments``, generated from the model; and their translation into the
semantic query's filters and order."""

from __future__ import annotations

import enum
from typing import Any, assert_never

import strawberry

from db.errors import BadUserInputError
from schema.cube.types import CubeOrder, _cap
from semantic.model import Cube, DimensionType, Model
from semantic.query import Condition, Filter, Junction, Member, Op, OrderItem


@strawberry.input(description="Filter on a string dimension.")
class CubeStringFilter:
    equals: str | None = None
    not_equals: str | None = None
    in_: list[str] | None = strawberry.field(name="in", default=None)
    not_in: list[str] | None = None
    contains: list[str] | None = strawberry.field(
        default=None, description="Case-insensitive substring; several values: any of them."
    )
    set: bool | None = strawberry.field(default=None, description="true: not null; false: null")


@strawberry.input(description="Filter on a number dimension.")
class CubeNumberFilter:
    equals: float | None = None
    not_equals: float | None = None
    in_: list[float] | None = strawberry.field(name="in", default=None)
    not_in: list[float] | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    set: bool | None = None


@strawberry.input(description="Filter on a boolean dimension.")
class CubeBooleanFilter:
    equals: bool | None = None
    not_equals: bool | None = None
    set: bool | None = None


@strawberry.input(
    description="Filter on a time dimension, in the query's timezone. Values are local dates "
    "(YYYY-MM-DD: the whole day) or local date-times (YYYY-MM-DDTHH:MM:SS)."
)
class CubeTimeFilter:
    in_date_range: list[str] | None = strawberry.field(
        default=None, description="[from, to], both inclusive"
    )
    not_in_date_range: list[str] | None = None
    before_date: str | None = strawberry.field(default=None, description="strictly before")
    after_date: str | None = strawberry.field(default=None, description="strictly after")
    set: bool | None = None


@strawberry.input(description="Filter on a measure: applies to the aggregated value.")
class CubeMeasureFilter:
    equals: float | None = None
    not_equals: float | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    set: bool | None = None


def _filter_type(kind: DimensionType) -> type:
    match kind:
        case DimensionType.STRING:
            return CubeStringFilter
        case DimensionType.NUMBER:
            return CubeNumberFilter
        case DimensionType.BOOLEAN:
            return CubeBooleanFilter
        case DimensionType.TIME:
            return CubeTimeFilter
        case _:
            assert_never(kind)


def _input(name: str, annotations: dict[str, Any], description: str, **fields: Any) -> type:
    """An input type of optional ``annotations`` (``fields``: those declared otherwise)."""
    ns: dict[str, Any] = {"__annotations__": annotations}
    for attr in annotations:
        ns[attr] = fields.get(attr) or strawberry.field(name=attr, default=None)
    kind: type = strawberry.input(type(name, (), ns), description=description)
    return kind


def where_name(cube: Cube) -> str:
    return f"Cube{_cap(cube.name)}Where"


def order_name(cube: Cube) -> str:
    return f"Cube{_cap(cube.name)}OrderBy"


def cube_where(cube: Cube) -> type:
    name = where_name(cube)
    ann: dict[str, Any] = {d.name: _filter_type(d.type) | None for d in cube.dimensions}
    ann |= {m.name: CubeMeasureFilter | None for m in cube.measures}
    return _input(name, ann, f"Filters on {cube.name} members (all must hold).")


def where_type(model: Model) -> type:
    ann: dict[str, Any] = {c.name: cube_where(c) | None for c in model.cubes}
    # a self-reference: resolved against this module's globals when the schema is built
    ann |= {"AND": "list[CubeWhere] | None", "OR": "list[CubeWhere] | None"}
    kind = _input(
        "CubeWhere",
        ann,
        "Member filters by cube; nest AND/OR freely.",
        AND=strawberry.field(name="AND", default=None, description="all of these hold"),
        OR=strawberry.field(name="OR", default=None, description="any of these holds"),
    )
    globals()["CubeWhere"] = kind
    return kind


def order_type(model: Model) -> type:
    ann: dict[str, Any] = {}
    for c in model.cubes:
        members = {n: CubeOrder | None for n in c.member_names()}
        ann[c.name] = _input(order_name(c), members, f"Order by {c.name} members.") | None
    return _input("CubeOrderBy", ann, "Order: one member per entry (entries apply in order).")


def segment_enum(model: Model) -> type[enum.Enum]:
    values = {f"{c.name}_{s.name}": f"{c.name}.{s.name}" for c in model.cubes for s in c.segments}
    made = enum.Enum("CubeSegment", values)  # type: ignore[misc]
    kind: type[enum.Enum] = strawberry.enum(made, description="Named filters declared by cubes.")
    return kind


# ---------------------------------------------------------------------------------------
# translation of the coerced arguments (dicts keyed by GraphQL names, enum values as names:
# graphql-core's coercion on the schema built from the SDL, schema.app.graphql_schema)
# ---------------------------------------------------------------------------------------
def _set(values: dict[str, Any] | None) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in (values or {}).items() if v is not None]


def to_filters(where: dict[str, Any] | None) -> list[Filter]:
    """A coerced ``CubeWhere`` → filters (ANDed). Its members are the caller's to name:
    validation refused the others (schema.views), as the semantic layer would."""
    out: list[Filter] = []
    for attr, value in _set(where):
        if attr in ("AND", "OR"):
            items = tuple(Junction("and", tuple(to_filters(w))) for w in value)
            out.append(Junction(attr.lower(), items))  # type: ignore[arg-type]
            continue
        for member, flt in _set(value):
            ref = Member(attr, member)
            for op_name, v in _set(flt):
                values = tuple(v) if isinstance(v, list) else (v,)
                out.append(Condition(ref, Op(op_name), values))  # Op's values are the fields' names
    return out


def to_order(order_by: list[Any] | None) -> list[OrderItem]:
    out: list[OrderItem] = []
    for entry in order_by or []:
        named = [
            OrderItem(Member(c, m), d == CubeOrder.DESC.name)
            for c, members in _set(entry)
            for m, d in _set(members)
        ]
        if len(named) != 1:  # an input object's keys have no order: one member per item
            raise BadUserInputError(
                "each orderBy item must name exactly one member, in the order wanted:"
                " [{sales: {revenue: DESC}}, {sales: {channel: ASC}}]",
                field="orderBy",
            )
        out += named
    return out


def to_segments(model: Model, segments: list[str] | None) -> list[Member]:
    """``CubeSegment`` names (``<cube>_<segment>``) → members."""
    named = {f"{c.name}_{s.name}": Member(c.name, s.name) for c in model.cubes for s in c.segments}
    return [named[s] for s in segments or []]
