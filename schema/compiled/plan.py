"""A validated query operation → a small tree of compiled selections.

The walk uses graphql-core's own field collection (fragments, inline fragments,
``@include``/``@skip``, merging of equal response keys) and Strawberry's own argument
conversion, then the same validation functions as the resolvers (``page_args``,
``ConnQuery.build`` → cursors and orderBy, ``parse_id``), so the compiled path accepts
exactly what the Strawberry path accepts. Anything the compiler does not know (a field
without a catalog column, a mutation, ``@defer``, introspection) raises
:class:`NotCompilable` and the operation runs on the Strawberry path instead; a
``CdmsError`` from validation does the same, so bad input gets the Strawberry path's
errors, byte for byte.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values
from strawberry.types.arguments import convert_arguments

from schema import catalog
from schema.catalog import Entity, Relation
from schema.context import ApiLimits
from schema.relay import ConnQuery, page_args

Fmt = Literal["id", "int", "text", "enum", "decimal", "decimal2", "datetime", "date", "bool"]

# json_build_object takes at most 100 arguments (50 keys)
MAX_KEYS = 50

# lists that are not catalog relations (Order.statusHistory reads the audit table)
EXTRA_LISTS: Mapping[tuple[str, str], Relation] = {
    ("Order", "status_history"): Relation(
        "status_history", "OrderStatusChange", "id", "order_id", many=True
    ),
}


# prediction fields (ml): (entity, field) -> (object kind, model name)
PREDICTION_FIELDS: Mapping[tuple[str, str], tuple[str, str]] = {
    ("Order", "predicted_status"): ("order", "order_status"),
    ("Order", "predicted_total"): ("order", "order_value"),
    ("SupportTicket", "predicted_status"): ("ticket", "support_status"),
    ("Customer", "expected_order_value"): ("customer", "order_value"),
}


class NotCompilable(Exception):
    """The operation uses something the compiled path does not cover."""


# --- the plan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    """``__typename``: a constant string."""

    key: str
    value: str


@dataclass(frozen=True)
class Value:
    """A scalar column of the current row, formatted as its GraphQL type serializes."""

    key: str
    column: str
    fmt: Fmt


@dataclass(frozen=True)
class Node:
    entity: Entity
    fields: tuple[NodeSel, ...]


@dataclass(frozen=True)
class One:
    """A to-one relation (null when the key is null or the row is missing)."""

    key: str
    relation: Relation
    node: Node


@dataclass(frozen=True)
class Many:
    """A plain list relation (``Order.items``), in the entity's default order."""

    key: str
    relation: Relation
    node: Node


@dataclass(frozen=True)
class Cursor:
    key: str


@dataclass(frozen=True)
class EdgeNode:
    key: str
    node: Node


@dataclass(frozen=True)
class Edges:
    key: str
    fields: tuple[Const | Cursor | EdgeNode, ...]


PageField = Literal["has_next_page", "has_previous_page", "start_cursor", "end_cursor"]


@dataclass(frozen=True)
class PageInfoField:
    key: str
    which: PageField


@dataclass(frozen=True)
class PageInfo:
    key: str
    fields: tuple[Const | PageInfoField, ...]


@dataclass(frozen=True)
class TotalCount:
    key: str


AggFn = Literal["sum", "avg", "min", "max"]


@dataclass(frozen=True)
class AggValue:
    key: str
    column: str
    fmt: Fmt


@dataclass(frozen=True)
class AggPart:
    key: str
    fn: AggFn
    fields: tuple[Const | AggValue, ...]


@dataclass(frozen=True)
class Count:
    key: str


@dataclass(frozen=True)
class Aggregate:
    key: str
    fields: tuple[Const | Count | AggPart, ...]


@dataclass(frozen=True)
class Conn:
    key: str
    query: ConnQuery
    fields: tuple[Const | Edges | PageInfo | TotalCount | Aggregate, ...]


