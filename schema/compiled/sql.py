"""A compiled plan → ONE SQL statement whose single value is the ``data`` JSON.

Shape (PostGraphile/Hasura style)::

    SELECT json_build_object('customers', (
      SELECT json_build_object(
        'edges', coalesce(json_agg(json_build_object('node', json_build_object(
                   'id', x.id::text,
                   'orders', (SELECT ... FROM (SELECT o.*, row_number() OVER (...) AS __rn
                                               FROM app.orders o WHERE o.customer_id = x.id
                                               ORDER BY ... LIMIT :n + 1) AS x2)))
                 ORDER BY x.__rn) FILTER (WHERE x.__rn <= :n), '[]'),
        'pageInfo', json_build_object('hasNextPage', count(*) > :n, ...))
      FROM (SELECT c.*, row_number() OVER (ORDER BY c.id) AS __rn FROM app.customers c
            WHERE <filter> AND <keyset> ORDER BY c.id LIMIT :n + 1) AS x))

Every page is a keyset page of ``n + 1`` rows per parent (the extra row answers
hasNextPage/hasPreviousPage), filters and keyset conditions come from
:mod:`schema.filters` (so both paths select the same rows), and every value is a bound
parameter. Values are formatted exactly as the Strawberry scalars print them: IDs as
text, enums upper-case, Decimal with two places (averages rounded half-even like
``Decimal.quantize``), DateTime as ``isoformat()`` (microseconds only when non-zero,
offset ``+HH:MM`` of the session time zone, which is also the zone psycopg uses), and
cursors as :func:`schema.filters.encode_cursor` builds them.
"""

from __future__ import annotations

import json
import re
from typing import Any, assert_never

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSON, aggregate_order_by

from schema import filters
from schema.catalog import Entity, Kind, Relation
from schema.compiled import plan as P
from schema.relay import ConnQuery

_SAFE = re.compile(r"^[_A-Za-z0-9:,\[\]\"]*$")

_ISO = 'YYYY-MM-DD"T"HH24:MI:SS'
_ISO_FMT: sa.ColumnElement[str] = sa.literal_column(f"'{_ISO}TZH:TZM'")
_ISO_US_FMT: sa.ColumnElement[str] = sa.literal_column(f"'{_ISO}.USTZH:TZM'")
_EMPTY = sa.literal_column("'[]'::json", type_=JSON)


def _lit(text: str) -> sa.ColumnElement[str]:
    """A constant string from the schema (a GraphQL name, a sort signature), inlined.

    Only names matching ``[_A-Za-z0-9:,[\\]"]`` are ever inlined; values are bound.
    """
    if not _SAFE.match(text):
        raise P.NotCompilable(f"unsafe literal {text!r}")
    return sa.literal_column(f"'{text}'", type_=sa.Text)


def _obj(pairs: list[tuple[str, sa.ColumnElement[Any]]]) -> sa.ColumnElement[Any]:
    args: list[sa.ColumnElement[Any]] = []
    for key, value in pairs:
        args += [_lit(key), value]
    return sa.func.json_build_object(*args, type_=JSON)


def _bool(value: bool) -> sa.ColumnElement[bool]:
    return sa.true() if value else sa.false()


# --- scalar formatting -----------------------------------------------------------------


