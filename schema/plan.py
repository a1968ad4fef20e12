"""A validated operation's relational fields → a plan: which rows, which fields, which
values (schema/sql.py turns it into ONE statement).

The walk uses graphql-core's own field collection (fragments, inline fragments,
``@include``/``@skip``, merging of equal response keys) over the schema's SDL and the
catalog (schema/catalog.py): every type the planner meets is an entity of the catalog, a
connection, an edge, an aggregate or a prediction.

Values keep their source: a literal of the document (``Lit``) or a path into a variable
(``Var``), so that GraphQL variables become SQL parameters and a plan serves every
request whose variables have the same structure. What the SQL text itself depends on —
page sizes, orderBy, @include/@skip — is read through :meth:`Planner.concrete`, which
records the variable paths it read: the plan cache keys on their values too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SourceLocation,
    ValueNode,
    VariableNode,
    get_location,
    get_named_type,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values

from db.errors import BadUserInputError, CdmsError
from schema.catalog import ENTITIES, ROOTS, Col, Entity, Prediction, Rel, Shape
from schema.context import ApiLimits

T = TypeVar("T")

# --- where values come from ---------------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    """A value written in the document (already coerced by graphql-core)."""

    value: Any


@dataclass(frozen=True)
class Var:
    """A value of the request's variables: ``variables[name][path...]``."""

    name: str
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class Items:
    """A list written in the document whose items come from different sources."""

    items: tuple[Src, ...]


Src = Lit | Var | Items


@dataclass(frozen=True)
class At:
    """The argument a value was given in and its field's place in the document (what an
    error's ``locations`` tells): a statement's parameter keeps these, not the document's
    nodes (a cached statement serves every request of the same query text, whose places
    are the same)."""

    arg: str
    location: SourceLocation | None


def place(node: FieldNode) -> SourceLocation | None:
    """Where ``node`` starts in its document (None for a node built without one)."""
    return None if node.loc is None else get_location(node.loc.source, node.loc.start)


class FieldError(CdmsError):
    """A field's arguments are refused (page caps, orderBy, a cursor, an id, a filter's
    value): the error, at its field's ``location``."""

    def __init__(self, error: CdmsError, location: SourceLocation | None) -> None:
        super().__init__(error.message, **error.fields)
        self.code = error.code  # type: ignore[misc]  # the refusal's own code
        self.error = error
        self.location = location


def value_at(variables: Mapping[str, Any], var: Var) -> Any:
    value: Any = variables.get(var.name)
    for step in var.path:
        value = value[step]
    return value


def resolve(src: Any, variables: Mapping[str, Any]) -> Any:
    """A source's value in these (coerced) variables; anything else as it is."""
    if isinstance(src, Lit):
        return src.value
    if isinstance(src, Var):
        return value_at(variables, src)
    return [resolve(s, variables) for s in src.items] if isinstance(src, Items) else src


# --- the plan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    """``__typename`` (or another constant string)."""

    key: str
    value: str


@dataclass(frozen=True)
class Leaf:
    """A field the statement computes by its name: an edge's ``cursor``, ``totalCount``, an
    aggregate's ``count``, a field of ``pageInfo``."""

    key: str
    name: str


@dataclass(frozen=True)
class Value:
    """A column of the row (in an aggregate's part: the column the function reads)."""

    key: str
    col: Col


@dataclass(frozen=True)
class Predict:
    """A prediction field: the statement yields the stored prediction or a marker, which
    schema/predictions.py replaces after the statement ran."""

    key: str
    prediction: Prediction
    fields: tuple[PredSel, ...]


@dataclass(frozen=True)
class PredSel:
    """One field of a prediction's selection (``model``/``probabilities`` have fields)."""

    key: str
    name: str
    typename: str
    fields: tuple[PredSel, ...] = ()


@dataclass(frozen=True)
class Node:
    entity: Entity
    fields: tuple[NodeSel, ...]


@dataclass(frozen=True)
class Join:
    """A related row (``rel.shape`` ONE) or list of rows (LIST)."""

    key: str
    rel: Rel
    node: Node


@dataclass(frozen=True)
class SortKey:
    col: Col
    desc: bool