@dataclass(frozen=True)
class ById:
    key: str
    entity: Entity
    id: int
    node: Node


@dataclass(frozen=True)
class Predict:
    """A prediction field (``Order.predictedStatus``, ...): the statement yields the object's
    id; :mod:`schema.compiled.predictions` fills in the prediction after it runs."""

    key: str
    kind: str  # ml.batch.KINDS: "order", "ticket", "customer"
    model: str  # the model spec's name
    fields: tuple[Any, ...]  # the sub-selection (schema.compiled.predictions.Sel)
    nodes: tuple[FieldNode, ...]  # the field's nodes (locations of its errors)


NodeSel = Const | Value | One | Many | Conn | Predict
RootSel = Const | ById | Conn


@dataclass(frozen=True)
class Operation:
    fields: tuple[RootSel, ...]


# --- the walk -----------------------------------------------------------------------------


@dataclass
class _Walk:
    gschema: GraphQLSchema
    sschema: strawberry.Schema
    fragments: dict[str, FragmentDetails]
    variables: VariableValues
    operation: OperationDefinitionNode
    limits: ApiLimits

    def subfields(
        self, parent: GraphQLObjectType, details: list[FieldDetails]
    ) -> dict[str, list[FieldDetails]]:
        collected = collect_subfields(
            self.gschema, self.fragments, self.variables, self.operation, parent, details
        )
        if collected.new_defer_usages:
            raise NotCompilable("@defer")
        return collected.grouped_field_set

    def kwargs(self, gfield: GraphQLField, detail: FieldDetails) -> dict[str, Any]:
        raw = get_argument_values(
            gfield, detail.node, self.variables, detail.fragment_variable_values
        )
        sfield = _strawberry_field(gfield)
        return convert_arguments(
            raw,
            sfield.arguments,
            scalar_registry=self.sschema.schema_converter.scalar_registry,
            config=self.sschema.config,
        )

    # root
    def root(self) -> Operation:
        if self.operation.operation is not OperationType.QUERY:
            raise NotCompilable("only queries are compiled")
        qtype = self.gschema.query_type
        assert qtype is not None
        collected = collect_fields(
            self.gschema, self.fragments, self.variables, qtype, self.operation
        )
        if collected.new_defer_usages:
            raise NotCompilable("@defer")
        out: list[RootSel] = []
        for key, details in collected.grouped_field_set.items():
            name = details[0].node.name.value
            if name == "__typename":
                out.append(Const(key, qtype.name))
                continue
            gfield = _field(qtype, name)
            target = _named(gfield.type)
            if not isinstance(target, GraphQLObjectType):
                raise NotCompilable(name)
            if target.name.endswith("Connection"):
                out.append(self.connection(key, gfield, details, None))
            elif target.name in catalog.ENTITIES and "id" in gfield.args:
                from schema.filters import parse_id

                kw = self.kwargs(gfield, details[0])
                ent = catalog.ENTITIES[target.name]
                out.append(ById(key, ent, parse_id(kw["id"]), self.node(ent, target, details)))
            else:
                raise NotCompilable(name)
        return Operation(_check_keys(tuple(out)))

    def node(self, ent: Entity, gtype: GraphQLObjectType, details: list[FieldDetails]) -> Node:
        out: list[NodeSel] = []
        for key, sub in self.subfields(gtype, details).items():
            name = sub[0].node.name.value
            if name == "__typename":
                out.append(Const(key, gtype.name))
                continue
            gfield = _field(gtype, name)
            py = _strawberry_field(gfield).python_name
            target = _named(gfield.type)
            if py in ent.fields:
                out.append(Value(key, ent.fields[py].column, _fmt(gfield, ent, ent.fields[py])))
                continue
            if (ent.name, py) in PREDICTION_FIELDS:
                from schema.compiled import predictions

                out.append(predictions.plan_field(self, ent, py, key, target, sub))
                continue
            rel = ent.relations.get(py) or EXTRA_LISTS.get((ent.name, py))
            if rel is None or not isinstance(target, GraphQLObjectType):
                raise NotCompilable(f"{gtype.name}.{name}")
            if target.name.endswith("Connection"):
                out.append(self.connection(key, gfield, sub, rel))
                continue
            tent = catalog.ENTITIES.get(target.name)
            if tent is None or tent.name != rel.target:
                raise NotCompilable(f"{gtype.name}.{name}")
            node = self.node(tent, target, sub)
            out.append(Many(key, rel, node) if _is_list(gfield) else One(key, rel, node))
        return Node(ent, _check_keys(tuple(out)))

    def connection(
        self,
        key: str,
        gfield: GraphQLField,
        details: list[FieldDetails],
        parent: Relation | None,
    ) -> Conn:
        ctype = _named(gfield.type)
        assert isinstance(ctype, GraphQLObjectType)
        kw = self.kwargs(gfield, details[0])
        page = page_args(
            self.limits, kw.get("first"), kw.get("after"), kw.get("last"), kw.get("before")
        )
        etype = _object(_field(ctype, "edges"))
        ntype = _object(_field(etype, "node"))
        ent = catalog.ENTITIES.get(ntype.name)
        if ent is None:
            raise NotCompilable(ntype.name)
        query = ConnQuery.build(ent, parent, kw.get("filter"), kw.get("order_by"), page)
        out: list[Const | Edges | PageInfo | TotalCount | Aggregate] = []
        for k, sub in self.subfields(ctype, details).items():
            name = sub[0].node.name.value
            if name == "__typename":
                out.append(Const(k, ctype.name))
            elif name == "totalCount":
                out.append(TotalCount(k))
            elif name == "edges":
                out.append(self.edges(k, etype, ntype, ent, sub))
            elif name == "pageInfo":
                out.append(self.page_info(k, _object(_field(ctype, name)), sub))
            elif name == "aggregate":
                out.append(self.aggregate(k, ent, _object(_field(ctype, name)), sub))
            else:
                raise NotCompilable(f"{ctype.name}.{name}")
        return Conn(key, query, _check_keys(tuple(out)))

    def edges(
        self,
        key: str,
        etype: GraphQLObjectType,
        ntype: GraphQLObjectType,
        ent: Entity,
        details: list[FieldDetails],
    ) -> Edges:
        out: list[Const | Cursor | EdgeNode] = []
        for k, sub in self.subfields(etype, details).items():
            name = sub[0].node.name.value
            if name == "__typename":
                out.append(Const(k, etype.name))
            elif name == "cursor":
                out.append(Cursor(k))
            elif name == "node":
                out.append(EdgeNode(k, self.node(ent, ntype, sub)))
            else:
                raise NotCompilable(f"{etype.name}.{name}")
        return Edges(key, _check_keys(tuple(out)))

    def page_info(
        self, key: str, ptype: GraphQLObjectType, details: list[FieldDetails]
    ) -> PageInfo:
        names: dict[str, PageField] = {
            "hasNextPage": "has_next_page",
            "hasPreviousPage": "has_previous_page",
            "startCursor": "start_cursor",
            "endCursor": "end_cursor",
        }
        out: list[Const | PageInfoField] = []
        for k, sub in self.subfields(ptype, details).items():
            name = sub[0].node.name.value
            if name == "__typename":
                out.append(Const(k, ptype.name))
            elif name in names:
                out.append(PageInfoField(k, names[name]))
            else:
                raise NotCompilable(f"PageInfo.{name}")
        return PageInfo(key, _check_keys(tuple(out)))

    def aggregate(
        self, key: str, ent: Entity, atype: GraphQLObjectType, details: list[FieldDetails]
    ) -> Aggregate:
        out: list[Const | Count | AggPart] = []
        for k, sub in self.subfields(atype, details).items():
            name = sub[0].node.name.value
            if name == "__typename":
                out.append(Const(k, atype.name))
            elif name == "count":
                out.append(Count(k))
            elif name in ("sum", "avg", "min", "max"):
                ptype = _object(_field(atype, name))
                allowed = ent.sum_fields if name in ("sum", "avg") else ent.min_max_fields
                parts: list[Const | AggValue] = []
                for pk, psub in self.subfields(ptype, sub).items():
                    pname = psub[0].node.name.value
                    if pname == "__typename":
                        parts.append(Const(pk, ptype.name))
                        continue
                    gfield = _field(ptype, pname)
                    py = _strawberry_field(gfield).python_name
                    if py not in allowed:
                        raise NotCompilable(f"{ptype.name}.{pname}")
                    f = ent.fields[py]
                    fmt = _fmt(gfield, ent, f)
                    if fmt == "decimal2" and name == "avg":
                        fmt = "decimal"  # an average has more digits: round like Python
                    parts.append(AggValue(pk, f.column, fmt))
                fn: AggFn = name  # type: ignore[assignment]
                out.append(AggPart(k, fn, _check_keys(tuple(parts))))
            else:
                raise NotCompilable(f"{atype.name}.{name}")
        return Aggregate(key, _check_keys(tuple(out)))


