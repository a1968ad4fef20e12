"""Root fields ``cube``, ``cubeMeta`` and ``cubeDrillDown``.

``cube`` reads its selection (``schema.cube.selection``) into a ``semantic.query.CubeQuery``
and the shape of its rows, runs it on the request's read transaction and returns the rows
PostgreSQL wrote as JSON. An operation of ``cube`` fields alone never gets here: the
executor (``schema.execute``) answers it without per-field execution (``schema.cube.fast``);
this resolver serves the others (a ``cube`` beside other root fields, or one whose rows
select ``drill``: the operational orders of each row's cell, ``schema.cube.celldrill``).
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import strawberry
from graphql import FieldNode
from sqlalchemy.engine import Connection

from db.errors import BadUserInputError, ForbiddenError, shown
from etl.status import WarehouseStatus
from schema.context import Info
from schema.cube.extension import report, report_entry, status_of
from schema.cube.inputs import order_type, segment_enum, to_filters, where_type
from schema.cube.meta import CubeMeta, cube_meta_of
from schema.cube.selection import Reader
from schema.cube.types import row_type
from semantic.model import Model
from semantic.query import DEFAULT_LIMIT, MAX_LIMIT, Condition, CubeQuery, DimensionField, Op
from semantic.query import Member as Ref
from semantic.service import CubeAnswer, answer, checked, execute, prepare
from semantic.validate import default_model

MODEL = default_model()
ANALYSTS = frozenset({"admin", "analyst"})  # who may query cubes (api/access.py)
CubeRow = row_type(MODEL)
CubeWhere = where_type(MODEL)
CubeOrderBy = order_type(MODEL)
CubeSegment = segment_enum(MODEL)


def operation_reader(info: Info) -> tuple[Reader, list[FieldNode]]:
    """A reader of the running operation (the executor's ``ctx.operation``) and the nodes
    of this root field, on the whole schema (the pipeline validated the operation against
    the role's part of it: schema.views)."""
    ctx = info.context
    op = ctx.operation
    reader = Reader(ctx.reads.gschema, op.document, op.operation, op.coerced, MODEL)
    return reader, reader.roots()[str(info.path.key)]


def answer_and_status(
    conn: Connection, query: CubeQuery, shape: Any, role: str | None
) -> tuple[CubeAnswer, WarehouseStatus]:
    """A cube answer and the warehouse's freshness of its version, in one transaction."""
    got = answer(conn, query, shape, model=MODEL, role=role, prepared=True)
    return got, status_of(conn, got.version)


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
    role = info.context.role
    reader, nodes = operation_reader(info)
    request = reader.request(nodes)
    query = prepare(MODEL, request.query, role)
    got, status = await info.context.db.run(
        lambda conn: answer_and_status(conn, query, request.shape, role)
    )
    report(report_entry(str(info.path.key), got, status))
    rows: list[Any] = json.loads(got.json)
    if reader.drills:
        from schema.cube.celldrill import drill_rows  # it reads through schema.execute

        await drill_rows(info, reader, query, rows)
    return rows


resolve_cube.__annotations__ |= {
    "where": CubeWhere | None,
    "order_by": list[CubeOrderBy] | None,  # type: ignore[valid-type]
    "segments": list[CubeSegment] | None,  # type: ignore[valid-type]
    "return": list[CubeRow],  # type: ignore[valid-type]
}


def resolve_cube_meta(info: Info) -> list[CubeMeta]:
    return cube_meta_of(MODEL, info.context.role)


@strawberry.type(description="The next level of a hierarchy under one value of a level.")
class CubeDrill:
    hierarchy: str = strawberry.field(description="cube.hierarchy, e.g. customers.geography")
    member: str = strawberry.field(description="the level drilled from, e.g. customers.country")
    value: str
    next: str | None = strawberry.field(
        description="the next level (e.g. customers.region); null at the deepest level"
    )
    children: list[str | None] = strawberry.field(
        description="the next level's values under value (within where), sorted"
    )


async def resolve_drill_down(
    info: Info, member: str, value: str, where: Any = None, timezone: str = "UTC"
) -> CubeDrill:
    role = info.context.role
    if role is not None and role not in ANALYSTS:
        raise ForbiddenError(
            f"role {role} may not query cubes", reason="role", role=role, field="cubeDrillDown"
        )
    hierarchy, level, nxt = _level(MODEL, member, role)
    drill = CubeDrill(hierarchy=hierarchy, member=member, value=value, next=nxt, children=[])
    reader, nodes = operation_reader(info)
    args = reader.arguments("Query", nodes)
    # the deepest level has no children to read; its question (the level standing for the
    # child) is checked all the same: where and timezone are refused as one level up
    child = DimensionField("child", Ref.parse(nxt or member, ""))
    query = CubeQuery(
        dimensions=(child,),
        filters=(
            Condition(level, Op.EQUALS, (value,)),
            *to_filters(args.get("where")),
        ),
        limit=MAX_LIMIT,
        timezone=timezone,
    )
    if nxt is None:
        await info.context.db.run(lambda conn: checked(conn, query, MODEL, role))
        return drill
    got = await info.context.db.run(lambda conn: execute(conn, query, model=MODEL, role=role))
    drill.children = [r["child"] for r in got.rows]
    return drill


resolve_drill_down.__annotations__ |= {"where": CubeWhere | None}


def _level(model: Model, member: str, role: str | None) -> tuple[str, Ref, str | None]:
    """(cube.hierarchy, the level, the next visible level or None) of ``member``."""
    ref = Ref.parse(member, "")
    cube = model.cube(ref.cube)
    levels = [
        f"{c.name}.{level}"
        for c in model.cubes
        for h in c.hierarchies
        for level in h.levels
        if c.visible(level, role)
    ]
    if cube is not None and cube.visible(ref.name, role):
        for h in cube.hierarchies:
            visible = [x for x in h.levels if cube.visible(x, role)]
            if ref.name in visible:
                i = visible.index(ref.name)
                nxt = f"{cube.name}.{visible[i + 1]}" if i + 1 < len(visible) else None
                return f"{cube.name}.{h.name}", ref, nxt
    closest = difflib.get_close_matches(member, levels, n=3)
    raise BadUserInputError(
        f"{shown(member)} is not a level of a hierarchy (levels: {', '.join(levels)})",
        field="member",
        closest=closest,
    )


@strawberry.type
class CubeQueries:
    cube = strawberry.field(
        resolver=resolve_cube,
        metadata={"roles": ANALYSTS},
        description="Cube query over the warehouse (dw.*): one row per combination of the "
        "selected dimensions; filters on unselected members still apply. The SQL, rollups, "
        "conformed-time re-targetings, whether the limit cut the answer (truncated) and the "
        "time taken are in extensions.cube.",
    )
    cube_meta = strawberry.field(
        resolver=resolve_cube_meta,
        metadata={"roles": ANALYSTS},
        description="The semantic model as the caller's role sees it: cubes, members, types, "
        "formats, hierarchies, segments, joins and rollups.",
    )
    cube_drill_down = strawberry.field(
        resolver=resolve_drill_down,
        metadata={"roles": ANALYSTS},
        description="Drill down a hierarchy (cubeMeta.hierarchies): the next level under one "
        'value of a level, e.g. member: "customers.country", value: "Germany" gives '
        "customers.region and the regions of Germany. where narrows the children.",
    )
