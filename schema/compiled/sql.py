"""A compiled plan → ONE SQL statement whose single value is the ``data`` JSON.

Shape (PostGraphile/Hasura style)::

    SELECT json_build_object('customers', (
      SELECT json_build_object(
        'edges', coalesce(json_agg(json_build_object('node', json_build_object(
                   'id', (x2.id)::text,
                   'orders', (SELECT ... FROM (SELECT t3.*, row_number() OVER (...) AS __rn
                                               FROM app.orders AS t3 WHERE t3.customer_id = x2.id
                                               ORDER BY ... LIMIT %(p1)s) AS x4)))
                 ORDER BY x2.__rn) FILTER (WHERE x2.__rn <= %(p2)s), '[]'::json),
        'pageInfo', json_build_object('hasNextPage', count(*) > %(p2)s, ...))
      FROM (SELECT t1.*, row_number() OVER (ORDER BY t1.id ASC) AS __rn FROM app.customers
            AS t1 WHERE <filter> AND <keyset> ORDER BY t1.id ASC LIMIT %(p3)s) AS x2))

Every page is a keyset page of ``n + 1`` rows per parent (the extra row answers
hasNextPage/hasPreviousPage). Filters and keyset conditions are the SQLAlchemy
expressions of :mod:`schema.filters` (so both paths select the same rows), rendered for
psycopg; every value is a bound parameter. Values are formatted exactly as the
Strawberry scalars print them: IDs as text, enums upper-case, Decimal with two places
(averages rounded half-even like ``Decimal.quantize``), DateTime as ``isoformat()``
(microseconds only when non-zero, offset ``+HH:MM`` of the session time zone, which is
also the zone psycopg uses) and cursors as :func:`schema.filters.encode_cursor` builds them.

The text is generated directly (not through SQLAlchemy constructs): building the nested
Core statement cost milliseconds per request, more than running it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, assert_never

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from schema import filters
from schema.catalog import Entity, Kind, Relation
from schema.compiled import plan as P
from schema.enums import SortDirection
from schema.filters import SortKey
from schema.relay import ConnQuery

if TYPE_CHECKING:
    from schema.compiled.predictions import Sites

_SAFE = re.compile(r"^[_A-Za-z0-9:,\[\]\"]*$")
_PARAM = re.compile(r"%\((\w+)\)s")
_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]

_ISO = 'YYYY-MM-DD"T"HH24:MI:SS'
_EMPTY = "'[]'::json"


def _lit(text: str) -> str:
    """A constant string from the schema (a GraphQL name, a sort signature), inlined.

    Only names matching ``[_A-Za-z0-9:,[\\]"]`` are ever inlined; values are bound.
    """
    if not _SAFE.match(text):
        raise P.NotCompilable(f"unsafe literal {text!r}")
    return f"'{text}'"


def _obj(pairs: list[tuple[str, str]]) -> str:
    return "json_build_object(" + ", ".join(f"{_lit(k)}, {v}" for k, v in pairs) + ")"


# --- scalar formatting -----------------------------------------------------------------


def iso_datetime(e: str) -> str:
    """``datetime.isoformat()``: ``.ffffff`` only when there are microseconds."""
    return (
        f"to_char({e}, CASE WHEN date_trunc('second', {e}) = {e}"
        f" THEN '{_ISO}TZH:TZM' ELSE '{_ISO}.USTZH:TZM' END)"
    )


def half_even_2(e: str) -> str:
    """``str(Decimal(x).quantize(Decimal('0.01')))`` (ROUND_HALF_EVEN) as text."""
    y = f"(({e})::numeric * 100)"
    t = f"trunc({y})"
    rounded = (
        f"CASE WHEN abs({y} - {t}) = 0.5"
        f" THEN {t} + CASE WHEN mod({t}, 2) <> 0 THEN sign({y}) ELSE 0 END"
        f" ELSE round({y}) END"
    )
    return f"(round(({rounded}) / 100.0, 2))::text"


def fmt_value(e: str, fmt: P.Fmt) -> str:
    if fmt == "id" or fmt == "decimal2":
        return f"({e})::text"
    if fmt == "int" or fmt == "text" or fmt == "bool":
        return e
    if fmt == "enum":
        return f"upper({e})"
    if fmt == "decimal":
        return half_even_2(e)
    if fmt == "datetime":
        return iso_datetime(e)
    if fmt == "date":
        return f"to_char({e}, 'YYYY-MM-DD')"
    assert_never(fmt)


def json_text(e: str) -> str:
    """``json.dumps(value)`` of a text expression (``ensure_ascii``: every character outside
    printable ASCII as ``\\uXXXX``, astral ones as surrogate pairs), in SQL."""
    c = "ascii(ch)"
    escaped = (
        "CASE WHEN ch = '\"' THEN '\\\"' WHEN ch = '\\' THEN '\\\\'"
        f" WHEN {c} BETWEEN 32 AND 126 THEN ch"
        f" WHEN {c} = 8 THEN '\\b' WHEN {c} = 9 THEN '\\t' WHEN {c} = 10 THEN '\\n'"
        f" WHEN {c} = 12 THEN '\\f' WHEN {c} = 13 THEN '\\r'"
        f" WHEN {c} < 65536 THEN '\\u' || lpad(to_hex({c}), 4, '0')"
        f" ELSE '\\u' || to_hex(55296 + (({c} - 65536) >> 10))"
        f" || '\\u' || to_hex(56320 + (({c} - 65536) & 1023)) END"
    )
    return (
        f"CASE WHEN {e} IS NOT NULL THEN (SELECT '\"'"
        f" || coalesce(string_agg({escaped}, '' ORDER BY n), '') || '\"'"
        f" FROM regexp_split_to_table({e}, '') WITH ORDINALITY AS s(ch, n)) END"
    )


def cursor(q: ConnQuery, src: str) -> str:
    """:func:`schema.filters.encode_cursor` of the row of ``src``, computed in SQL."""
    parts = [_lit("[" + json.dumps(filters.order_signature(q.keys)))]
    for k in q.keys:
        col = f"{src}.{k.field.column}"
        kind = k.field.kind
        if kind in (Kind.ID, Kind.INT):
            v = f"({col})::text"
        elif kind is Kind.DATETIME:
            v = f"'\"' || {iso_datetime(col)} || '\"'"
        elif kind is Kind.DATE:
            v = f"'\"' || to_char({col}, 'YYYY-MM-DD') || '\"'"
        elif kind in (Kind.DECIMAL, Kind.ENUM):
            v = f"'\"' || ({col})::text || '\"'"
        elif kind is Kind.TEXT:
            v = json_text(col)
        else:
            raise P.NotCompilable(f"cursor over a {kind} sort key")
        parts += ["','", f"coalesce({v}, 'null')"]
    parts.append("']'")
    raw = "concat(" + ", ".join(parts) + ")"
    return f"rtrim(translate(encode(convert_to({raw}, 'UTF8'), 'base64'), E'+/\\n', '-_'), '=')"


def _order(keys: tuple[SortKey, ...], src: str, *, reverse: bool = False) -> str:
    """:func:`schema.filters.order_clause` as text."""
    out = []
    for k in keys:
        desc = (k.direction is SortDirection.DESC) != reverse
        out.append(f"{src}.{k.field.column} {'DESC' if desc else 'ASC'}")
    return ", ".join(out)


# --- the builder -----------------------------------------------------------------------------


@dataclass
class Built:
    """SQL text with psycopg ``%(name)s`` placeholders and their values."""

    sql: str
    params: dict[str, Any]
    # where prediction fields must be filled in after the statement ran
    # (schema.compiled.predictions.Sites); None when there is none
    predictions: Sites | None = None


PENDING = "cdms:pending"  # {"cdms:pending": id}: a prediction to compute after the statement


@dataclass
class _Builder:
    params: dict[str, Any] = field(default_factory=dict)
    n_alias: int = 0
    # LEFT JOINs a row source needs (its stored predictions), by the source's alias
    joins: dict[str, list[str]] = field(default_factory=dict)
    # the alias of each row source's joined stored predictions, by (source, table)
    stored: dict[tuple[str, str], str] = field(default_factory=dict)

    def joined(self, src: str) -> str:
        """The joins the nodes built over ``src`` asked for (call after building them)."""
        return "".join(self.joins.pop(src, ()))

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"

    def alias(self, prefix: str) -> str:
        self.n_alias += 1
        return f"{prefix}{self.n_alias}"

    def conditions(self, ent: Entity, name: str, build: Any) -> list[str]:
        """SQLAlchemy conditions (``build(table_alias)``) from :mod:`schema.filters`, as text
        over the alias ``name``, their parameters renamed into this statement's."""
        t = ent.table.alias(name)
        conds = build(t)
        if not conds:
            return []
        stmt: sa.Select[Any] = (
            sa.select(sa.literal_column("1")).select_from(t).where(sa.and_(*conds))
        )
        compiled = stmt.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
        text = str(compiled)
        where = text[text.index("\nWHERE ") + len("\nWHERE ") :]
        values = compiled.params

        def rename(m: re.Match[str]) -> str:
            return self.bind(values[m.group(1)])

        return [_PARAM.sub(rename, where)]

    # nodes
    def node(self, node: P.Node, src: str) -> str:
        pairs: list[tuple[str, str]] = []
        for sel in node.fields:
            if isinstance(sel, P.Const):
                pairs.append((sel.key, _lit(sel.value)))
            elif isinstance(sel, P.Value):
                pairs.append((sel.key, fmt_value(f"{src}.{sel.column}", sel.fmt)))
            elif isinstance(sel, P.One):
                pairs.append((sel.key, self.one(sel, src)))
            elif isinstance(sel, P.Many):
                pairs.append((sel.key, self.many(sel, src)))
            elif isinstance(sel, P.Conn):
                pairs.append((sel.key, self.conn(sel, src)))
            elif isinstance(sel, P.Predict):
                pairs.append(
                    (sel.key, self.predict(sel, f"{src}.{node.entity.fields['id'].column}", src))
                )
            else:
                assert_never(sel)
        return _obj(pairs)

    def predict(self, sel: P.Predict, id_: str, src: str) -> str:
        """The stored prediction of the object (``ml.stored``: its row joined by primary key,
        the model's columns used when their version is the active one), else
        ``{"cdms:pending": id}`` for :mod:`schema.compiled.predictions` to compute after
        the statement."""
        pending = f"json_build_object({_lit(PENDING)}, {id_})"
        from ml.stored import BY_KIND

        stored = BY_KIND.get(sel.kind)
        if stored is None:  # customers' current features: always computed on request
            return pending
        key = (src, stored.table)
        p = self.stored.get(key)
        if p is None:  # one row per object, whatever prediction fields it selects
            p = self.stored[key] = self.alias("p")
            self.joins.setdefault(src, []).append(
                f" LEFT JOIN {stored.table} AS {p} ON {p}.{stored.key} = {id_}"
            )
        model = _lit(sel.model)
        c = f"{p}.{sel.model}_"  # the model's columns (ml.stored.columns)
        active = (
            f"(SELECT v.version FROM ml.model_version AS v WHERE v.name = {model} AND v.active)"
        )
        shaped = _stored_object(sel.fields, c, sel.model)
        return f"coalesce(CASE WHEN {c}version = {active} THEN {shaped} END, {pending})"

    @staticmethod
    def _join(rel: Relation, t: str, src: str) -> str:
        return f"{t}.{rel.remote} = {src}.{rel.local}"

    def one(self, sel: P.One, src: str) -> str:
        ent = sel.node.entity
        t = self.alias("t")
        body = self.node(sel.node, t)
        return (
            f"(SELECT {body} FROM {_table(ent)} AS {t}{self.joined(t)}"
            f" WHERE {self._join(sel.relation, t, src)})"
        )

    def many(self, sel: P.Many, src: str) -> str:
        ent = sel.node.entity
        t = self.alias("t")
        order = _order(filters.compile_order(ent, None), t)
        body = self.node(sel.node, t)
        return (
            f"(SELECT coalesce(json_agg({body} ORDER BY {order}), {_EMPTY})"
            f" FROM {_table(ent)} AS {t}{self.joined(t)}"
            f" WHERE {self._join(sel.relation, t, src)})"
        )

    def by_id(self, sel: P.ById) -> str:
        t = self.alias("t")
        body = self.node(sel.node, t)
        return (
            f"(SELECT {body} FROM {_table(sel.entity)} AS {t}{self.joined(t)}"
            f" WHERE {t}.id = {self.bind(sel.id)})"
        )

    # connections
    def _scope(self, q: ConnQuery, t: str, src: str | None) -> list[str]:
        if q.parent is None or src is None:
            return []
        return [self._join(q.parent, t, src)]

    def _stats(self, q: ConnQuery, src: str | None, cols: Callable[[str], str]) -> str:
        t = self.alias("t")
        conds = self._scope(q, t, src) + self.conditions(q.entity, t, q.filter_only)
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        return f"(SELECT {cols(t)} FROM {_table(q.entity)} AS {t}{where})"

    def aggregate(self, sel: P.Aggregate, q: ConnQuery, src: str | None) -> str:
        return self._stats(q, src, lambda t: self._aggregate_object(sel, t))

    def _aggregate_object(self, sel: P.Aggregate, t: str) -> str:
        pairs: list[tuple[str, str]] = []
        for f in sel.fields:
            if isinstance(f, P.Const):
                pairs.append((f.key, _lit(f.value)))
            elif isinstance(f, P.Count):
                pairs.append((f.key, "count(*)"))
            elif isinstance(f, P.AggPart):
                part: list[tuple[str, str]] = []
                for v in f.fields:
                    if isinstance(v, P.Const):
                        part.append((v.key, _lit(v.value)))
                    else:
                        part.append((v.key, fmt_value(f"{f.fn}({t}.{v.column})", v.fmt)))
                pairs.append((f.key, _obj(part)))
            else:
                assert_never(f)
        return _obj(pairs)

    def conn(self, sel: P.Conn, src: str | None) -> str:
        q = sel.query
        ent = q.entity
        needs_page = any(isinstance(f, P.Edges | P.PageInfo) for f in sel.fields)
        x: str | None = None
        page_sql = ""
        n = ""
        if needs_page:
            t = self.alias("t")
            order = _order(q.keys, t, reverse=q.page.backward)
            conds = self._scope(q, t, src) + self.conditions(ent, t, q.where)
            where = f" WHERE {' AND '.join(conds)}" if conds else ""
            limit = _int(q.page.size + 1)
            x = self.alias("x")
            page_sql = (
                f" FROM (SELECT {t}.*, row_number() OVER (ORDER BY {order}) AS __rn"
                f" FROM {_table(ent)} AS {t}{where} ORDER BY {order} LIMIT {limit}) AS {x}"
            )
            n = _int(q.page.size)
        pairs: list[tuple[str, str]] = []
        for f in sel.fields:
            if isinstance(f, P.Const):
                pairs.append((f.key, _lit(f.value)))
            elif isinstance(f, P.TotalCount):
                pairs.append((f.key, self._stats(q, src, lambda _: "count(*)")))
            elif isinstance(f, P.Aggregate):
                pairs.append((f.key, self.aggregate(f, q, src)))
            elif isinstance(f, P.Edges):
                assert x is not None
                pairs.append((f.key, self.edges(f, q, x, n)))
            elif isinstance(f, P.PageInfo):
                assert x is not None
                pairs.append((f.key, self.page_info(f, q, x, n)))
            else:
                assert_never(f)
        body = _obj(pairs)
        if x is None:
            return body
        return f"(SELECT {body}{page_sql}{self.joined(x)})"

    def edges(self, sel: P.Edges, q: ConnQuery, x: str, n: str) -> str:
        pairs: list[tuple[str, str]] = []
        for f in sel.fields:
            if isinstance(f, P.Const):
                pairs.append((f.key, _lit(f.value)))
            elif isinstance(f, P.Cursor):
                pairs.append((f.key, cursor(q, x)))
            elif isinstance(f, P.EdgeNode):
                pairs.append((f.key, self.node(f.node, x)))
            else:
                assert_never(f)
        shown = f"{x}.__rn {'DESC' if q.page.backward else 'ASC'}"
        return (
            f"coalesce(json_agg({_obj(pairs)} ORDER BY {shown})"
            f" FILTER (WHERE {x}.__rn <= {n}), {_EMPTY})"
        )

    def page_info(self, sel: P.PageInfo, q: ConnQuery, x: str, n: str) -> str:
        more = f"count(*) > {n}"
        backward = q.page.backward

        def end(last: bool) -> str:
            # display order is __rn ascending (forward) or descending (backward)
            direction = "DESC" if last != backward else "ASC"
            return (
                f"(array_agg({cursor(q, x)} ORDER BY {x}.__rn {direction})"
                f" FILTER (WHERE {x}.__rn <= {n}))[1]"
            )

        pairs: list[tuple[str, str]] = []
        for f in sel.fields:
            if isinstance(f, P.Const):
                pairs.append((f.key, _lit(f.value)))
            elif f.which == "has_next_page":
                pairs.append((f.key, _bool(q.page.before is not None) if backward else more))
            elif f.which == "has_previous_page":
                pairs.append((f.key, more if backward else _bool(q.page.after is not None)))
            elif f.which == "start_cursor":
                pairs.append((f.key, end(last=False)))
            elif f.which == "end_cursor":
                pairs.append((f.key, end(last=True)))
            else:
                assert_never(f.which)
        return _obj(pairs)


def _stored_object(fields: tuple[Any, ...], c: str, model: str) -> str:
    """A prediction shaped by its selection from a model's stored columns (``c``: their
    prefix): the usual selections are the ready JSON, others are built from the columns,
    with the values :func:`schema.compiled.predictions._render` gives."""
    names = tuple((f.key, f.name) for f in fields)
    if names in (
        (("label", "label"), ("probability", "probability")),
        (("value", "value"),),
    ):
        return f"{c}doc"
    pairs: list[tuple[str, str]] = []
    for f in fields:
        if f.name == "__typename":
            pairs.append((f.key, _lit(f.typename)))
        elif f.name == "label":
            pairs.append((f.key, f"{c}label"))
        elif f.name in ("probability", "value"):
            pairs.append((f.key, py_float(f"{c}{f.name}")))
        elif f.name == "model":
            pairs.append(
                (f.key, _shaped(f.fields, {"name": _lit(model), "version": f"{c}version"}))
            )
        elif f.name == "probabilities":
            pairs.append((f.key, _stored_probabilities(f.fields, c)))
        else:
            raise AssertionError(f.name)  # the planner admits only these fields
    return _obj(pairs)


def _stored_probabilities(fields: tuple[Any, ...], c: str) -> str:
    names = tuple((f.key, f.name) for f in fields)
    if names == (("label", "label"), ("probability", "probability")):
        return f"{c}probabilities"
    row = _shaped(fields, {"label": "e.v->'label'", "probability": "e.v->'probability'"})
    return (
        f"(SELECT json_agg({row} ORDER BY e.i)"
        f" FROM json_array_elements({c}probabilities) WITH ORDINALITY AS e(v, i))"
    )


def _shaped(fields: tuple[Any, ...], values: dict[str, str]) -> str:
    """An object of scalar fields (``values`` by field name; ``__typename`` its type)."""
    return _obj([(f.key, _lit(f.typename) if f.name == "__typename" else values[f.name])
                 for f in fields])  # fmt: skip


def py_float(e: str) -> str:
    """A float8 as JSON written the way Python writes a float (``repr``: ``1.0`` where
    PostgreSQL writes ``1``; otherwise both write the shortest exact digits)."""
    return (
        f"(CASE WHEN {e} = trunc({e}) AND abs({e}) < 1e16"
        f" THEN trunc({e})::numeric::text || '.0' ELSE ({e})::text END)::json"
    )


def _int(value: int) -> str:
    """A page size, inlined rather than bound: a bound ``LIMIT`` makes PostgreSQL's generic
    plan of a prepared statement guess a tenth of the table, and a join under it then
    looks dearer than planning per request, so every request was planned again (500
    orders with their stored predictions: ~0.9 ms of planning). The size is part of the
    statement cache's key (it comes from the query's arguments or variables), so the
    text of a cached statement never carries another request's size."""
    if type(value) is not int:
        raise P.NotCompilable(f"page size {value!r} is not an int")
    return str(value)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _table(ent: Entity) -> str:
    return f"{ent.table.schema}.{ent.table.name}"


# --- the operation ---------------------------------------------------------------------------


def statement(op: P.Operation) -> Built:
    """``SELECT <data json>``: one row, one column, with its parameters."""
    b = _Builder()
    pairs: list[tuple[str, str]] = []
    for sel in op.fields:
        if isinstance(sel, P.Const):
            pairs.append((sel.key, _lit(sel.value)))
        elif isinstance(sel, P.ById):
            pairs.append((sel.key, b.by_id(sel)))
        elif isinstance(sel, P.Conn):
            pairs.append((sel.key, b.conn(sel, None)))
        else:
            assert_never(sel)
    from schema.compiled.predictions import sites_of

    return Built(f"SELECT {_obj(pairs)} AS data", b.params, sites_of(op))
