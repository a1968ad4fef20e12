"""GraphQL output types of ``cube``, generated from the semantic model at start-up.

``cube`` returns ``[CubeRow!]!``; a row has one field per cube (``sales: CubeSales``),
whose fields are the cube's measures (``Int`` for counts and integer sums, else ``Float``,
with time-intelligence arguments), its dimensions (``String``/``Float``/``Boolean``) and
its time dimensions (an object with one ``String`` field per granularity), plus ``totals``
(the dimensions a subtotal row totals).

PostgreSQL writes each row as the JSON object of the field's selection (keys are the
response keys, aliases included), so every resolver here reads its value by response key;
a query of ``cube`` fields alone skips them altogether (``schema.cube.fast``).
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, assert_never

import strawberry
from strawberry.types.field import StrawberryField

from semantic.model import Cube, Dimension, DimensionType, Granularity, Measure, Model

Row = dict[str, Any]


@strawberry.enum(description="Time intelligence: the value of the matching earlier bucket.")
class CubeCompare(enum.Enum):
    PRIOR_PERIOD = "PRIOR_PERIOD"
    PRIOR_YEAR = "PRIOR_YEAR"


@strawberry.enum(
    description="What a compare field returns: the earlier value (VALUE), the value minus it "
    "(DIFFERENCE), or that difference over the earlier value's magnitude (PERCENT_CHANGE, a "
    "fraction: 0.12 is +12%; null when the earlier value is 0 or missing)."
)
class CubeChange(enum.Enum):
    VALUE = "VALUE"
    DIFFERENCE = "DIFFERENCE"
    PERCENT_CHANGE = "PERCENT_CHANGE"


@strawberry.enum(
    description="What a compare field of an integer measure returns: the earlier value or "
    "the difference (a percent change is a fraction: ask it of a Float measure)."
)
class CubeIntegerChange(enum.Enum):
    VALUE = "VALUE"
    DIFFERENCE = "DIFFERENCE"


@strawberry.enum(description="Time intelligence: running total within the period.")
class CubeToDate(enum.Enum):
    YEAR = "YEAR"
    QUARTER = "QUARTER"
    MONTH = "MONTH"


@strawberry.enum(description="A unit of time for rolling windows.")
class CubeTimeUnit(enum.Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    QUARTER = "QUARTER"
    YEAR = "YEAR"


@strawberry.input(
    description="A moving window: the sum over the last N units up to and including the "
    "row's bucket (last), or over N units from it on (next). Set exactly one of last, next. "
    "Rows before (after) the filtered range are read as the window needs them."
)
class CubeRolling:
    last: int | None = None
    next: int | None = None
    unit: CubeTimeUnit


@strawberry.enum(description="Sort direction of a cube member (nulls last).")
class CubeOrder(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


def float_measure(
    root: Row,
    info: strawberry.Info,
    compare: CubeCompare | None = None,
    as_: Annotated[CubeChange, strawberry.argument(name="as")] = CubeChange.VALUE,
    to_date: CubeToDate | None = None,
    rolling: CubeRolling | None = None,
    share_of_total: bool = False,
    rank: bool = False,
) -> float | None:
    return root.get(str(info.path.key))


def int_measure(
    root: Row,
    info: strawberry.Info,
    compare: CubeCompare | None = None,
    as_: Annotated[CubeIntegerChange, strawberry.argument(name="as")] = CubeIntegerChange.VALUE,
    to_date: CubeToDate | None = None,
    rolling: CubeRolling | None = None,
    rank: bool = False,
) -> int | None:
    return root.get(str(info.path.key))


def _field(resolver: Any, description: str, name: str) -> StrawberryField:
    made: StrawberryField = strawberry.field(
        resolver=resolver, description=description or None, name=name
    )
    return made


def _part_resolver(kind: type) -> Any:
    def resolve(root: Row, info: strawberry.Info) -> Any:
        return root.get(str(info.path.key))

    resolve.__annotations__ = {"root": Row, "info": strawberry.Info, "return": kind | None}
    return resolve


def type_name(cube: Cube, member: str | None = None) -> str:
    """``CubeSales``; with a time dimension ``CubeSalesOrderedAt``."""
    return f"Cube{_cap(cube.name)}" + (_cap(member) if member else "")


def _measure_field(m: Measure) -> StrawberryField:
    text = m.title + (f": {m.description}" if m.description else "")
    text += f" [{m.type.value}, {m.format.value}]"
    return _field(int_measure if m.integer else float_measure, text, m.name)


def _dimension_field(cube: Cube, d: Dimension) -> StrawberryField:
    text = d.title + (f": {d.description}" if d.description else "")
    match d.type:
        case DimensionType.STRING:
            return _field(_part_resolver(str), text, d.name)
        case DimensionType.NUMBER:
            return _field(_part_resolver(float), text, d.name)
        case DimensionType.BOOLEAN:
            return _field(_part_resolver(bool), text, d.name)
        case DimensionType.TIME:
            iso = "ISO local time truncated to"
            grans = {
                g.value: _field(_part_resolver(str), f"{iso} {g.value}", g.value)
                for g in Granularity
            }
            kind = strawberry.type(
                type(type_name(cube, d.name), (), grans),
                description=f"{cube.name}.{d.name} by granularity",
            )
            return _field(_part_resolver(kind), text, d.name)
        case _:
            assert_never(d.type)


def _cap(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def cube_type(cube: Cube) -> type:
    fields: dict[str, Any] = {m.name: _measure_field(m) for m in cube.measures}
    fields |= {d.name: _dimension_field(cube, d) for d in cube.dimensions}
    kind: type = strawberry.type(
        type(type_name(cube), (), fields), description=cube.description or cube.title
    )
    return kind


def drill_orders(
    root: Row,
    info: strawberry.Info,
    filter: Annotated["OrderFilter", strawberry.lazy("schema.types")] | None = None,  # type: ignore[name-defined]  # noqa: F821, UP037
    order_by: list[Annotated["OrderOrderBy", strawberry.lazy("schema.types")]] | None = None,  # type: ignore[name-defined]  # noqa: F821, UP037
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Annotated["OrderConnection", strawberry.lazy("schema.types")]:  # type: ignore[name-defined]  # noqa: F821, UP037
    return root.get(str(info.path.key))


@strawberry.type(
    description="The operational rows behind one cube row's cell (its dimension values, the "
    "query's where and segments), read like the rest of the API (schema.cube.celldrill)."
)
class CubeCellDrill:
    orders: Annotated["OrderConnection", strawberry.lazy("schema.types")] = strawberry.field(  # type: ignore[name-defined]  # noqa: F821, UP037
        resolver=drill_orders,
        description="The orders behind the cell (of the measures' fact cube, through its "
        "orderId): the orders connection with its filter, orderBy and page caps, under the "
        "caller's row-level security; totalCount is the cell's orderCount.",
    )


def totals_value(root: Row, info: strawberry.Info) -> list[str]:
    return root.get(str(info.path.key)) or []


def row_type(model: Model) -> type:
    fields: dict[str, Any] = {
        c.name: _field(_part_resolver(cube_type(c)), c.title, c.name) for c in model.cubes
    }
    fields["drill"] = _field(
        _part_resolver(CubeCellDrill),
        "The orders behind this row's cell: drill { orders(first: 20) { totalCount edges "
        "{ node { id } } } }. Costs the cube's limit times the page size.",
        "drill",
    )
    fields["totals"] = _field(
        totals_value,
        "Subtotal rows: the dimensions this row totals (empty for a detail row).",
        "totals",
    )
    kind: type = strawberry.type(
        type("CubeRow", (), fields),
        description="One row per combination of the selected dimensions.",
    )
    return kind
