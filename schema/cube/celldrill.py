"""``drill`` of a cube row: the operational rows behind the row's cell.

``cube(...) { sales { revenue orderCount } products { category }
drill { orders(first: 20, orderBy: [{totalAmount: DESC}]) { totalCount edges { node { id } } } } }``

Each row's ``drill.orders`` is the API's ``orders`` connection (the generated
``OrderConnection``, its ``filter``/``orderBy``/``first``/``after``/... and page caps),
compiled by the one read executor (``schema/plan.py``, ``schema/sql.py``) and restricted
to the orders of the row's cell: the orders whose facts (the measures' cube, through its
``orderId`` dimension) pass the row's dimension values (a time bucket as its range in the
query's time zone, an empty member as ``set: false``), the query's ``where`` on dimensions
and its ``segments``. A measure filter decides which rows show, not which orders a row
holds. The restriction is the cell's fact query itself (``semantic``'s planner, as a
subquery of order ids), so ``drill.orders.totalCount`` is the cell's ``orderCount`` and
the drilled orders' lines in the cell add up to its ``revenue``.

Every row's connection is one statement (each cell's order ids a materialized CTE, read
by its count and its page), run on the request's read transaction under its row-level
security. The rows are bounded by the cube's ``limit``
and the cost rule counts ``limit`` times each drill's page (api/rules.py); ``drill`` beside
``subtotals`` is refused (a total row's cell is not one member).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from graphql import GraphQLObjectType
from starlette.concurrency import run_in_threadpool

from db.errors import BadUserInputError, CdmsError, QueryTooComplexError
from schema import plan as P
from schema.catalog import ROOTS
from schema.context import Info
from schema.cube.selection import Reader
from schema.execute import bind, completed, reads_of
from schema.sql import statement
from semantic.checks import ALL, is_measure_filter
from semantic.compile import Compiler
from semantic.dates import EPSILON
from semantic.model import Granularity, Model
from semantic.planner import plan_query
from semantic.query import Condition, CubeQuery, DimensionField, Filter, Member, Op
from semantic.service import MAX_BOUND, prepare, render

KEY = "orderId"  # the fact cubes' dimension holding app.orders.id
MAX_CELLS = 5_000  # rows drilled in one answer (each is a subquery of the statement)
_PARAM = re.compile(r"%\((\w+)\)s")


async def drill_rows(
    info: Info, reader: Reader, query: CubeQuery, rows: list[dict[str, Any]]
) -> None:
    """Fill each row's ``drill`` fields (``reader.drills``) with the connections of its
    cell, in one statement."""
    model = reader.model
    fact = _fact(model, query)
    if query.subtotals:
        raise BadUserInputError(
            "drill and subtotals do not go together (a total row has no single cell)",
            field="drill",
        )
    where = tuple(f for f in query.filters if not is_measure_filter(model, f))
    if len(rows) > MAX_CELLS:  # the cost rule bounds it first; a fragment may hide a page
        raise QueryTooComplexError(
            f"drill over {len(rows)} rows: at most {MAX_CELLS} (lower the cube's limit)",
            limit=MAX_CELLS,
        )
    ctx = info.context
    reads = reads_of(info)
    op = ctx.operation
    planner = P.Planner(reads.gschema, op.document, op.operation, op.coerced, reads.limits)
    entity = ROOTS["orders"][0]
    conns = _connections(planner, reads.gschema, str(info.path.key), entity)
    for row in rows:  # a drill selecting no orders (only __typename) is still an object
        for drill_key in reader.drills:
            row.setdefault(drill_key, {})
    if not rows:
        return

    def cell_sql(i: int) -> tuple[str, dict[str, Any]]:
        row = rows[i]
        cell = CubeQuery(
            dimensions=(DimensionField("__order", Member(fact, KEY)),),
            filters=(*where, *(_member(d, row) for d in query.dimensions)),
            segments=query.segments,
            timezone=query.timezone,
        )
        return _cell_sql(model, cell, f"c{i}_")

    # each cell binds the query's filter values again: refused from the first cell's count,
    # before building the others (2,500 cells of 2,500 values took 22 s of the event loop)
    first = cell_sql(0)
    _bounded(len(rows), len(first[1]) * len(rows))

    def build() -> tuple[list[P.RootSel], list[str], dict[str, Any]]:
        roots: list[P.RootSel] = []
        ctes: list[str] = []  # each cell's order ids, computed once for its count and page
        extra: dict[str, Any] = {}
        for i, row in enumerate(rows):
            sql, params = first if i == 0 else cell_sql(i)
            extra |= params
            ctes.append(f"cell{i} AS MATERIALIZED ({sql})")
            within = f"{{t}}.id IN (SELECT d0 FROM cell{i})"
            for drill_key, orders_key, conn in conns:
                key = f"r{i}_{len(roots)}"
                roots.append(replace(conn, key=key, args=replace(conn.args, within=within)))
                row.setdefault(drill_key, {})[orders_key] = key
        return roots, ctes, extra

    # thousands of cells take a second or two to compile: off the event loop
    roots, ctes, extra = await run_in_threadpool(build)
    stmt = statement(roots, op.coerced.coerced)
    params = bind(stmt, op.coerced.coerced) | extra
    _bounded(len(rows), len(params))  # (the cells' own values may differ from the first's)
    text = f"WITH {', '.join(ctes)} {stmt.sql}"
    data = await ctx.db.run(lambda c: c.exec_driver_sql(text, params).one()[0])
    data = await completed(ctx, stmt, data)
    for row in rows:
        for drill_key, orders_key, _ in conns:
            holder = row[drill_key]
            holder[orders_key] = data[holder[orders_key]]


def _bounded(rows: int, values: int) -> None:
    """QUERY_TOO_COMPLEX when a drill's statement would bind more values than one can."""
    if values > MAX_BOUND:
        raise QueryTooComplexError(
            f"drill over {rows} rows binds {values} values, more than one statement can"
            f" ({MAX_BOUND}): lower the cube's limit or send fewer filter values",
            limit=MAX_BOUND,
        )