def build(
    sschema: strawberry.Schema,
    document: Any,
    operation: OperationDefinitionNode,
    variables: VariableValues,
    limits: ApiLimits,
) -> Operation:
    """The plan of ``operation`` (a validated query of ``document``) with ``variables``.

    Raises :class:`NotCompilable`, or the ``CdmsError`` the Strawberry path would raise.
    """
    fragments = {
        d.name.value: FragmentDetails(d)
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    walk = _Walk(sschema._schema, sschema, fragments, variables, operation, limits)
    return walk.root()


# --- helpers ------------------------------------------------------------------------------


def _check_keys(items: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(items) > MAX_KEYS:
        raise NotCompilable("too many fields in one object")
    return items


def _strawberry_field(gfield: GraphQLField) -> Any:
    sfield = (gfield.extensions or {}).get("strawberry-definition")
    if sfield is None:
        raise NotCompilable("not a Strawberry field")
    return sfield


def _field(parent: GraphQLObjectType, name: str) -> GraphQLField:
    gfield: GraphQLField | None = parent.fields.get(name)
    if gfield is None:
        raise NotCompilable(f"{parent.name}.{name}")
    return gfield


def _named(t: Any) -> Any:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return t


def _is_list(gfield: GraphQLField) -> bool:
    t = gfield.type
    if isinstance(t, GraphQLNonNull):
        t = t.of_type
    return isinstance(t, GraphQLList)


def _object(gfield: GraphQLField) -> GraphQLObjectType:
    t = _named(gfield.type)
    if not isinstance(t, GraphQLObjectType):
        raise NotCompilable(str(t))
    return t


_SCALAR_FMT: dict[str, Fmt] = {
    "ID": "id",
    "Int": "int",
    "String": "text",
    "Boolean": "bool",
    "DateTime": "datetime",
    "Date": "date",
    "Decimal": "decimal",
}


def _fmt(gfield: GraphQLField, ent: Entity, f: catalog.Field) -> Fmt:
    """How the column is serialized: by the GraphQL type of the field."""
    if _is_list(gfield):
        raise NotCompilable("list of scalars")
    t = _named(gfield.type)
    if isinstance(t, GraphQLEnumType):
        if f.enum is None or not _upper_named(f.enum):
            raise NotCompilable(t.name)
        return "enum"
    if not isinstance(t, GraphQLScalarType) or t.name not in _SCALAR_FMT:
        raise NotCompilable(str(t))
    fmt = _SCALAR_FMT[t.name]
    if fmt == "decimal" and getattr(ent.table.c[f.column].type, "scale", None) == 2:
        return "decimal2"  # the column's text is already what Python prints
    return fmt


def _upper_named(enum_cls: type[enum.Enum]) -> bool:
    return all(m.name == str(m.value).upper() for m in enum_cls)
