"""The GraphQL types of the catalog's entities, generated from schema/catalog.py: object
types, connections, edges, aggregates, the filter and orderBy inputs, the operator
filters, and the query roots.

Reads never run these types' resolvers field by field when a query is purely relational
(schema/execute.py answers it with one statement). Under Strawberry execution (a mutation,
a subscription, a query mixing relational and resolver roots) a relational field is read
by the same statement compiler, and every field of these types takes its value out of that
statement's JSON by its response key (so aliases and arguments work as written).
"""

from __future__ import annotations

import datetime as dt
import inspect
import keyword
import sys
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import strawberry
from strawberry import UNSET

from db.errors import snake
from schema.catalog import ENTITIES, Col, Entity, Kind, Prediction, Rel, Shape
from schema.enums import SortDirection
from schema.execute import read_field
from schema.predictions import Failed

CONN = Shape.CONNECTION
_NS = sys.modules[__name__].__dict__

_PY: dict[Kind, Any] = {
    Kind.ID: strawberry.ID,
    Kind.INT: int,
    Kind.FLOAT: float,
    Kind.STRING: str,
    Kind.MONEY: Decimal,
    Kind.DECIMAL: Decimal,
    Kind.DATETIME: dt.datetime,
    Kind.DATE: dt.date,
}
_FILTER_NAME = {
    Kind.ID: "IDFilter",
    Kind.INT: "IntFilter",
    Kind.MONEY: "DecimalFilter",
    Kind.DECIMAL: "DecimalFilter",
    Kind.DATETIME: "DatetimeFilter",
    Kind.STRING: "StringFilter",
}
_ORDERED_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")


def _py(col: Col) -> Any:
    return col.enum if col.kind is Kind.ENUM else _PY[col.kind]


