"""GraphQL output types of ``cube``, generated from the semantic model at start-up.

``cube`` returns ``[CubeRow!]!``; a row has one field per cube (``sales: CubeSales``),
whose fields are the cube's measures (``Float`` with time-intelligence arguments), its
dimensions (``String``/``Float``/``Boolean``) and its time dimensions (an object with one
``String`` field per granularity), plus ``totals`` (the dimensions a subtotal row totals).

Every field reads its value by response key (alias), so one query may ask for the same
measure several times under different aliases and arguments.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, assert_never

import strawberry
from strawberry.types.field import StrawberryField

from semantic.model import Cube, Dimension, DimensionType, Granularity, Model


@strawberry.enum(description="Time intelligence: the value of the matching earlier bucket.")
class CubeCompare(enum.Enum):
    PRIOR_PERIOD = "PRIOR_PERIOD"
    PRIOR_YEAR = "PRIOR_YEAR"


@strawberry.enum(description="Time intelligence: running total within the period.")
class CubeToDate(enum.Enum):
    YEAR = "YEAR"
    QUARTER = "QUARTER"
    MONTH = "MONTH"


@strawberry.enum(description="Sort direction of a cube member (nulls last).")
class CubeOrder(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@dataclass
class RowPart:
    """What a cube/time field resolves to: the row's values and the key path so far."""

    values: dict[str, Any]
    prefix: str


@dataclass
class CubeRowValue:
    values: dict[str, Any]
    totals: list[str] = field(default_factory=list)


def key(root: RowPart, info: strawberry.Info) -> str:
    return f"{root.prefix}.{info.path.key}"


def measure_value(
    root: RowPart,
    info: strawberry.Info,
    compare: CubeCompare | None = None,
    to_date: CubeToDate | None = None,
    share_of_total: bool = False,
    rank: bool = False,
) -> float | None:
    value = root.values.get(key(root, info))
    return None if value is None else float(value)


def string_value(root: RowPart, info: strawberry.Info) -> str | None:
    value = root.values.get(key(root, info))
    return None if value is None else str(value)


def number_value(root: RowPart, info: strawberry.Info) -> float | None:
    value = root.values.get(key(root, info))
    return None if value is None else float(value)


def boolean_value(root: RowPart, info: strawberry.Info) -> bool | None:
    value = root.values.get(key(root, info))
    return None if value is None else bool(value)


def _field(resolver: Any, description: str, name: str) -> StrawberryField:
    made: StrawberryField = strawberry.field(
        resolver=resolver, description=description or None, name=name
    )
    return made


def _part_resolver(kind: type, nested: bool) -> Any:
    def resolve(root: Any, info: strawberry.Info) -> Any:
        if nested:
            return RowPart(root.values, key(root, info))
        return RowPart(root.values, str(info.path.key))

    resolve.__annotations__ = {"root": Any, "info": strawberry.Info, "return": kind | None}
    return resolve


def _dimension_field(cube: Cube, d: Dimension) -> tuple[str, StrawberryField]:
    text = d.title + (f": {d.description}" if d.description else "")
    match d.type:
        case DimensionType.STRING:
            return d.name, _field(string_value, text, d.name)
        case DimensionType.NUMBER:
            return d.name, _field(number_value, text, d.name)
        case DimensionType.BOOLEAN:
            return d.name, _field(boolean_value, text, d.name)
        case DimensionType.TIME:
            grans = {
                g.value: _field(string_value, f"ISO local time truncated to {g.value}", g.value)
                for g in Granularity
            }
            name = f"Cube{_cap(cube.name)}{_cap(d.name)}"
            kind = strawberry.type(
                type(name, (), grans), description=f"{cube.name}.{d.name} by granularity"
            )
            return d.name, _field(_part_resolver(kind, nested=True), text, d.name)
        case _:
            assert_never(d.type)


def _cap(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def cube_type(cube: Cube) -> type:
    fields: dict[str, Any] = {}
    for m in cube.measures:
        text = m.title + (f": {m.description}" if m.description else "")
        fields[m.name] = _field(measure_value, f"{text} [{m.type.value}, {m.format.value}]", m.name)
    for d in cube.dimensions:
        name, f = _dimension_field(cube, d)
        fields[name] = f
    kind: type = strawberry.type(
        type(f"Cube{_cap(cube.name)}", (), fields), description=cube.description or cube.title
    )
    return kind


def totals_value(root: CubeRowValue) -> list[str]:
    return root.totals


def row_type(model: Model) -> type:
    fields: dict[str, Any] = {
        c.name: _field(_part_resolver(cube_type(c), nested=False), c.title, c.name)
        for c in model.cubes
    }
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
