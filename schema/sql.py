"""A plan → ONE SQL statement whose single value is the response's JSON.

Shape (PostGraphile / Hasura style)::

    SELECT json_build_object('customers', (
      SELECT json_build_object(
        'edges', coalesce(json_agg(json_build_object('node', json_build_object(
                   'id', (x2.id)::text,
                   'orders', (SELECT ... FROM (SELECT t3.*, row_number() OVER (...) AS __rn
                                               FROM app.orders AS t3 WHERE t3.customer_id = x2.id
                                               ORDER BY ... LIMIT 11) AS x4)))
                 ORDER BY x2.__rn) FILTER (WHERE x2.__rn <= 10), '[]'::json),
        'pageInfo', json_build_object('hasNextPage', count(*) > 10, ...))
      FROM (SELECT t1.*, row_number() OVER (ORDER BY t1.id ASC) AS __rn FROM app.customers
            AS t1 WHERE <filter> AND <keyset> ORDER BY t1.id ASC LIMIT 11) AS x2))

Every page is a keyset page of ``n + 1`` rows per parent (the extra row answers
hasNextPage/hasPreviousPage). Every value of a request is a parameter, typed by a cast,
bound from its source (schema/plan.py: a literal or a path into the variables) when the
request runs; names come only from the catalog. Page sizes are written into the text:
a bound ``LIMIT`` makes the generic plan of a prepared statement guess a tenth of the
table, and the size is part of the plan cache's key anyway.

The JSON is PostgreSQL's own (the contract, docs/api.md "Formats"): ids as text, enums
upper case, ``Decimal`` as text with two decimals (numeric(14,2) as it is, anything else
rounded by ``round(x, 2)``), ``DateTime`` as PostgreSQL writes a timestamptz in JSON
(ISO 8601 with offset, fractions of a second only when present), cursors as base64url of
the JSON array ``[ordering, key values...]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, assert_never

from db.errors import QueryTooComplexError
from schema import plan as P
from schema.catalog import ENTITIES, Col, Entity, Kind, Rel, Shape

# values one statement binds: PostgreSQL's protocol allows 65,535, and each one costs the
# server time on every row it tests (an "or" of 20,000 ids took ~1 s); an `in` list is one
# parameter of the statement, each of its items one value (schema.execute.bind counts them)
MAX_PARAMS = 5_000
# a request's filters: their nodes (each object of a filter tree) and relation tests (one
# EXISTS each). An "or" of 5,000 relation tests binds no value, and PostgreSQL planned it
# for minutes at 2.4 GB, deaf to the statement timeout and to cancels (docs/security.md)
MAX_FILTER_NODES = 500
MAX_RELATION_FILTERS = 50
# relation tests inside relation tests: under an `or` each is a correlated subplan of the
# one around it, and the estimate multiplies with each level (orders → customer → orders
# → ... 16 deep passed every check and ran past the statement timeout, most of it in JIT
# compilation: schema.context turns JIT off). Real filters nest 1-2 deep; 3 deep under
# `or`s over 20,000 orders: 18 ms unrestricted, < 4 ms for a customer
MAX_RELATION_DEPTH = 3

_SAFE = re.compile(r"^[_A-Za-z0-9:,.\[\]\" ]*$")
_EMPTY = "'[]'::json"
PENDING = "cdms:pending"  # {"cdms:pending": id}: a prediction to compute after the statement

# a parameter compared with a column of this kind: its conversion (Param.conv), its cast
_BINDS = {
    Kind.ID: ("id", "bigint"),
    Kind.INT: ("int", "bigint"),
    Kind.FLOAT: ("float", "float8"),
    Kind.STRING: ("text", "text"),
    Kind.MONEY: ("decimal", "numeric"),
    Kind.DECIMAL: ("decimal", "numeric"),
    Kind.DATETIME: ("datetime", "timestamptz"),
    Kind.DATE: ("date", "date"),
    Kind.ENUM: ("enum", "text"),
}


def lit(text: str) -> str:
    """A name from the schema (a GraphQL name, an ordering), inlined as a string literal."""
    if not _SAFE.match(text):
        raise ValueError(f"unsafe literal {text!r}")
    return f"'{text}'"


_OBJ_PAIRS = 50  # json_build_object takes at most 100 arguments (PostgreSQL's FUNC_MAX_ARGS)


def obj(pairs: list[tuple[str, str]]) -> str:
    """A JSON object of ``pairs`` in order. Past 50 pairs (a drill over many cube rows) it
    joins the texts of several objects: ``json`` keeps the text as is, so the keys keep
    their order (``jsonb ||`` would sort them)."""
    parts = [
        "json_build_object("
        + ", ".join(f"{lit(k)}, {v}" for k, v in pairs[i : i + _OBJ_PAIRS])
        + ")"
        for i in range(0, len(pairs), _OBJ_PAIRS)
    ]
    if len(parts) <= 1:
        return parts[0] if parts else "json_build_object()"
    inner = " || ', ' || ".join(f"left(substr(({p})::text, 2), -1)" for p in parts)
    return f"('{{' || {inner} || '}}')::json"


def value(e: str, kind: Kind) -> str:
    """A column's value as the API's JSON."""
    if kind in (Kind.ID, Kind.MONEY):
        return f"({e})::text"
    if kind is Kind.DECIMAL:
        return f"round(({e})::numeric, 2)::text"
    if kind is Kind.ENUM:
        return f"upper({e})"
    if kind is Kind.FLOAT:
        return f"({e})::float8"
    return e


def cursor(args: P.ConnArgs, src: str) -> str:
    """The cursor of the row ``src``: base64url of ``[ordering, key values...]``."""
    values = ", ".join(f"{src}.{k.col.column}" for k in args.keys)
    raw = f"json_build_array({lit(args.signature)}, {values})::text"
    return f"rtrim(translate(encode(convert_to({raw}, 'UTF8'), 'base64'), E'+/\\n', '-_'), '=')"


def _order(keys: tuple[P.SortKey, ...], src: str, *, reverse: bool = False) -> str:
    return ", ".join(f"{src}.{k.col.column} {'DESC' if k.desc != reverse else 'ASC'}" for k in keys)


@dataclass(frozen=True)
class Param:
    """A statement parameter: where its value comes from and how it is converted
    (schema/execute.py binds it)."""

    src: P.Src
    conv: str  # id int float text enum decimal datetime date bool like prefix array:<conv>
    at: P.At  # the argument it was given in: a refusal's field and place
    cursor: tuple[str, int] | None = None  # (ordering, index) of a cursor's key value


@dataclass(frozen=True)
class PredictionSite:
    """Where a prediction field is in the response, by response keys from the root (an
    int step for the items of a list)."""

    path: tuple[str | None, ...]  # None: every item of a list at that point
    predict: P.Predict


@dataclass
class Statement:
    """SQL text with ``%(pN)s`` placeholders and what each is bound from."""

    sql: str
    params: list[Param]
    predictions: list[PredictionSite] = field(default_factory=list)
    # cursors given to a connection that selects no page: checked, not bound
    checks: list[Param] = field(default_factory=list)


@dataclass
class _Builder:
    variables: dict[str, Any]  # coerced: only to tell null from given (part of the shape)
    params: list[Param] = field(default_factory=list)
    n_alias: int = 0
    joins: dict[str, list[str]] = field(default_factory=dict)
    stored: dict[tuple[str, str], str] = field(default_factory=dict)
    sites: list[PredictionSite] = field(default_factory=list)
    checks: list[Param] = field(default_factory=list)
    filter_nodes: int = 0
    relation_filters: int = 0
    relation_depth: int = 0  # of the relation test being built (0: none around it)

    def bind(self, src: P.Src, conv: str, at: P.At, cursor: tuple[str, int] | None = None) -> str:
        self.params.append(Param(src, conv, at, cursor))
        return f"%(p{len(self.params) - 1})s"

    def alias(self, prefix: str) -> str:
        self.n_alias += 1
        return f"{prefix}{self.n_alias}"

    def joined(self, src: str) -> str:
        return "".join(self.joins.pop(src, ()))

    # --- filters ---------------------------------------------------------------------
    def filter(self, entity: Entity, t: str, flt: Any, at: P.At) -> list[str]:
        """Conditions over alias ``t`` for a filter tree (leaves are sources) given at
        ``at``."""
        if not isinstance(flt, dict):
            return []
        self.filter_nodes += 1
        if self.filter_nodes > MAX_FILTER_NODES:
            raise QueryTooComplexError(
                f"the query's filters have more than {MAX_FILTER_NODES} parts (objects in"
                " and/or/not lists and relation filters): use `in` lists, or fewer conditions",
                limit=MAX_FILTER_NODES,
            )
        out: list[str] = []
        cols, rels = entity.cols, entity.rels
        for name, value in flt.items():
            # an empty list is a leaf for the planner; it still counts (null and empty lists
            # are in the plan cache's key, schema.execute.shape)
            if name in ("and", "or") and P.resolve(value, self.variables) == []:
                value = []
            if name in ("and", "or") and isinstance(value, list):
                parts = [
                    f"({' AND '.join(self.filter(entity, t, v, at)) or 'true'})" for v in value
                ]
                empty = "true" if name == "and" else "false"
                out.append(f"({f' {name.upper()} '.join(parts) or empty})")
            elif name == "not" and isinstance(value, dict):
                inner = " AND ".join(self.filter(entity, t, value, at)) or "true"
                out.append(f"NOT ({inner})")
            elif name in rels and isinstance(value, dict):
                out.extend(self.relation(t, rels[name], value, at))
            elif name in cols and isinstance(value, dict):
                out.extend(self.ops(cols[name], f"{t}.{cols[name].column}", value, at))
        return out

    def relation(self, t: str, rel: Rel, value: dict[str, Any], at: P.At) -> list[str]:
        target = ENTITIES[rel.target]
        out = []
        if self.relation_depth >= MAX_RELATION_DEPTH and any(
            isinstance(value.get(q), dict) for q in ("some", "none")
        ):
            raise QueryTooComplexError(
                f"the query's filters nest relation tests (some/none inside some/none) more"
                f" than {MAX_RELATION_DEPTH} deep: test the related rows from a nearer root",
                limit=MAX_RELATION_DEPTH,
            )
        for quantifier in ("some", "none"):
            inner = value.get(quantifier)
            if not isinstance(inner, dict):
                continue
            self.relation_filters += 1
            if self.relation_filters > MAX_RELATION_FILTERS:
                raise QueryTooComplexError(
                    f"the query's filters test related rows (some/none) more than"
                    f" {MAX_RELATION_FILTERS} times",
                    limit=MAX_RELATION_FILTERS,
                )
            a = self.alias("f")
            self.relation_depth += 1
            conds = [f"{a}.{rel.remote} = {t}.{rel.local}", *self.filter(target, a, inner, at)]
            self.relation_depth -= 1
            exists = f"EXISTS (SELECT 1 FROM {target.table} AS {a} WHERE {' AND '.join(conds)})"
            out.append(exists if quantifier == "some" else f"NOT {exists}")
        return out

    def ops(self, col: Col, e: str, ops: dict[str, Any], at: P.At) -> list[str]:
        out = []
        conv, cast = _BINDS[col.kind]
        # a text's bound: refused past the column's longest value (schema.execute._convert)
        most = "" if col.chars is None else f":{col.chars}:{col.name}"
        for op, src in ops.items():
            if P.resolve(src, self.variables) is None:  # a null or absent operator: no condition
                continue
            if op == "isNull":
                out.append(
                    f"(CASE WHEN {self.bind(src, 'bool', at)}::boolean THEN {e} IS NULL"
                    f" ELSE {e} IS NOT NULL END)"
                )
            elif op in ("in", "notIn"):
                p = f"{self.bind(src, 'array:' + conv + most, at)}::{cast}[]"
                out.append(f"{e} = ANY({p})" if op == "in" else f"NOT ({e} = ANY({p}))")
            elif op in ("contains", "startsWith"):
                p = self.bind(src, ("like" if op == "contains" else "prefix") + most, at)
                out.append(f"{e} ILIKE {p}::text ESCAPE '/'")
            else:
                sign = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
                out.append(f"{e} {sign} {self.bind(src, conv + most, at)}::{cast}")
        return out

    def keyset(self, args: P.ConnArgs, t: str, src: P.Src, *, before: bool) -> str:
        """Rows strictly after (``before``: strictly before) the cursor's row."""
        cols = [f"{t}.{k.col.column}" for k in args.keys]
        binds = [_BINDS[k.col.kind] for k in args.keys]
        at = P.At("before" if before else "after", args.location)
        vals = [
            f"{self.bind(src, conv, at, (args.signature, i))}::{cast}"
            for i, (conv, cast) in enumerate(binds)
        ]
        if len({k.desc for k in args.keys}) == 1:
            forward = (not args.keys[0].desc) != before
            return f"({', '.join(cols)}) {'>' if forward else '<'} ({', '.join(vals)})"
        ors = []
        for i, k in enumerate(args.keys):
            forward = (not k.desc) != before
            eqs = [f"{cols[j]} = {vals[j]}" for j in range(i)]
            ors.append(" AND ".join([*eqs, f"{cols[i]} {'>' if forward else '<'} {vals[i]}"]))
        return "(" + " OR ".join(f"({o})" for o in ors) + ")"

    # --- nodes -------------------------------------------------------------------------
    def node(self, node: P.Node, src: str, path: tuple[str | None, ...]) -> str:
        def field(sel: P.Value | P.Join | P.Conn | P.Predict) -> str:
            if isinstance(sel, P.Value):
                return value(f"{src}.{sel.col.column}", sel.col.kind)
            if isinstance(sel, P.Join):
                rel, many = sel.rel, sel.rel.shape is Shape.LIST
                at = (*path, sel.key, None) if many else (*path, sel.key)
                return self.rows(sel.node, at, rel.remote, f"{src}.{rel.local}", many=many)
            if isinstance(sel, P.Conn):
                return self.conn(sel, src, (*path, sel.key))
            if isinstance(sel, P.Predict):
                self.sites.append(PredictionSite((*path, sel.key), sel))
                return self.predict(sel, src)
            assert_never(sel)

        return _fields(node.fields, field)

    def predict(self, sel: P.Predict, src: str) -> str:
        """The stored prediction (ml.stored: joined by key, used when its model version is
        the active one), else ``{"cdms:pending": id}``, computed after the statement."""
        from ml.stored import BY_KIND

        pending = f"json_build_object({lit(PENDING)}, {src}.id)"
        stored = BY_KIND.get(sel.prediction.kind)
        if stored is None or sel.prediction.model not in stored.models:
            return pending  # not stored: on request
        key = (src, stored.table)
        p = self.stored.get(key)
        if p is None:
            p = self.stored[key] = self.alias("p")
            self.joins.setdefault(src, []).append(
                f" LEFT JOIN {stored.table} AS {p} ON {p}.{stored.key} = {src}.id"
            )
        model = sel.prediction.model
        c = f"{p}.{model}_"
        active = (
            "(SELECT v.version FROM ml.model_version AS v"
            f" WHERE v.name = {lit(model)} AND v.active)"
        )
        shaped = _stored(sel.fields, c, model)
        current = f" AND {stored.current.format(p=p)}" if stored.current else ""
        return f"coalesce(CASE WHEN {c}version = {active}{current} THEN {shaped} END, {pending})"

    def rows(
        self, node: P.Node, path: tuple[str | None, ...], column: str, value: str | P.Src,
        *, many: bool = False, at: P.At | None = None,
    ) -> str:  # fmt: skip
        """``node`` of the row of its table whose ``column`` is ``value`` (SQL, or an id to
        bind, given at ``at``); ``many``: the JSON array of all such rows, in the entity's
        order."""
        target = node.entity
        t = self.alias("t")
        body = self.node(node, t, path)
        if many:
            keys = tuple(P.SortKey(target.by_column(c), d == "desc") for c, d in target.order)
            keys += tuple(P.SortKey(target.by_column(c), False) for c in target.key)
            body = f"coalesce(json_agg({body} ORDER BY {_order(keys, t)}), {_EMPTY})"
        if not isinstance(value, str):
            value = f"{self.bind(value, 'id', at or P.At('id', None))}::bigint"
        rows = f"{target.table} AS {t}{self.joined(t)}"
        return f"(SELECT {body} FROM {rows} WHERE {t}.{column} = {value})"

    # --- connections ---------------------------------------------------------------------
    def _where(self, args: P.ConnArgs, t: str, src: str | None, *, paged: bool = False) -> str:
        """`` WHERE`` the connection's rows hold (``paged``: past its cursors too), or ""."""
        conds = [] if args.within is None else [args.within.replace("{t}", t)]
        if args.parent is not None and src is not None:
            conds.append(f"{t}.{args.parent.remote} = {src}.{args.parent.local}")
        conds += self.filter(args.entity, t, args.filter, P.At("filter", args.location))
        if paged and args.page.after is not None:
            conds.append(self.keyset(args, t, args.page.after, before=False))
        if paged and args.page.before is not None:
            conds.append(self.keyset(args, t, args.page.before, before=True))
        return f" WHERE {' AND '.join(conds)}" if conds else ""

    def _stats(self, args: P.ConnArgs, src: str | None, cols: str) -> str:
        t = self.alias("t")
        where = self._where(args, t, src)
        return f"(SELECT {cols.replace('{t}', t)} FROM {args.entity.table} AS {t}{where})"

    def aggregate(self, sel: P.Aggregate, args: P.ConnArgs, src: str | None) -> str:
        def part(f: P.Leaf | P.AggPart) -> str:
            if isinstance(f, P.Leaf):  # count
                return "count(*)"
            fn, avg = f.fn, Kind.DECIMAL if f.fn == "avg" else None
            return _fields(
                f.fields, lambda v: value(f"{fn}({{t}}.{v.col.column})", avg or v.col.kind)
            )

        return self._stats(args, src, _fields(sel.fields, part))

    def conn(self, sel: P.Conn, src: str | None, path: tuple[str | None, ...]) -> str:
        args = sel.args
        paged = any(isinstance(f, P.Edges | P.PageInfo) for f in sel.fields)
        x = self.alias("x") if paged else ""
        n = str(args.page.size)

        def field(f: P.Leaf | P.Aggregate | P.Edges | P.PageInfo) -> str:
            if isinstance(f, P.Leaf):  # totalCount
                return self._stats(args, src, "count(*)")
            if isinstance(f, P.Aggregate):
                return self.aggregate(f, args, src)
            if isinstance(f, P.Edges):
                return self.edges(f, args, x, n, (*path, f.key, None))
            if isinstance(f, P.PageInfo):
                return self.page_info(f, args, x, n)
            assert_never(f)

        body = _fields(sel.fields, field)
        if not paged:
            for name, given in (("after", args.page.after), ("before", args.page.before)):
                if given is not None:  # still a cursor of this ordering, or BAD_USER_INPUT
                    at = P.At(name, args.location)
                    self.checks.append(Param(given, "text", at, (args.signature, 0)))
            return body
        t = self.alias("t")
        order = _order(args.keys, t, reverse=args.page.backward)
        where = self._where(args, t, src, paged=True)
        rows = (
            f"(SELECT {t}.*, row_number() OVER (ORDER BY {order}) AS __rn"
            f" FROM {args.entity.table} AS {t}{where} ORDER BY {order} LIMIT {args.page.size + 1})"
        )
        return f"(SELECT {body} FROM {rows} AS {x}{self.joined(x)})"

    def edges(
        self, sel: P.Edges, args: P.ConnArgs, x: str, n: str, path: tuple[str | None, ...]
    ) -> str:
        def sql(f: P.Leaf | P.EdgeNode) -> str:  # a Leaf: the cursor
            return (
                cursor(args, x) if isinstance(f, P.Leaf) else self.node(f.node, x, (*path, f.key))
            )

        shown = f"{x}.__rn {'DESC' if args.page.backward else 'ASC'}"
        return (
            f"coalesce(json_agg({_fields(sel.fields, sql)} ORDER BY {shown})"
            f" FILTER (WHERE {x}.__rn <= {n}),"
            f" {_EMPTY})"
        )

    def page_info(self, sel: P.PageInfo, args: P.ConnArgs, x: str, n: str) -> str:
        more = f"count(*) > {n}"
        backward = args.page.backward

        def end(last: bool) -> str:
            direction = "DESC" if last != backward else "ASC"
            return (
                f"(array_agg({cursor(args, x)} ORDER BY {x}.__rn {direction})"
                f" FILTER (WHERE {x}.__rn <= {n}))[1]"
            )

        after, before = (
            "false" if s is None else "true" for s in (args.page.after, args.page.before)
        )
        sql = {
            "hasNextPage": before if backward else more,
            "hasPreviousPage": more if backward else after,
            "startCursor": end(last=False),
            "endCursor": end(last=True),
        }
        return _fields(sel.fields, lambda f: sql[f.name])


