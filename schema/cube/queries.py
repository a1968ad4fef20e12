"""Root fields ``cube`` and ``cubeMeta``.

``cube`` reads its selection (cubes, members, aliases, time granularities and the
time-intelligence arguments of measure fields) into a ``semantic.query.CubeQuery``, runs it
on the request's read transaction and returns one ``CubeRow`` per result row.
"""

from __future__ import annotations

import enum
from typing import Any

import strawberry
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from db.errors import BadUserInputError
from schema.context import Info
from schema.cube.extension import report
from schema.cube.inputs import (
    order_type,
    segment_enum,
    to_filters,
    to_order,
    to_segments,
    where_type,
)
from schema.cube.meta import CubeMeta, cube_meta_of
from schema.cube.types import CubeRowValue, row_type
from semantic.model import DimensionType, Granularity, Model
from semantic.query import (
    DEFAULT_LIMIT,
    Compare,
    CubeQuery,
    DimensionField,
    MeasureField,
    Member,
    ToDate,
)
from semantic.service import CubeResult, execute
from semantic.validate import default_model

MODEL = default_model()
ANALYSTS = frozenset({"admin", "analyst"})  # who may query cubes (api/access.py)
CubeRow = row_type(MODEL)
CubeWhere = where_type(MODEL)
CubeOrderBy = order_type(MODEL)
CubeSegment = segment_enum(MODEL)


def _fields(selections: list[Selection]) -> list[SelectedField]:
    out: list[SelectedField] = []
    for s in selections:
        if isinstance(s, SelectedField):
            if not s.name.startswith("__"):
                out.append(s)
        elif isinstance(s, FragmentSpread | InlineFragment):
            out.extend(_fields(s.selections))
    return out


def _enum(value: Any) -> str | None:
    if value is None:
        return None
    return str(value.value if isinstance(value, enum.Enum) else value)


def read_selection(
    model: Model, root: SelectedField
) -> tuple[list[MeasureField], list[DimensionField]]:
    measures: list[MeasureField] = []
    dims: list[DimensionField] = []
    for part in _fields(root.selections):
        if part.name == "totals":
            continue
        cube = model.cube(part.name)
        assert cube is not None  # GraphQL validation only lets cube names through
        prefix = part.alias or part.name
        for f in _fields(part.selections):
            alias = f"{prefix}.{f.alias or f.name}"
            member = Member(cube.name, f.name)
            if cube.measure(f.name) is not None:
                a = f.arguments
                compare, to_date = _enum(a.get("compare")), _enum(a.get("toDate"))
                measures.append(
                    MeasureField(
                        alias,
                        member,
                        Compare(compare) if compare else None,
                        ToDate(to_date) if to_date else None,
                        bool(a.get("shareOfTotal")),
                        bool(a.get("rank")),
                    )
                )
                continue
            d = cube.dimension(f.name)
            assert d is not None
            if d.type is DimensionType.TIME:
                for g in _fields(f.selections):
                    dims.append(
                        DimensionField(f"{alias}.{g.alias or g.name}", member, Granularity(g.name))
                    )
            else:
                dims.append(DimensionField(alias, member))
    return measures, dims


def _report(path: str, result: CubeResult) -> dict[str, Any]:
    return {
        "path": path,
        "sql": result.sql,
        "params": result.params,
        "rollups": list(result.rollups),
        "cached": result.cached,
        "warehouseVersion": result.version,
        "freshness": result.freshness.isoformat() if result.freshness else None,
        "ms": round(result.seconds * 1000, 3),
    }


async def resolve_cube(
    root: Any,
    info: Info,
    where: Any = None,
    order_by: Any = None,
    segments: Any = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    timezone: str = "UTC",
    subtotals: bool = False,
) -> list[Any]:
    selected = info.selected_fields[0]
    assert isinstance(selected, SelectedField)
    measures, dims = read_selection(MODEL, selected)
    if not measures and not dims:
        raise BadUserInputError(
            "select at least one measure or dimension under a cube", field="cube"
        )
    query = CubeQuery(
        measures=tuple(measures),
        dimensions=tuple(dims),
        filters=tuple(to_filters(where)) if where is not None else (),
        segments=tuple(to_segments(segments)),
        order=tuple(to_order(order_by)),
        limit=limit,
        offset=offset,
        timezone=timezone,
        subtotals=subtotals,
    )
    result = await info.context.db.run(lambda conn: execute(conn, query, model=MODEL))
    report(_report(str(info.path.key), result))
    return [CubeRowValue(dict(r), list(t)) for r, t in zip(result.rows, result.totals, strict=True)]


resolve_cube.__annotations__ |= {
    "where": CubeWhere | None,
    "order_by": list[CubeOrderBy] | None,  # type: ignore[valid-type]
    "segments": list[CubeSegment] | None,  # type: ignore[valid-type]
    "return": list[CubeRow],  # type: ignore[valid-type]
}


def resolve_cube_meta() -> list[CubeMeta]:
    return cube_meta_of(MODEL)


@strawberry.type
class CubeQueries:
    cube = strawberry.field(
        resolver=resolve_cube,
        metadata={"roles": ANALYSTS},
        description="Cube query over the warehouse (dw.*): one row per combination of the "
        "selected dimensions; filters on unselected members still apply. The SQL, rollup, "
        "freshness and time taken are in extensions.cube.",
    )
    cube_meta = strawberry.field(
        resolver=resolve_cube_meta,
        metadata={"roles": ANALYSTS},
        description="The semantic model: cubes, members, types, formats, hierarchies, "
        "segments, joins and rollups.",
    )