@dataclass(frozen=True)
class Page:
    size: int
    backward: bool
    after: Src | None
    before: Src | None


@dataclass(frozen=True)
class ConnArgs:
    entity: Entity
    parent: Rel | None
    filter: Any  # the filter tree, leaves Src (schema/sql.py compiles it)
    keys: tuple[SortKey, ...]
    page: Page
    # a further condition on the rows, over the table alias ``{t}`` (a cube cell's drill:
    # ``{t}.id IN (<the cell's order ids>)``, whose values are the statement's extra params)
    within: str | None = None
    location: SourceLocation | None = None  # the connection's field in the document

    @property
    def signature(self) -> str:
        """Which ordering a cursor belongs to."""
        return ",".join(f"{k.col.name}:{'desc' if k.desc else 'asc'}" for k in self.keys)


@dataclass(frozen=True)
class Edges:
    key: str
    fields: tuple[Const | Leaf | EdgeNode, ...]


@dataclass(frozen=True)
class EdgeNode:
    key: str
    node: Node


@dataclass(frozen=True)
class PageInfo:
    key: str
    fields: tuple[Const | Leaf, ...]


@dataclass(frozen=True)
class AggPart:
    key: str
    fn: str  # sum avg min max
    fields: tuple[Const | Value, ...]


@dataclass(frozen=True)
class Aggregate:
    key: str
    fields: tuple[Const | Leaf | AggPart, ...]


@dataclass(frozen=True)
class Conn:
    key: str
    args: ConnArgs
    fields: tuple[Const | Edges | PageInfo | Leaf | Aggregate, ...]


@dataclass(frozen=True)
class ById:
    key: str
    entity: Entity
    id: Src
    node: Node
    location: SourceLocation | None = None  # the field in the document that gave ``id``


NodeSel = Const | Value | Predict | Join | Conn
RootSel = Const | ById | Conn


# --- the walk -----------------------------------------------------------------------------