def _signed(resolve: Any, returns: Any, args: tuple[tuple[str, Any], ...]) -> Any:
    """``resolve`` with ``args`` as its GraphQL arguments (all optional but ``id``)."""
    params = [
        inspect.Parameter("root", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter(
            "info", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=strawberry.Info
        ),
        *(
            inspect.Parameter(
                n, inspect.Parameter.KEYWORD_ONLY, annotation=a,
                **({} if n == "id" else {"default": None}),
            )
            for n, a in args
        ),
    ]  # fmt: skip
    resolve.__signature__ = inspect.Signature(params, return_annotation=returns)
    resolve.__annotations__ = {
        **{p.name: p.annotation for p in params if p.annotation is not inspect.Parameter.empty},
        "return": returns,
    }
    resolve.__module__ = __name__
    return resolve


def _field(
    name: str, returns: Any, doc: str | None = None, args: Any = (), enum_type: Any = None
) -> Any:
    """A field whose value is in its parent's JSON, by response key (an enum's JSON is the
    member's name)."""

    def resolve(root: Any, info: strawberry.Info, **kwargs: Any) -> Any:
        value = root[info.path.key]
        if isinstance(value, Failed):
            raise value.error
        return value if enum_type is None or value is None else enum_type[value]

    return strawberry.field(name=name, description=doc, resolver=_signed(resolve, returns, args))


def _make(name: str, attrs: dict[str, Any], doc: str | None, *, input: bool = False) -> Any:
    cls = type(name, (), {"__module__": __name__, **attrs})
    made = (strawberry.input if input else strawberry.type)(cls, description=doc)
    _NS[name] = made
    return made


# --- inputs --------------------------------------------------------------------------------


def _input(name: str, doc: str, fields: Iterable[tuple[str, Any, str | None]]) -> None:
    """An input type of optional ``fields``: (GraphQL name, annotation, description)."""
    ann: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    for gname, typ, about in fields:
        py = snake(gname) + ("_" if keyword.iskeyword(snake(gname)) else "")  # in_, and_...
        ann[py] = typ
        attrs[py] = strawberry.field(default=UNSET, name=gname, description=about)
    _make(name, {"__annotations__": ann, **attrs}, doc, input=True)


def _operator_filter(name: str, value: Any, kind: str) -> None:
    names = list(_ORDERED_OPS) if kind == "ordered" else ["eq", "ne"]
    names += ["in", "notIn", "isNull"] + (["contains", "startsWith"] if kind == "text" else [])
    types = {"isNull": bool, "in": list[value], "notIn": list[value]}
    doc = {
        "ordered": "Comparison operators on an ordered value.",
        "enum": "Comparison operators on an enum value.",
        "text": "Operators on text; contains/startsWith are case-insensitive (% and _ literal).",
    }[kind]
    _input(name, doc, [(op, types.get(op, value) | None, None) for op in names])


def _filter_type(col: Col) -> str:
    if col.kind is Kind.ENUM:
        assert col.enum is not None
        return f"{col.enum.__name__}EnumFilter"
    return _FILTER_NAME[col.kind]


def _entity_filter(e: Entity) -> None:
    cols = [c for c in e.cols.values() if c.filter]
    rels = [r for r in e.rels.values() if r.filter]
    fields: list[tuple[str, Any, str | None]] = [
        *((c.name, f"{_filter_type(c)} | None", None) for c in cols),
        *((r.name, f"{r.target}RelationFilter | None", None) for r in rels),
        ("and", f"list[{e.name}Filter] | None", "All of these hold."),
        ("or", f"list[{e.name}Filter] | None", "At least one holds."),
        ("not", f"{e.name}Filter | None", "This does not hold."),
    ]
    relations = "relation" if len(rels) == 1 else "relations"
    doc = e.filter_doc or (
        f"Filter on {e.plural}. Indexed fields only: {', '.join(c.name for c in cols)}; "
        f"{relations} {', '.join(r.name for r in rels)}."
    )
    _input(f"{e.name}Filter", doc, fields)


def _relation_filter(target: str) -> None:
    typ = f"{target}Filter | None"
    fields = [("some", typ, "At least one related row matches."),
              ("none", typ, "No related row matches.")]  # fmt: skip
    _input(f"{target}RelationFilter", "Relation filter (EXISTS / NOT EXISTS).", fields)


def _order_by(e: Entity) -> None:
    cols = [c for c in e.cols.values() if c.sort]
    doc = (
        f"Sortable (indexed): {', '.join(c.name for c in cols)}. Exactly one field per item; "
        "id is appended as the tie-breaker."
    )
    _input(f"{e.name}OrderBy", doc, [(c.name, "SortDirection | None", None) for c in cols])


def _connection_args(target: str) -> tuple[tuple[str, Any], ...]:
    filter_type: Any = _NS[f"{target}Filter"]
    order_type: Any = _NS[f"{target}OrderBy"]
    return (
        ("filter", filter_type | None),
        ("order_by", list[order_type] | None),
        ("first", int | None),
        ("after", str | None),
        ("last", int | None),
        ("before", str | None),
    )


# --- objects -------------------------------------------------------------------------------


def _object(e: Entity) -> None:
    attrs: dict[str, Any] = {}
    for f in e.fields:
        py = snake(f.name)
        if isinstance(f, Col):
            typ = _py(f) if not f.null else _py(f) | None
            attrs[py] = _field(f.name, typ, f.doc, enum_type=f.enum)
        elif isinstance(f, Prediction):
            attrs[py] = _field(f.name, f"{f.result} | None", f.doc)
        elif isinstance(f, Rel):
            attrs[py] = _relation(f)
    _make(e.name, attrs, e.doc)


def _relation(r: Rel) -> Any:
    if r.shape is Shape.CONNECTION:
        return _field(r.name, f"{r.target}Connection", r.doc, _connection_args(r.target))
    if r.shape is Shape.LIST:
        return _field(r.name, f"list[{r.target}]", r.doc)
    return _field(r.name, f"{r.target} | None" if r.null else r.target, r.doc)


def _connection(e: Entity) -> None:
    _make(f"{e.name}Edge", {"cursor": _field("cursor", str), "node": _field("node", e.name)}, None)
    sums = [c for c in e.cols.values() if c.sum]
    minmax = [c for c in e.cols.values() if c.minmax]
    agg: dict[str, Any] = {"count": _field("count", int)}
    for part, fns, cols, typ in (
        ("Sums", ("sum",), sums, _py),
        ("Averages", ("avg",), sums, lambda c: Decimal),
        ("MinMax", ("min", "max"), minmax, _py),
    ):
        if cols:
            fields = {snake(c.name): _field(c.name, typ(c) | None) for c in cols}
            _make(f"{e.name}{part}", fields, None)
            agg.update({fn: _field(fn, f"{e.name}{part}") for fn in fns})
    _make(f"{e.name}Aggregate", agg, f"Aggregates over the filtered {e.plural} (paging ignored).")
    total = _field("totalCount", int, "Number of rows matching the filter (ignores paging).")
    fields = {
        "edges": _field("edges", f"list[{e.name}Edge]"),
        "page_info": _field("pageInfo", "PageInfo"),
        "total_count": total,
        "aggregate": _field("aggregate", f"{e.name}Aggregate"),
    }
    _make(f"{e.name}Connection", fields, None)


def _root(name: str, e: Entity, connection: bool) -> Any:
    """A query root, resolved by the statement compiler (schema.execute.read_field)."""

    async def resolve(root: Any, info: strawberry.Info, **kwargs: Any) -> Any:
        return await read_field(info)

    returns: Any
    if connection:
        args = _connection_args(e.name)
        returns = _NS[f"{e.name}Connection"]
        doc = f"{e.name}s matching the filter, one page at a time."
    else:
        args = (("id", strawberry.ID),)
        returns = _NS[e.name] | None
        doc = f"The {e.name} with this id, or null if there is none."
    return strawberry.field(name=name, description=doc, resolver=_signed(resolve, returns, args))


def _generate() -> Any:
    @strawberry.type(description="Relay page information.")
    class PageInfo:
        has_next_page: bool = _field("hasNextPage", bool)
        has_previous_page: bool = _field("hasPreviousPage", bool)
        start_cursor: str | None = _field("startCursor", str | None)
        end_cursor: str | None = _field("endCursor", str | None)

    _NS["PageInfo"] = PageInfo
    _NS["SortDirection"] = SortDirection
    for kind in (Kind.ID, Kind.INT, Kind.MONEY, Kind.DATETIME):
        _operator_filter(_FILTER_NAME[kind], _PY[kind], "ordered")
    _operator_filter("StringFilter", str, "text")
    filtered = [e for e in ENTITIES.values() if any(c.filter for c in e.cols.values())]
    for enum_type in {c.enum for e in filtered for c in e.cols.values() if c.filter and c.enum}:
        assert enum_type is not None
        _operator_filter(f"{enum_type.__name__}EnumFilter", enum_type, "enum")
    for e in filtered:
        _entity_filter(e)
    for target in {r.target for e in ENTITIES.values() for r in e.rels.values() if r.filter}:
        _relation_filter(target)
    nested = {r.target for e in ENTITIES.values() for r in e.rels.values() if r.shape is CONN}
    paged = nested | {e.name for e in ENTITIES.values() if e.connection}
    for name in paged:
        _order_by(ENTITIES[name])
    from schema import predictions

    _NS["StatusPrediction"] = predictions.StatusPrediction
    _NS["ValuePrediction"] = predictions.ValuePrediction
    _NS.update(
        {c.enum.__name__: c.enum for e in ENTITIES.values() for c in e.cols.values() if c.enum}
    )
    for e in ENTITIES.values():
        _object(e)
    for name in paged:
        _connection(ENTITIES[name])
    roots: dict[str, Any] = {}
    for e in ENTITIES.values():
        if e.by_id:
            roots[e.by_id] = _root(e.by_id, e, connection=False)
        if e.connection:
            roots[e.connection] = _root(e.connection, e, connection=True)
    return type("EntityQueries", (), {"__module__": __name__, **roots})


EntityQueries = strawberry.type(_generate())