def _fact(model: Model, query: CubeQuery) -> str:
    """The fact whose orders a cell holds: the cube of the query's measures."""
    cubes = sorted({f.member.cube for f in query.measures})
    with_key = sorted(c.name for c in model.cubes if c.dimension(KEY) is not None and c.measures)
    if len(cubes) != 1 or cubes[0] not in with_key:
        raise BadUserInputError(
            "drill needs the measures of one fact cube with orders ("
            + ", ".join(with_key)
            + f"); this query has {', '.join(cubes) or 'none'}",
            field="drill",
        )
    return cubes[0]


def _connections(
    planner: P.Planner, gschema: Any, cube_key: str, entity: Any
) -> list[tuple[str, str, P.Conn]]:
    """(drill key, orders key, the planned connection) of every ``drill { orders }`` of
    the ``cube`` field ``cube_key``, planned as the executor plans any ``orders``."""
    row_type = gschema.get_type("CubeRow")
    drill_type = gschema.get_type("CubeCellDrill")
    assert isinstance(row_type, GraphQLObjectType) and isinstance(drill_type, GraphQLObjectType)
    out: list[tuple[str, str, P.Conn]] = []
    details = planner.roots()[cube_key]
    for dkey, ddetails in planner.subfields(row_type, details).items():
        if ddetails[0].node.name.value != "drill":
            continue
        for okey, odetails in planner.subfields(drill_type, ddetails).items():
            if odetails[0].node.name.value != "orders":
                continue
            gfield = drill_type.fields["orders"]
            try:
                conn = planner.connection(okey, gfield, odetails, entity, None)
            except P.FieldError as exc:
                raise exc.error from None
            out.append((dkey, okey, conn))
    return out


def _member(d: DimensionField, row: dict[str, Any]) -> Filter:
    """The row's value of dimension field ``d`` as a condition on its member."""
    value: Any = row
    for part in d.alias.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return Condition(d.member, Op.SET, (False,))
    if d.granularity is None:
        return Condition(d.member, Op.EQUALS, (value,))
    lo, hi = bucket(d.granularity, str(value))
    return Condition(d.member, Op.IN_DATE_RANGE, (lo.isoformat(), (hi - EPSILON).isoformat()))


def _cell_sql(model: Model, cell: CubeQuery, prefix: str) -> tuple[str, dict[str, Any]]:
    """The cell's fact rows' order ids (``d0``) as SQL whose parameters are renamed with
    ``prefix`` (so many cells share one statement), and those parameters."""
    try:
        checked = prepare(model, cell, ALL)
    except CdmsError as exc:  # a value the answer wrote that its own filter refuses
        raise BadUserInputError(f"drill: this cell cannot be drilled ({exc.message})") from None
    plan = plan_query(model, checked, frozenset(), checked=True)
    sql, params = render(Compiler(model, plan).fact(0, None))
    renamed = _PARAM.sub(lambda m: f"%({prefix}{m[1]})s", sql)
    return renamed, {f"{prefix}{k}": v for k, v in params.items()}


def bucket(gran: Granularity, value: str) -> tuple[datetime, datetime]:
    """The local ``[start, end)`` of the time bucket whose start the cube wrote."""
    start = datetime.fromisoformat(value)
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