@dataclass
class Planner:
    gschema: GraphQLSchema
    document: DocumentNode
    operation: OperationDefinitionNode
    variables: VariableValues
    limits: ApiLimits
    read: set[Var] = field(default_factory=set)  # variable paths the SQL text depends on

    def __post_init__(self) -> None:
        self.fragments = {
            d.name.value: FragmentDetails(d)
            for d in self.document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }

    # values
    def concrete(self, tree: Any) -> Any:
        """The value itself of a source, or of a tree of them (the statement's text
        depends on it: the variable paths read are recorded)."""
        if isinstance(tree, dict):
            return {k: self.concrete(v) for k, v in tree.items()}
        if isinstance(tree, list | Items):
            return [self.concrete(v) for v in (tree.items if isinstance(tree, Items) else tree)]
        if isinstance(tree, Var):
            self.read.add(tree)
        return resolve(tree, self.variables.coerced)

    def arguments(self, gfield: GraphQLField, detail: FieldDetails) -> dict[str, Any]:
        """The field's arguments as trees whose leaves are sources (a list of scalars is one
        leaf: it binds as one array)."""
        coerced = get_argument_values(
            gfield, detail.node, self.variables, detail.fragment_variable_values
        )
        given = {a.name.value: a for a in detail.node.arguments or ()}
        return {
            name: _sourced(value, given[name].value if name in given else None)
            for name, value in coerced.items()
        }

    # selections
    def subfields(
        self, parent: GraphQLObjectType, details: Sequence[FieldDetails]
    ) -> dict[str, list[FieldDetails]]:
        collected = collect_subfields(
            self.gschema, self.fragments, self.variables, self.operation, parent, list(details)
        )
        return collected.grouped_field_set

    def roots(self) -> dict[str, list[FieldDetails]]:
        root = self.gschema.get_root_type(self.operation.operation)
        assert root is not None
        collected = collect_fields(
            self.gschema, self.fragments, self.variables, root, self.operation
        )
        return collected.grouped_field_set

    def root(self, key: str, details: list[FieldDetails]) -> RootSel:
        """A query root of the catalog (``customer(id:)``, ``orders(...)``) or __typename."""
        name = details[0].node.name.value
        qtype = self.gschema.query_type
        assert qtype is not None
        if name == "__typename":
            return Const(key, qtype.name)
        entity, is_connection = ROOTS[name]
        gfield = qtype.fields[name]
        if is_connection:
            return self.connection(key, gfield, details, entity, None)
        args = self.arguments(gfield, details[0])
        node = self.node(entity, object_type(gfield), details)
        return ById(key, entity, args["id"], node, place(details[0].node))

    def by_id(self, key: str, entity: Entity, id_: Src, details: list[FieldDetails]) -> ById:
        """``entity`` row ``id_`` with the selection of ``details`` (a mutation's payload,
        a subscription event's object)."""
        gtype = self.gschema.get_type(entity.name)
        assert isinstance(gtype, GraphQLObjectType)
        return ById(key, entity, id_, self.node(entity, gtype, details))

    def each(
        self,
        gtype: GraphQLObjectType,
        details: Sequence[FieldDetails],
        select: Callable[[str, str, list[FieldDetails]], T],
    ) -> tuple[Const | T, ...]:
        """``select(key, name, details)`` of each field selected on ``gtype`` (``__typename``
        is a constant)."""
        return tuple(
            Const(key, gtype.name)
            if (name := sub[0].node.name.value) == "__typename"
            else select(key, name, sub)
            for key, sub in self.subfields(gtype, details).items()
        )

    def node(self, entity: Entity, gtype: GraphQLObjectType, details: list[FieldDetails]) -> Node:
        cols, rels, preds = entity.cols, entity.rels, entity.predictions

        def select(key: str, name: str, sub: list[FieldDetails]) -> NodeSel:
            gfield = gtype.fields[name]
            if name in cols:
                return Value(key, cols[name])
            if name in preds:
                return Predict(key, preds[name], _pred_selection(self, object_type(gfield), sub))
            rel = rels[name]
            target = ENTITIES[rel.target]
            if rel.shape is Shape.CONNECTION:
                return self.connection(key, gfield, sub, target, rel)
            return Join(key, rel, self.node(target, object_type(gfield), sub))

        return Node(entity, self.each(gtype, details, select))

    def connection(
        self,
        key: str,
        gfield: GraphQLField,
        details: list[FieldDetails],
        entity: Entity,
        parent: Rel | None,
    ) -> Conn:
        ctype = object_type(gfield)
        args = self.arguments(gfield, details[0])
        location = place(details[0].node)
        try:
            conn = ConnArgs(
                entity,
                parent,
                args.get("filter"),
                self.order(entity, args.get("orderBy")),
                self.page(args),
                location=location,
            )
        except CdmsError as exc:
            raise FieldError(exc, location) from None

        def select(
            k: str, name: str, sub: list[FieldDetails]
        ) -> Edges | PageInfo | Leaf | Aggregate:
            if name == "totalCount":
                return Leaf(k, name)
            gtype = object_type(ctype.fields[name])
            if name == "edges":
                return self.edges(k, gtype, entity, sub)
            if name == "pageInfo":
                return PageInfo(k, self.each(gtype, sub, lambda k, name, _: Leaf(k, name)))
            return self.aggregate(k, entity, gtype, sub)

        return Conn(key, conn, self.each(ctype, details, select))

    def page(self, args: dict[str, Any]) -> Page:
        """``first/after/last/before`` checked against the page caps (BAD_USER_INPUT)."""
        first, last = self.concrete(args.get("first")), self.concrete(args.get("last"))
        limits = self.limits
        if first is not None and last is not None:
            raise BadUserInputError("pass either first or last, not both", field="first")
        for name, n in (("first", first), ("last", last)):
            if n is not None and n < 0:
                raise BadUserInputError(f"{name} must not be negative", field=name)
            if n is not None and n > limits.max_page_size:
                raise BadUserInputError(
                    f"{name} must be at most {limits.max_page_size} (got {n})",
                    field=name,
                    max=limits.max_page_size,
                )
        size = last if last is not None else first
        return Page(
            limits.default_page_size if size is None else size,
            last is not None,
            self.given(args.get("after")),
            self.given(args.get("before")),
        )

    def given(self, src: Any) -> Src | None:
        """A cursor's source, or None when absent or null (null-ness is part of the
        variables' structure, so it needs no recording)."""
        return None if resolve(src, self.variables.coerced) is None else src

    def order(self, entity: Entity, order_by: Any) -> tuple[SortKey, ...]:
        """``orderBy`` items (one field each) + the key columns as the tie-breaker."""
        keys: list[SortKey] = []
        items = self.concrete(order_by) if order_by is not None else None
        cols = entity.cols
        for item in items or ():
            chosen = [(k, v) for k, v in (item or {}).items() if v is not None]
            if len(chosen) != 1:
                raise BadUserInputError(
                    "each orderBy item must name exactly one field, e.g. {orderedAt: DESC}",
                    field="orderBy",
                )
            name, direction = chosen[0]
            if all(k.col is not cols[name] for k in keys):  # named again: it orders no more
                keys.append(SortKey(cols[name], str(direction).upper() == "DESC"))
        if not keys:
            keys = [SortKey(entity.by_column(c), d == "desc") for c, d in entity.order]
        present = {k.col.column for k in keys}
        last = keys[-1].desc if keys else False
        keys += [SortKey(entity.by_column(c), last) for c in entity.key if c not in present]
        return tuple(keys)

    def edges(
        self, key: str, etype: GraphQLObjectType, entity: Entity, details: list[FieldDetails]
    ) -> Edges:
        def select(k: str, name: str, sub: list[FieldDetails]) -> Leaf | EdgeNode:
            if name == "cursor":
                return Leaf(k, name)
            return EdgeNode(k, self.node(entity, object_type(etype.fields[name]), sub))

        return Edges(key, self.each(etype, details, select))

    def aggregate(
        self, key: str, entity: Entity, atype: GraphQLObjectType, details: list[FieldDetails]
    ) -> Aggregate:
        cols = entity.cols

        def select(k: str, fn: str, sub: list[FieldDetails]) -> Leaf | AggPart:
            if fn == "count":
                return Leaf(k, fn)
            ptype = object_type(atype.fields[fn])
            return AggPart(k, fn, self.each(ptype, sub, lambda pk, name, _: Value(pk, cols[name])))

        return Aggregate(key, self.each(atype, details, select))