def _fields(fields: Iterable[Any], sql: Callable[[Any], str]) -> str:
    """The JSON object of the selected ``fields`` by response key, in order: ``__typename``
    its constant, any other field ``sql(field)``."""
    return obj([(f.key, lit(f.value) if isinstance(f, P.Const) else sql(f)) for f in fields])


def _stored(fields: tuple[P.PredSel, ...], c: str, model: str) -> str:
    """A stored prediction shaped by its selection (``c``: the model's column prefix):
    the usual selections are the stored JSON, others are built from the columns."""
    names = tuple((f.key, f.name) for f in fields)
    if names in ((("label", "label"), ("probability", "probability")), (("value", "value"),)):
        return f"{c}doc"
    pairs: list[tuple[str, str]] = []
    for f in fields:
        if f.name == "__typename":
            pairs.append((f.key, lit(f.typename)))
        elif f.name == "label":
            pairs.append((f.key, f"{c}label"))
        elif f.name in ("probability", "value"):
            pairs.append((f.key, f"({c}{f.name})::float8"))
        elif f.name == "model":
            model_pairs = [
                (m.key, lit(m.typename) if m.name == "__typename"
                 else lit(model) if m.name == "name" else f"{c}version")
                for m in f.fields
            ]  # fmt: skip
            pairs.append((f.key, obj(model_pairs)))
        else:  # probabilities
            row = obj([
                (m.key, lit(m.typename) if m.name == "__typename" else f"e.v->{lit(m.name)}")
                for m in f.fields
            ])  # fmt: skip
            pairs.append(
                (f.key, f"(SELECT json_agg({row} ORDER BY e.i) FROM json_array_elements("
                        f"{c}probabilities) WITH ORDINALITY AS e(v, i))")
            )  # fmt: skip
    return obj(pairs)


def statement(roots: list[P.RootSel], variables: dict[str, Any]) -> Statement:
    """``SELECT <data json> AS data``: one row, one column, with its parameters."""
    b = _Builder(variables)

    def root(sel: P.ById | P.Conn) -> str:
        if isinstance(sel, P.ById):
            return b.rows(sel.node, (sel.key,), "id", sel.id, at=P.At("id", sel.location))
        if isinstance(sel, P.Conn):
            return b.conn(sel, None, (sel.key,))
        assert_never(sel)

    data = _fields(roots, root)
    if len(b.params) > MAX_PARAMS:
        raise QueryTooComplexError(
            f"the query binds {len(b.params)} values (filter values, cursors, ids), more than"
            f" {MAX_PARAMS}: send fewer, or one `in` list instead of an `or` of equalities",
            limit=MAX_PARAMS,
        )
    return Statement(f"SELECT {data} AS data", b.params, b.sites, b.checks)