def iso_datetime(col: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """``datetime.isoformat()``: ``.ffffff`` only when there are microseconds."""
    fmt = sa.case((sa.func.date_trunc("second", col) == col, _ISO_FMT), else_=_ISO_US_FMT)
    return sa.func.to_char(col, fmt, type_=sa.Text)


def half_even_2(col: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """``str(Decimal(x).quantize(Decimal('0.01')))`` (ROUND_HALF_EVEN) as text."""
    y = sa.cast(col, sa.Numeric) * 100
    t = sa.func.trunc(y)
    tie = sa.func.abs(y - t) == sa.literal_column("0.5")
    odd = sa.func.mod(t, 2) != 0
    rounded = sa.case(
        (tie, t + sa.case((odd, sa.func.sign(y)), else_=sa.literal_column("0"))),
        else_=sa.func.round(y),
    )
    return sa.cast(sa.func.round(rounded / sa.literal_column("100.0"), 2), sa.Text)


def fmt_value(col: sa.ColumnElement[Any], fmt: P.Fmt) -> sa.ColumnElement[Any]:
    if fmt == "id" or fmt == "decimal2":
        return sa.cast(col, sa.Text)
    if fmt == "int" or fmt == "text" or fmt == "bool":
        return col
    if fmt == "enum":
        return sa.func.upper(col, type_=sa.Text)
    if fmt == "decimal":
        return half_even_2(col)
    if fmt == "datetime":
        return iso_datetime(col)
    if fmt == "date":
        return sa.func.to_char(col, sa.literal_column("'YYYY-MM-DD'"), type_=sa.Text)
    assert_never(fmt)


def cursor(q: ConnQuery, src: sa.FromClause) -> sa.ColumnElement[str]:
    """:func:`schema.filters.encode_cursor` of the row of ``src``, computed in SQL."""
    parts: list[sa.ColumnElement[Any]] = [_lit("[" + json.dumps(filters.order_signature(q.keys)))]
    quote: sa.ColumnElement[str] = sa.literal_column("'\"'")
    for k in q.keys:
        col = src.c[k.field.column]
        kind = k.field.kind
        v: sa.ColumnElement[Any]
        if kind in (Kind.ID, Kind.INT):
            v = sa.cast(col, sa.Text)
        elif kind is Kind.DATETIME:
            v = quote + iso_datetime(col) + quote
        elif kind is Kind.DATE:
            v = quote + sa.func.to_char(col, sa.literal_column("'YYYY-MM-DD'")) + quote
        elif kind in (Kind.DECIMAL, Kind.ENUM):
            v = quote + sa.cast(col, sa.Text) + quote
        else:  # TEXT: refused by the planner
            raise P.NotCompilable("cursor over a text sort key")
        parts += [sa.literal_column("','"), sa.func.coalesce(v, sa.literal_column("'null'"))]
    parts.append(sa.literal_column("']'"))
    raw = sa.func.concat(*parts, type_=sa.Text)
    b64 = sa.func.encode(sa.func.convert_to(raw, sa.literal_column("'UTF8'")), "base64")
    translated = sa.func.translate(b64, sa.literal_column("E'+/\\n'"), sa.literal_column("'-_'"))
    return sa.func.rtrim(translated, sa.literal_column("'='"), type_=sa.Text)


# --- nodes ---------------------------------------------------------------------------------


def node_json(node: P.Node, src: sa.FromClause) -> sa.ColumnElement[Any]:
    pairs: list[tuple[str, sa.ColumnElement[Any]]] = []
    for sel in node.fields:
        if isinstance(sel, P.Const):
            pairs.append((sel.key, _lit(sel.value)))
        elif isinstance(sel, P.Value):
            pairs.append((sel.key, fmt_value(src.c[sel.column], sel.fmt)))
        elif isinstance(sel, P.One):
            pairs.append((sel.key, _one(sel, src)))
        elif isinstance(sel, P.Many):
            pairs.append((sel.key, _many(sel, src)))
        elif isinstance(sel, P.Conn):
            pairs.append((sel.key, conn_json(sel, src)))
        else:
            assert_never(sel)
    return _obj(pairs)


def _join(rel: Relation, t: sa.FromClause, src: sa.FromClause) -> sa.ColumnElement[bool]:
    return t.c[rel.remote] == src.c[rel.local]


def _one(sel: P.One, src: sa.FromClause) -> sa.ColumnElement[Any]:
    t = sel.node.entity.table.alias()
    return (
        sa.select(node_json(sel.node, t))
        .where(_join(sel.relation, t, src))
        .correlate(src)
        .scalar_subquery()
    )


def _many(sel: P.Many, src: sa.FromClause) -> sa.ColumnElement[Any]:
    ent = sel.node.entity
    t = ent.table.alias()
    order = filters.order_clause(filters.compile_order(ent, None), t)
    agg = sa.func.json_agg(aggregate_order_by(node_json(sel.node, t), *order))
    return (
        sa.select(sa.func.coalesce(agg, _EMPTY))
        .where(_join(sel.relation, t, src))
        .correlate(src)
        .scalar_subquery()
    )


def by_id(sel: P.ById) -> sa.ColumnElement[Any]:
    t = sel.entity.table.alias()
    ident = sa.bindparam(None, sel.id, type_=sa.BigInteger)
    return sa.select(node_json(sel.node, t)).where(t.c.id == ident).scalar_subquery()


# --- connections ---------------------------------------------------------------------------


def _scope(q: ConnQuery, t: sa.FromClause, src: sa.FromClause | None) -> list[Any]:
    if q.parent is None or src is None:
        return []
    return [_join(q.parent, t, src)]


def _stats_select(
    q: ConnQuery, src: sa.FromClause | None, cols: list[sa.ColumnElement[Any]], t: sa.FromClause
) -> sa.ColumnElement[Any]:
    stmt = sa.select(*cols).select_from(t).where(*_scope(q, t, src), *q.filter_only(t))
    if src is not None:
        stmt = stmt.correlate(src)
    return stmt.scalar_subquery()


def _aggregate(sel: P.Aggregate, q: ConnQuery, src: sa.FromClause | None) -> Any:
    t = q.entity.table.alias()
    pairs: list[tuple[str, sa.ColumnElement[Any]]] = []
    for f in sel.fields:
        if isinstance(f, P.Const):
            pairs.append((f.key, _lit(f.value)))
        elif isinstance(f, P.Count):
            pairs.append((f.key, sa.func.count()))
        elif isinstance(f, P.AggPart):
            fn = getattr(sa.func, f.fn)
            part: list[tuple[str, sa.ColumnElement[Any]]] = []
            for v in f.fields:
                if isinstance(v, P.Const):
                    part.append((v.key, _lit(v.value)))
                else:
                    part.append((v.key, fmt_value(fn(t.c[v.column]), v.fmt)))
            pairs.append((f.key, _obj(part)))
        else:
            assert_never(f)
    return _stats_select(q, src, [_obj(pairs)], t)


def conn_json(sel: P.Conn, src: sa.FromClause | None) -> sa.ColumnElement[Any]:
    q = sel.query
    ent: Entity = q.entity
    n = sa.bindparam(None, q.page.size, type_=sa.Integer)
    needs_page = any(isinstance(f, P.Edges | P.PageInfo) for f in sel.fields)
    x: sa.FromClause | None = None
    if needs_page:
        t = ent.table.alias()
        order = filters.order_clause(q.keys, t, reverse=q.page.backward)
        rn = sa.func.row_number().over(order_by=order).label("__rn")
        inner = (
            sa.select(t, rn)
            .where(*_scope(q, t, src), *q.where(t))
            .order_by(*order)
            .limit(sa.bindparam(None, q.page.size + 1, type_=sa.Integer))
        )
        if src is not None:
            inner = inner.correlate(src)
        x = inner.subquery()
    pairs: list[tuple[str, sa.ColumnElement[Any]]] = []
    for f in sel.fields:
        if isinstance(f, P.Const):
            pairs.append((f.key, _lit(f.value)))
        elif isinstance(f, P.TotalCount):
            t2 = ent.table.alias()
            pairs.append((f.key, _stats_select(q, src, [sa.func.count()], t2)))
        elif isinstance(f, P.Aggregate):
            pairs.append((f.key, _aggregate(f, q, src)))
        elif isinstance(f, P.Edges):
            assert x is not None
            pairs.append((f.key, _edges(f, q, x, n)))
        elif isinstance(f, P.PageInfo):
            assert x is not None
            pairs.append((f.key, _page_info(f, q, x, n)))
        else:
            assert_never(f)
    body = _obj(pairs)
    if x is None:
        return body
    stmt = sa.select(body).select_from(x)
    if src is not None:
        stmt = stmt.correlate(src)
    return stmt.scalar_subquery()


def _edges(sel: P.Edges, q: ConnQuery, x: sa.FromClause, n: Any) -> sa.ColumnElement[Any]:
    pairs: list[tuple[str, sa.ColumnElement[Any]]] = []
    for f in sel.fields:
        if isinstance(f, P.Const):
            pairs.append((f.key, _lit(f.value)))
        elif isinstance(f, P.Cursor):
            pairs.append((f.key, cursor(q, x)))
        elif isinstance(f, P.EdgeNode):
            pairs.append((f.key, node_json(f.node, x)))
        else:
            assert_never(f)
    rn = x.c["__rn"]
    shown = rn.desc() if q.page.backward else rn.asc()
    agg = sa.func.json_agg(aggregate_order_by(_obj(pairs), shown)).filter(rn <= n)
    return sa.func.coalesce(agg, _EMPTY)


def _page_info(sel: P.PageInfo, q: ConnQuery, x: sa.FromClause, n: Any) -> sa.ColumnElement[Any]:
    rn = x.c["__rn"]
    more = sa.func.count() > n
    backward = q.page.backward

    def first_cursor(last: bool) -> sa.ColumnElement[Any]:
        # display order is rn ascending (forward) or descending (backward)
        order = rn.desc() if last != backward else rn.asc()
        arr = sa.func.array_agg(aggregate_order_by(cursor(q, x), order), type_=ARRAY(sa.Text))
        return sa.type_coerce(arr.filter(rn <= n), ARRAY(sa.Text))[1]

    pairs: list[tuple[str, sa.ColumnElement[Any]]] = []
    for f in sel.fields:
        if isinstance(f, P.Const):
            pairs.append((f.key, _lit(f.value)))
        elif f.which == "has_next_page":
            pairs.append((f.key, _bool(q.page.before is not None) if backward else more))
        elif f.which == "has_previous_page":
            pairs.append((f.key, more if backward else _bool(q.page.after is not None)))
        elif f.which == "start_cursor":
            pairs.append((f.key, first_cursor(last=False)))
        elif f.which == "end_cursor":
            pairs.append((f.key, first_cursor(last=True)))
        else:
            assert_never(f.which)
    return _obj(pairs)


# --- the operation ---------------------------------------------------------------------------


def statement(op: P.Operation) -> sa.Select[Any]:
    """``SELECT <data json>``: one row, one column."""
    pairs: list[tuple[str, sa.ColumnElement[Any]]] = []
    for sel in op.fields:
        if isinstance(sel, P.Const):
            pairs.append((sel.key, _lit(sel.value)))
        elif isinstance(sel, P.ById):
            pairs.append((sel.key, by_id(sel)))
        elif isinstance(sel, P.Conn):
            pairs.append((sel.key, conn_json(sel, None)))
        else:
            assert_never(sel)
    return sa.select(_obj(pairs).label("data"))