def _pred_selection(
    planner: Planner, gtype: GraphQLObjectType, details: list[FieldDetails]
) -> tuple[PredSel, ...]:
    out: list[PredSel] = []
    for key, sub in planner.subfields(gtype, details).items():
        name = sub[0].node.name.value
        gfield = gtype.fields.get(name)
        if gfield is not None and isinstance(get_named_type(gfield.type), GraphQLObjectType):
            inner = _pred_selection(planner, object_type(gfield), sub)
            out.append(PredSel(key, name, gtype.name, inner))
        else:
            out.append(PredSel(key, name, gtype.name))
    return tuple(out)


# --- helpers ------------------------------------------------------------------------------


def object_type(gfield: GraphQLField) -> GraphQLObjectType:
    """The object type ``gfield`` returns (under its lists and non-nulls)."""
    t = get_named_type(gfield.type)
    assert isinstance(t, GraphQLObjectType)
    return t


def _sourced(value: Any, node: ValueNode | None, var: Var | None = None) -> Any:
    """``value`` (coerced) with its leaves replaced by their sources: a literal, or the path
    into the variable that holds it (``node`` is its AST, None for a default)."""
    if isinstance(node, VariableNode):
        var = Var(node.name.value)
        node = None
    if isinstance(value, dict):
        fields = (
            {f.name.value: f.value for f in node.fields}
            if isinstance(node, ObjectValueNode)
            else {}
        )
        return {
            k: _sourced(v, fields.get(k), None if var is None else Var(var.name, (*var.path, k)))
            for k, v in value.items()
        }
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        items = node.values if isinstance(node, ListValueNode) else ()
        return [
            _sourced(
                v,
                items[i] if i < len(items) else None,
                None if var is None else Var(var.name, (*var.path, i)),
            )
            for i, v in enumerate(value)
        ]
    if var is not None:
        return var
    if (
        isinstance(value, list)
        and isinstance(node, ListValueNode)
        and any(isinstance(n, VariableNode) for n in node.values)
    ):
        return Items(tuple(_sourced(v, n) for v, n in zip(value, node.values, strict=True)))
    return Lit(value)
