"""``cubeDrillThrough``: the fact rows behind one cell of a ``cube`` answer.

A cell is its dimension members (``{member: "products.category", value: "Books"}``, a time
bucket as ``{member: "sales.orderedAt.month", value: "2025-03-01T00:00:00"}``, ``value:
null`` for the empty member) plus the query's ``where`` and ``segments``. The drill is an
ordinary cube query on the same planner: the cell's members become filters (a time bucket
an ``inDateRange`` of the bucket in the query's time zone), the fact cube's primary key is
added to the dimensions, so each answer row is one fact row, and its ``rows`` are
``CubeRow``s selected like a ``cube``'s. ``totalCount`` is the cube's row count (its
``count`` measure) under the same filters, so it equals the cell's count, and the rows'
``sum`` measures add up to the cell's. Roles as ``cube`` (admin, analyst); customers never.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import strawberry
from graphql import FieldNode

from db.errors import BadUserInputError, ForbiddenError
from schema.context import Info
from schema.cube.extension import report, report_entry, status_of
from schema.cube.inputs import to_filters, to_segments
from schema.cube.queries import (
    ANALYSTS,
    MODEL,
    CubeRow,
    CubeSegment,
    CubeWhere,
    operation_reader,
)
from semantic.dates import EPSILON
from semantic.model import Cube, DimensionType, Granularity, MeasureType, Model
from semantic.query import Condition, CubeQuery, DimensionField, Filter, Junction, MeasureField, Op
from semantic.query import Member as Ref
from semantic.service import answer, execute, prepare


@strawberry.input(description="One member of a cube cell: a dimension and its value.")
class CubeCellMember:
    member: str = strawberry.field(
        description='cube.dimension ("products.category"); a time dimension with its '
        'granularity ("sales.orderedAt.month")'
    )
    value: str | None = strawberry.field(
        description="the row's value as the cube wrote it (a time bucket's ISO local start); "
        "null: the empty member"
    )


@strawberry.type(description="The fact rows behind one cube cell, a page at a time.")
class CubeDrillThrough:
    cube: str = strawberry.field(description="the fact cube whose rows these are")
    total_count: int = strawberry.field(
        description="rows in the cell (the cube's count measure under the same filters)"
    )
    rows: list[CubeRow] = strawberry.field(  # type: ignore[valid-type]
        description="one per fact row (the cube's primary key), selected as a cube's rows, "
        "ordered by the selected dimensions then the key"
    )


@dataclass(frozen=True)
class _Cell:
    cube: Cube
    count: str  # the cube's count measure
    filters: tuple[Filter, ...]


def drillable(model: Model) -> dict[str, str]:
    """Fact cubes one may drill through: with a primary key and a ``count`` measure of rows
    (its name)."""
    out: dict[str, str] = {}
    for c in model.cubes:
        count = next(
            (m.name for m in c.measures if m.type is MeasureType.COUNT and m.sql is None), None
        )
        if c.primary_key and count is not None:
            out[c.name] = count
    return out


def _bad(message: str, field: str, wanted: str, pool: list[str]) -> BadUserInputError:
    return BadUserInputError(
        message, field=field, closest=difflib.get_close_matches(wanted, pool, n=3)
    )


def cell_filters(model: Model, cube_name: str, members: list[Any], role: str | None) -> _Cell:
    counts = drillable(model)
    cube = model.cube(cube_name)
    if cube is None or cube_name not in counts:
        names = sorted(counts)
        raise _bad(
            f"cannot drill through {cube_name!r} (cubes with rows to list: {', '.join(names)})",
            "cube",
            cube_name,
            names,
        )
    pool = [f"{c.name}.{d.name}" for c in model.cubes for d in c.dimensions if d.visible_to(role)]
    filters: list[Filter] = []
    for i, m in enumerate(members):
        field = f"cell[{i}]"
        ref, _, grain = m.member.partition(".")
        name, _, grain = grain.partition(".")
        owner = model.cube(ref)
        dim = owner.dimension(name) if owner is not None else None
        if owner is None or dim is None or not dim.visible_to(role):
            raise _bad(f"{m.member!r} is not a dimension", field, m.member, pool)
        member = Ref(owner.name, dim.name)
        if m.value is None:
            filters.append(Condition(member, Op.SET, (False,)))
            continue
        if dim.type is not DimensionType.TIME:
            if grain:
                raise _bad(
                    f"{m.member!r}: only a time dimension has a granularity", field, m.member, pool
                )
            filters.append(Condition(member, Op.EQUALS, (_scalar(dim.type, m.value, field),)))
            continue
        try:
            gran = Granularity(grain)
        except ValueError:
            grains = ", ".join(g.value for g in Granularity)
            raise BadUserInputError(
                f"{m.member!r}: name the time bucket, {m.member.split('.')[0]}."
                f"{name}.<granularity> ({grains})",
                field=field,
            ) from None
        lo, hi = _bucket(gran, m.value, field)
        filters.append(
            Condition(member, Op.IN_DATE_RANGE, (lo.isoformat(), (hi - EPSILON).isoformat()))
        )
    return _Cell(cube, counts[cube_name], tuple(filters))


def _scalar(kind: DimensionType, value: str, field: str) -> str | float | bool:
    match kind:
        case DimensionType.NUMBER:
            try:
                return float(value)
            except ValueError:
                raise BadUserInputError(
                    f"{field}: {value!r} is not a number", field=field
                ) from None
        case DimensionType.BOOLEAN:
            if value.lower() not in ("true", "false"):
                raise BadUserInputError(f"{field}: {value!r} is not true or false", field=field)
            return value.lower() == "true"
        case _:
            return value


def _bucket(gran: Granularity, value: str, field: str) -> tuple[datetime, datetime]:
    """The local ``[start, end)`` of the bucket starting at ``value``."""
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        raise BadUserInputError(
            f"{field}: {value!r} is not an ISO local time (2025-03-01T00:00:00)", field=field
        ) from None
    if start.tzinfo is not None:
        raise BadUserInputError(f"{field}: a local time has no offset ({value!r})", field=field)
    midnight = start.time() == datetime.min.time()
    aligned = {
        Granularity.VALUE: True,
        Granularity.DAY: midnight,
        Granularity.WEEK: midnight and start.weekday() == 0,
        Granularity.MONTH: midnight and start.day == 1,
        Granularity.QUARTER: midnight and start.day == 1 and start.month % 3 == 1,
        Granularity.YEAR: midnight and start.day == 1 and start.month == 1,
    }[gran]
    if not aligned:
        raise BadUserInputError(
            f"{field}: {value!r} is not the start of a {gran.value}", field=field
        )
    try:
        match gran:
            case Granularity.VALUE:
                return start, start + EPSILON
            case Granularity.DAY:
                return start, start + timedelta(days=1)
            case Granularity.WEEK:
                return start, start + timedelta(days=7)
            case Granularity.MONTH | Granularity.QUARTER | Granularity.YEAR:
                months = {Granularity.MONTH: 1, Granularity.QUARTER: 3}.get(gran, 12)
                n = start.year * 12 + start.month - 1 + months
                return start, start.replace(year=n // 12, month=n % 12 + 1)
    except (OverflowError, ValueError):
        pass
    raise BadUserInputError(f"{field}: {value!r} is past 9999-12-31", field=field)


def _measure_filters(model: Model, filters: tuple[Filter, ...]) -> list[str]:
    out: list[str] = []
    for f in filters:
        if isinstance(f, Junction):
            out += _measure_filters(model, f.items)
            continue
        cube = model.cube(f.member.cube)
        if cube is not None and cube.measure(f.member.name) is not None:
            out.append(str(f.member))
    return out


async def resolve_drill_through(
    info: Info,
    cube: str,
    cell: list[CubeCellMember] | None = None,
    where: Any = None,
    segments: Any = None,
    timezone: str = "UTC",
    first: int = 20,
    offset: int = 0,
) -> CubeDrillThrough:
    role = info.context.role
    if role is not None and role not in ANALYSTS:
        raise ForbiddenError(
            f"role {role!r} may not query cubes", reason="role", role=role, field="cubeDrillThrough"
        )
    cap = info.context.limits.max_page_size
    if not 0 <= first <= cap:
        raise BadUserInputError(
            f"first must be between 0 and {cap} (got {first})", field="first", max=cap
        )
    if offset < 0:
        raise BadUserInputError("offset must not be negative", field="offset")
    target = cell_filters(MODEL, cube, list(cell or []), role)
    reader, nodes = operation_reader(info)
    args = reader.arguments("Query", nodes)
    filters = (*to_filters(MODEL, args.get("where"), role), *target.filters)
    measured = _measure_filters(MODEL, filters)
    if measured:
        raise BadUserInputError(
            f"a measure filter ({', '.join(measured)}) applies to a cell's aggregate, not to its "
            "rows: drill the cell without it",
            field="where",
        )
    rows_nodes = _rows_nodes(reader, nodes)
    measures, dims, shape = reader.rows(rows_nodes)  # checked even when no row is read
    base = CubeQuery(
        measures=(MeasureField("n", Ref(cube, target.count)),),
        filters=filters,
        segments=tuple(to_segments(MODEL, args.get("segments"))),
        timezone=timezone,
    )
    counted = await info.context.db.run(
        lambda conn: execute(conn, prepare(MODEL, base, role), model=MODEL, role=role)
    )
    total = int(counted.rows[0]["n"]) if counted.rows else 0
    drill = CubeDrillThrough(cube=cube, total_count=total, rows=[])
    if not rows_nodes or first == 0 or total == 0:
        return drill
    keys = tuple(
        DimensionField(f"__key{i}", Ref(cube, d.name))
        for i, d in enumerate(target.cube.primary_key)
    )
    query = prepare(
        MODEL,
        CubeQuery(
            measures=tuple(measures),
            dimensions=(*dims, *keys),
            filters=base.filters,
            segments=base.segments,
            limit=first,
            offset=offset,
            timezone=timezone,
        ),
        role,
    )
    got, status = await info.context.db.run(
        lambda conn: (
            answer(conn, query, shape, model=MODEL, role=role, prepared=True),
            status_of(conn),
        )
    )
    report(report_entry(str(info.path.key), got, status))
    drill.rows = json.loads(got.json)
    return drill


def _rows_nodes(reader: Any, nodes: list[FieldNode]) -> list[FieldNode]:
    """The ``rows`` selections under the drill (one response key: two differently
    selected ``rows`` would need two queries)."""
    found = {
        key: parts
        for key, parts in reader.collect([n.selection_set for n in nodes]).items()
        if parts[0].name.value == "rows"
    }
    if len(found) > 1:
        raise BadUserInputError("select rows once per drill (no aliases)", field="rows")
    return [p for parts in found.values() for p in parts]


resolve_drill_through.__annotations__ |= {
    "where": CubeWhere | None,
    "segments": list[CubeSegment] | None,  # type: ignore[valid-type]
}


@strawberry.type
class CubeDrillQueries:
    cube_drill_through = strawberry.field(
        resolver=resolve_drill_through,
        metadata={"roles": ANALYSTS},
        description="The fact rows behind one cell of a cube answer: pass the cell's members "
        "and the cube query's where/segments/timezone; rows are selected like cube rows "
        "(one per fact row), totalCount equals the cell's count. first: at most the page cap.",
    )
