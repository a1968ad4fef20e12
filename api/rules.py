"""The request checks, as rules over graphql-core's parsed and validated document.

Every transport (HTTP, batches, persisted queries, both WebSocket subprotocols) runs the
same steps through :mod:`api.pipeline`:

0. :func:`check_names` holds every name of a parsed document (aliases first: each row of an
   answer repeats them) to ``Limits.max_name_chars``, once per document.
1. :func:`shape_of` measures an operation once per document: depth, fields and aliases
   after fragment expansion (an alias counts at every spread that reaches it), which
   (type, field) pairs it uses and which fields take arguments.
   Each fragment is measured ONCE and its measure reused at every spread, in dependency
   order, so the work is linear in the document whatever it expands to (a fragment that
   spreads the next one twice, twenty times over, is 20 measures, not 2**20 walks).
   Standard validation (graphql-core's rules, among them NoFragmentCycles) has run before.
2. :func:`check` decides for one principal with the coerced variables, defaults included:
   roles per field (by definition: the parent type and the field, wherever a fragment puts
   it), roles per input field, argument values a role may use, a customer naming no
   other customer, introspection in production, and the cost (objects the page sizes can
   return, multiplied down the nesting; a batch adds its operations up).

Who may use what is :class:`Access`, read from the schema's declarations (api/access.py).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, assert_never

from graphql import (
    BREAK,
    ArgumentNode,
    DirectiveNode,
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLDirective,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    NamedTypeNode,
    NameNode,
    Node,
    ObjectFieldNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    Visitor,
    get_named_type,
    get_nullable_type,
    visit,
)
from graphql.execution.values import VariableValues, get_argument_values
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef, TypeNameMetaFieldDef
from graphql.validation import ASTValidationContext

from db.errors import ForbiddenError, QueryTooComplexError
from semantic.query import MAX_LIMIT


@dataclass(frozen=True)
class Limits:
    """How big one operation (or one batch) may be."""

    max_depth: int = 12
    max_aliases: int = 30
    max_fields: int = 10_000  # field selections once every fragment spread is expanded
    max_tokens: int = 5_000
    max_cost: int = 50_000  # objects the page sizes can return
    default_page: int = 50
    max_page: int = 500
    max_batch: int = 10
    max_json_depth: int = 64  # nesting of a request body's JSON (variables)
    max_cube_fields: int = 10  # cube / cubeDrillDown fields (response keys) per operation
    # characters of a name of the document: every row of an answer repeats an alias as a
    # JSON key, and the cost counts cells, not bytes (check_names)
    max_name_chars: int = 64


@dataclass(frozen=True)
class Access:
    """Who may use what (api/access.py builds it from the schema's declarations).

    ``fields``: (type, field) -> roles; a root field missing here is for ``root_default``
    of its operation type. ``inputs``: (input type, field) -> roles that may set it.
    ``values``: (type, field, argument) -> role -> the only values that role may pass.
    ``owner_keys``: argument/input field names that name a customer (customers may only
    name themselves), and ``owner_args`` (type, field, argument) that do under another name.
    """

    fields: Mapping[tuple[str, str], frozenset[str]]
    root_default: Mapping[OperationType, frozenset[str]]
    inputs: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    values: Mapping[tuple[str, str, str], Mapping[str, frozenset[Any]]] = field(
        default_factory=dict
    )
    owner_keys: frozenset[str] = frozenset({"customerId"})
    owner_args: frozenset[tuple[str, str, str]] = frozenset()


@dataclass(frozen=True)
class ArgField:
    """A field (or a directive, ``name`` "@include") of the operation that takes arguments,
    checked with the variables: a null where the argument is non-null is refused before
    anything runs (a variable with a default may stand there, and be sent as null)."""

    parent: str
    name: str
    definition: GraphQLField | GraphQLDirective
    node: FieldNode | DirectiveNode
    # the coerced values when no argument holds a variable: the same for every request
    fixed: Mapping[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def of(
        cls,
        parent: str,
        name: str,
        definition: GraphQLField | GraphQLDirective,
        node: FieldNode | DirectiveNode,
    ) -> ArgField:
        fixed = None
        if not any(_has_variable(a.value) for a in node.arguments or ()):
            # (one that does not coerce: validation reports it, each request fails again)
            with contextlib.suppress(GraphQLError):
                fixed = get_argument_values(definition, node)
        return cls(parent, name, definition, node, fixed)

    def values(self, variables: VariableValues) -> Mapping[str, Any]:
        """The coerced argument values (defaults included) for these variables."""
        if self.fixed is not None:
            return self.fixed
        return get_argument_values(self.definition, self.node, variables)


def _has_variable(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_has_variable(v) for v in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_has_variable(f.value) for f in value.fields)
    return False


@dataclass(frozen=True)
class Cost:
    """The cost plan of a selection set: connections (page source, what is under each
    page), plain nested objects and spreads of fragments."""

    # None: the default page size; True: the page may count its rows (``totalCount``,
    # ``aggregate``, or a fragment that may select them), which reads every row its filter
    # lets through whatever the page size: it counts as a page of one at least
    pages: tuple[tuple[ArgField | None, Cost, bool], ...] = ()
    nested: tuple[Cost, ...] = ()
    spreads: tuple[str, ...] = ()
    # lists of rows sized by a ``limit`` argument (``cube``): what is under each row (a
    # cell's ``drill { orders(first: N) }``) costs ``limit`` times; each such field (a
    # cube, and ``cubeDrillDown``) costs CUBE_COST more, and its rows' cells (``leaves``)
    rows: tuple[tuple[ArgField, Cost], ...] = ()
    leaves: int = 0  # fields without a selection here: a row's cells when under ``rows``
    # connections given arguments: each relation test (``some``/``none``) of a filter is a
    # subquery run per row it tests (schema.sql), and costs a default page, even at first: 0
    filters: tuple[ArgField, ...] = ()
    # plain lists of objects (an order's ``items``, ``statusHistory``): no page argument,
    # each counts as LIST_ROWS objects, and what is under it LIST_ROWS times
    lists: tuple[Cost, ...] = ()


class Counted(enum.Enum):
    """What an operation's cost counts, each by its own formula (:func:`check_cost` tells
    the formulas of those the operation holds)."""

    PAGES = "pages"  # connections, plain lists of objects, relation tests of filters
    CUBES = "cubes"  # cube fields and cubeDrillDown, with the drills under their rows


@dataclass(frozen=True)
class Measure:
    depth: int
    fields: int
    uses: frozenset[tuple[str, str]]
    args: tuple[ArgField, ...]
    cost: Cost
    # aliased fields once fragments are spread, counted up to one past the limit (a spread
    # adds its fragment's count: a bomb of 2**40 aliases is a few small additions)
    aliases: int = 0


@dataclass(frozen=True)
class Shape:
    """What the checks need of one operation, computed once per document."""

    kind: OperationType
    depth: int
    fields: int
    aliases: int  # up to max_aliases + 1: past the limit, how far past is not counted
    uses: frozenset[tuple[str, str]]
    roots: tuple[tuple[str, str], ...]  # (root type, field) in document order
    args: tuple[ArgField, ...]
    cost: Cost
    fragment_costs: tuple[tuple[str, Cost], ...]  # each after the fragments it spreads
    cubes: int = 0  # cube fields among the root fields (distinct response keys)
    counted: frozenset[Counted] = frozenset()  # what its cost counts (the refusal's words)


_META = {
    "__typename": TypeNameMetaFieldDef,
    "__schema": SchemaMetaFieldDef,
    "__type": TypeMetaFieldDef,
}
_PAGE_ARGS = ("first", "last")
_ROWS_ARG = "limit"  # a list field's row count (cube)
# the rows a cube skips: PostgreSQL reads, joins and writes them as it does the rows it
# returns, so they cost as rows do (probe p10 #2), but nothing under a row runs for them
_SKIP_ARG = "offset"
# cube fields: each is a warehouse statement of its own (the stock snapshot costs ~0.8 s of
# database time even at limit 1), so each costs CUBE_COST, plus its rows times the cells
# of a row (leaf fields, nested ones included) over CUBE_CELLS_PER_COST: the cost limit
# (50,000) holds a document's cube answers under ~1,000,000 cells (~30 MB of JSON), and
# the dashboard's busiest query (8 cubes, 14 cells at the default limit 10,000) at 15,000
_CUBE_FIELDS = frozenset({"cube", "cubeDrillDown"})
_DRILL = "cubeDrillDown"  # no limit: up to MAX_LIMIT children, one cell each
CUBE_COST = 1_000
CUBE_CELLS_PER_COST = 20
# a plain list of objects counts as this many: an order's lines (placeOrder takes at most
# 100, 1-3 in a typical basket) and its status changes (a handful)
LIST_ROWS = 10


def _field_def(parent: GraphQLNamedType, name: str) -> GraphQLField | None:
    meta = _META.get(name)
    if meta is not None:
        return meta
    fields = getattr(parent, "fields", None)
    return None if fields is None else fields.get(name)


def _introspective(t: GraphQLNamedType) -> bool:
    return t.name.startswith("__")


class _Measurer:
    def __init__(self, schema: GraphQLSchema, doc: DocumentNode, limits: Limits) -> None:
        self.schema = schema
        self.limits = limits
        self.fragments = {
            d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.done: dict[str, Measure] = {}
        # for graphql-core's lookup of the spreads in a selection set (nothing is validated)
        self.context = ASTValidationContext(doc, on_error=lambda _: None)

    def fragment_order(self, roots: Iterable[str]) -> list[str]:
        """Fragments reachable from ``roots``, each after the fragments it spreads
        (iterative: a chain of a thousand fragments must not exhaust the stack)."""
        order: list[str] = []
        seen: set[str] = set()
        for root in roots:
            if root in seen or root not in self.fragments:
                continue
            stack: list[tuple[str, Iterator[str]]] = [(root, iter(self._spreads_of(root)))]
            seen.add(root)
            while stack:
                name, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    order.append(name)
                elif child not in seen and child in self.fragments:
                    seen.add(child)
                    stack.append((child, iter(self._spreads_of(child))))
        return order

    def _spreads_of(self, name: str) -> list[str]:
        return self.spreads(self.fragments[name].selection_set)

    def spreads(self, sel_set: SelectionSetNode) -> list[str]:
        """The fragment names spread anywhere in a selection set (not through fragments)."""
        return [s.name.value for s in self.context.get_fragment_spreads(sel_set)]

    def fragment(self, name: str) -> Measure:
        frag = self.fragments[name]
        parent = self.schema.get_type(frag.type_condition.name.value)
        if parent is None:  # an unknown type: validation reports it
            found = Measure(0, 0, frozenset(), (), Cost())
        else:
            found = self.selection(frag.selection_set, parent)
            if _introspective(parent):
                found = replace(found, depth=0)
        self.done[name] = found
        return found

    def selection(self, sel_set: SelectionSetNode, parent: GraphQLNamedType) -> Measure:
        depth = 0
        count = 0
        aliases = 0
        uses: set[tuple[str, str]] = set()
        args: list[ArgField] = []
        pages: list[tuple[ArgField | None, Cost, bool]] = []
        nested: list[Cost] = []
        rows: list[tuple[ArgField, Cost]] = []
        lists: list[Cost] = []
        leaves = 0
        filters: list[ArgField] = []
        own_spreads: list[str] = []
        for sel in sel_set.selections:
            for d in sel.directives or ():
                directive = self.schema.get_directive(d.name.value)
                if directive is not None and d.arguments:
                    args.append(ArgField.of(parent.name, f"@{d.name.value}", directive, d))
            if isinstance(sel, FieldNode):
                name = sel.name.value
                gfield = _field_def(parent, name)
                if gfield is None:
                    continue  # validation reports it
                uses.add((parent.name, name))
                count += 1
                if sel.alias is not None:
                    aliases += 1
                arg = ArgField.of(parent.name, name, gfield, sel)
                if sel.arguments:
                    args.append(arg)
                if sel.selection_set is None:
                    depth = max(depth, 1)
                    leaves += 1
                    continue
                target = get_named_type(gfield.type)
                sub = self.selection(sel.selection_set, target)
                # introspection (__Schema, __Type, ...) is the schema's shape, not data: it
                # counts for fields and roles, not for depth (GraphiQL's query nests ofType)
                sub_depth = 1 if _introspective(target) else 1 + sub.depth
                if isinstance(target, GraphQLObjectType) and target.name.endswith("Connection"):
                    given = any(a.name.value in _PAGE_ARGS for a in sel.arguments or ())
                    pages.append((arg if given else None, sub.cost, _counts(sel.selection_set)))
                    if sel.arguments:
                        filters.append(arg)
                elif _ROWS_ARG in gfield.args or name == _DRILL:
                    rows.append((arg, sub.cost))
                elif (
                    isinstance(get_nullable_type(gfield.type), GraphQLList)
                    and not parent.name.endswith("Connection")  # a page's edges and nodes
                    and not _introspective(target)
                ):
                    lists.append(sub.cost)
                else:
                    nested.append(sub.cost)
            elif isinstance(sel, InlineFragmentNode):
                cond = sel.type_condition
                inner = parent if cond is None else self.schema.get_type(cond.name.value)
                if inner is None:
                    continue
                sub = self.selection(sel.selection_set, inner)
                sub_depth = sub.depth
                nested.append(sub.cost)
            elif isinstance(sel, FragmentSpreadNode):  # (its uses and args: once, by shape_of)
                name = sel.name.value
                frag = self.done.get(name)
                if frag is None:
                    continue  # unknown: validation reports it
                depth = max(depth, frag.depth)
                count += frag.fields
                aliases += frag.aliases
                own_spreads.append(name)
                continue
            depth = max(depth, sub_depth)
            count += sub.fields
            aliases += sub.aliases
            uses |= sub.uses
            args.extend(sub.args)
        cost = Cost(
            tuple(pages),
            tuple(nested),
            tuple(own_spreads),
            tuple(rows),
            leaves,
            tuple(filters),
            tuple(lists),
        )
        aliases = min(aliases, self.limits.max_aliases + 1)
        return Measure(depth, count, frozenset(uses), tuple(args), cost, aliases)


_COUNTING = ("totalCount", "aggregate")


def _counts(sel_set: SelectionSetNode) -> bool:
    """Whether a connection's selection may count its rows (a fragment: assumed so)."""
    return any(
        not isinstance(sel, FieldNode) or sel.name.value in _COUNTING for sel in sel_set.selections
    )


def relation_tests(flt: Any) -> int:
    """The relation tests (``some``/``none`` objects) in a coerced filter value."""
    if isinstance(flt, list):
        return sum(relation_tests(v) for v in flt)
    if not isinstance(flt, Mapping):
        return 0
    return sum(
        (1 if k in ("some", "none") and isinstance(v, Mapping) else 0) + relation_tests(v)
        for k, v in flt.items()
    )


def shape_of(
    schema: GraphQLSchema, doc: DocumentNode, op: OperationDefinitionNode, limits: Limits
) -> Shape:
    """The operation's measure (``doc`` has passed graphql-core's validation)."""
    m = _Measurer(schema, doc, limits)
    root_type = schema.get_root_type(op.operation)
    assert root_type is not None
    # every fragment the operation reaches, measured once, dependencies first
    order = m.fragment_order(m.spreads(op.selection_set))
    for name in order:
        m.fragment(name)
    own = m.selection(op.selection_set, root_type)
    uses = set(own.uses)
    args = list(own.args)
    for name in order:  # exactly the fragments the operation reaches
        uses |= m.done[name].uses
        args.extend(m.done[name].args)
    root_fields = _root_fields(op.selection_set, m.fragments)
    roots = tuple(
        (root_type.name, f.name.value)
        for f in root_fields
        if _field_def(root_type, f.name.value) is not None  # else validation reports it
    )
    # fields of one response key merge when they run: the cube statements are the keys
    cube_keys = {(f.alias or f.name).value for f in root_fields if f.name.value in _CUBE_FIELDS}
    return Shape(
        kind=op.operation,
        depth=own.depth,
        fields=own.fields,
        aliases=own.aliases,
        uses=frozenset(uses),
        roots=roots,
        args=tuple(args),
        cost=own.cost,
        fragment_costs=tuple((n, m.done[n].cost) for n in order),
        cubes=len(cube_keys) if op.operation is OperationType.QUERY else 0,
        counted=frozenset(_counted(own.cost, {n: m.done[n].cost for n in order}, set())),
    )


def _counted(c: Cost, fragments: Mapping[str, Cost], seen: set[str]) -> set[Counted]:
    """What ``c`` counts: pages (and lists, relation tests), cube rows. What is under a
    cube's rows (a cell's drill) is the cube's to count; each fragment is walked once."""
    out = {Counted.PAGES} if c.pages or c.lists or c.filters else set()
    if c.rows:
        out.add(Counted.CUBES)
    for n in c.nested:
        out |= _counted(n, fragments, seen)
    for name in c.spreads:
        if name not in seen and name in fragments:
            seen.add(name)
            out |= _counted(fragments[name], fragments, seen)
    return out


def _root_fields(
    sel_set: SelectionSetNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> list[FieldNode]:
    """The root fields, through fragments (each fragment once)."""
    out: list[FieldNode] = []
    seen: set[str] = set()
    stack = [sel_set]
    while stack:
        for sel in stack.pop().selections:
            if isinstance(sel, FieldNode):
                out.append(sel)
            elif isinstance(sel, InlineFragmentNode):
                stack.append(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                if name not in seen and name in fragments:
                    seen.add(name)
                    stack.append(fragments[name].selection_set)
    return out


# --- the static limits -------------------------------------------------------------------


@functools.cache
def _name_run(limit: int) -> re.Pattern[str]:
    """A run of more than ``limit`` characters a name may hold (the lexer's NAME)."""
    return re.compile(f"[_0-9A-Za-z]{{{limit + 1},}}")


class _LongName(Visitor):
    """Stops at the first name of more than ``limit`` characters: what it names, and how
    long it is."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.found: tuple[str, int] | None = None

    def enter_name(self, node: NameNode, key: Any, parent: Any, *_: Any) -> Any:
        if len(node.value) <= self.limit:
            return None
        what = "an alias" if key == "alias" else _NAMED.get(type(parent), "a name")
        self.found = (what, len(node.value))
        return BREAK

    def enter_enum_value(self, node: EnumValueNode, *_: Any) -> Any:
        if len(node.value) <= self.limit:
            return None
        self.found = ("an enum value", len(node.value))
        return BREAK


_NAMED: dict[type[Node], str] = {
    OperationDefinitionNode: "an operation's name",
    FragmentDefinitionNode: "a fragment's name",
    FragmentSpreadNode: "a fragment's name",
    VariableNode: "a variable's name",
    FieldNode: "a field's name",
    ArgumentNode: "an argument's name",
    ObjectFieldNode: "an input field's name",
    NamedTypeNode: "a type's name",
    DirectiveNode: "a directive's name",
}


def check_names(document: DocumentNode, limits: Limits) -> None:
    """QUERY_TOO_COMPLEX when a name of the document is longer than
    ``limits.max_name_chars``: an alias is one token however long, and every row of the
    answer repeats it as a JSON key (three 30,000-character aliases of a 10,000-row cube
    answered 900 MB at a cost of 2,500). Every other name (operation, fragment, variable,
    field, argument, type, directive, enum value) is held to the same length: none of the
    schema's is near it. Run once per document, before graphql-core's validation; a text
    without so long a run of name characters (strings and comments included) is not walked."""
    limit = limits.max_name_chars
    if document.loc is not None and _name_run(limit).search(document.loc.source.body) is None:
        return
    found = _LongName(limit)
    visit(document, found)
    if found.found is not None:
        what, chars = found.found
        raise QueryTooComplexError(
            f"{what} of {chars:,} characters: a name of the document (an alias included)"
            f" has at most {limit} characters",
            limit=limit,
        )


def check_size(shape: Shape, limits: Limits) -> None:
    """Depth, aliases and expanded size: QUERY_TOO_COMPLEX."""
    if shape.depth > limits.max_depth:
        raise QueryTooComplexError(
            f"query depth exceeds the maximum operation depth of {limits.max_depth}",
            limit=limits.max_depth,
        )
    if shape.aliases > limits.max_aliases:
        raise QueryTooComplexError(
            f"more than {limits.max_aliases} aliases once fragments are spread (an alias"
            f" counts at every spread that reaches it); at most {limits.max_aliases} are"
            " allowed",
            limit=limits.max_aliases,
        )
    if shape.fields > limits.max_fields:
        raise QueryTooComplexError(
            f"the query expands to {shape.fields} fields once its fragments are spread,"
            f" more than the limit of {limits.max_fields}",
            fields=shape.fields,
            limit=limits.max_fields,
        )
    if shape.cubes > limits.max_cube_fields:
        raise QueryTooComplexError(
            f"{shape.cubes} cube fields (cube, cubeDrillDown) in one operation, more than"
            f" the limit of {limits.max_cube_fields}: each is a warehouse query; select more"
            " members in fewer cube fields, or send them in another request",
            fields=shape.cubes,
            limit=limits.max_cube_fields,
        )


# --- per request: cost and access ----------------------------------------------------------


def _page(arg: ArgField | None, variables: VariableValues, limits: Limits) -> int:
    if arg is None:
        return limits.default_page
    values = arg.values(variables)
    for name in _PAGE_ARGS:
        v = values.get(name)
        if isinstance(v, int) and not isinstance(v, bool):
            return max(0, min(v, limits.max_page))
    return limits.default_page


def _rows(arg: ArgField, variables: VariableValues, name: str) -> int:
    """The rows argument ``name`` counts (``limit``: asked for, its default when not given;
    ``offset``: skipped), 0 when absent."""
    value = arg.values(variables).get(name)
    return max(0, value) if isinstance(value, int) and not isinstance(value, bool) else 0


def cost_of(shape: Shape, variables: VariableValues, limits: Limits) -> int:
    """Objects the operation may return: each page size times the pages above it; every
    fragment's unit cost computed once (a spread multiplies it, it does not walk it).
    A cube field: CUBE_COST, plus its rows and the rows its offset skips times the cells
    of a row over CUBE_CELLS_PER_COST, plus its rows times what is under each row."""
    memo: dict[str, int] = {}
    cell_memo: dict[str, int] = {}

    def cells(c: Cost) -> int:
        """A row's cells: its leaf fields, through nested objects and fragments (those of
        a connection under the row are the connection's)."""
        return (
            c.leaves + sum(cells(n) for n in c.nested) + sum(cell_memo[name] for name in c.spreads)
        )

    def unit(c: Cost, least: int = 0) -> int:
        """``least``: what a page counts at the least (under a list of rows, each row's
        connection is a statement part even when it asks for no node: 1)."""
        total = 0
        for arg, under, counted in c.pages:
            p = max(_page(arg, variables, limits), least, 1 if counted else 0)
            total += p + p * unit(under, least)
        for arg in c.filters:
            total += limits.default_page * relation_tests(arg.values(variables).get("filter"))
        for n in c.nested:
            total += unit(n, least)
        for under in c.lists:
            total += LIST_ROWS + LIST_ROWS * unit(under, least)
        for arg, under in c.rows:
            # a drill down answers up to MAX_LIMIT children, one cell each
            drill = arg.name == _DRILL
            rows = MAX_LIMIT if drill else _rows(arg, variables, _ROWS_ARG)
            per_row = 1 if drill else max(1, cells(under))
            read = rows + _rows(arg, variables, _SKIP_ARG)
            total += CUBE_COST + math.ceil(read * per_row / CUBE_CELLS_PER_COST)
            inner = unit(under, 1)
            if inner:
                total += rows * inner
        for name in c.spreads:
            total += memo[name]
        return total

    for name, c in shape.fragment_costs:  # dependencies first
        cell_memo[name] = cells(c)
        memo[name] = unit(c)
    return unit(shape.cost)


def check_cost(total: int, limits: Limits, counted: Iterable[Counted]) -> None:
    """QUERY_TOO_COMPLEX past the cost limit, telling the formula of each kind of cost
    ``counted`` (the operations' :attr:`Shape.counted`)."""
    if total > limits.max_cost:
        kinds = set(counted)
        told = "; ".join(_formula(k, limits) for k in Counted if k in kinds or not kinds)
        raise QueryTooComplexError(
            f"query cost {total} exceeds the limit of {limits.max_cost} (cost: {told})",
            cost=total,
            limit=limits.max_cost,
        )


def _formula(kind: Counted, limits: Limits) -> str:
    """How :func:`cost_of` counts ``kind``, in a client's words (docs/api.md)."""
    match kind:
        case Counted.PAGES:
            return (
                f"requested page sizes multiplied down the nesting, a plain list {LIST_ROWS},"
                f" a count at least 1, each relation test of a filter {limits.default_page}"
            )
        case Counted.CUBES:
            drill_down = CUBE_COST + math.ceil(MAX_LIMIT / CUBE_CELLS_PER_COST)
            return (
                f"each cube field {CUBE_COST:,} plus ceil((limit + offset) * a row's cells"
                f" / {CUBE_CELLS_PER_COST}), plus limit * the pages of a drill under its rows;"
                f" cubeDrillDown {drill_down:,}"
            )
        case _:
            assert_never(kind)


def _forbidden(role: str, what: str, reason: str = "role", **fields: Any) -> ForbiddenError:
    return ForbiddenError(f"role {role} may not {what}", reason=reason, role=role, **fields)


def check_roles(shape: Shape, access: Access, role: str, *, production: bool) -> None:
    """FORBIDDEN when the role may not use a field the operation selects (needs no valid
    document: what is not a field of the schema is left to validation)."""
    if production and role != "admin":
        for _, name in shape.uses:
            if name in ("__schema", "__type"):
                raise ForbiddenError(
                    "introspection is for admins in production", reason="introspection"
                )
    for parent, name in shape.roots:
        if name.startswith("__"):  # __typename; introspection is decided above
            continue
        root_roles = access.fields.get((parent, name), access.root_default[shape.kind])
        if role not in root_roles:
            verb = "call" if shape.kind is OperationType.MUTATION else "query"
            raise _forbidden(role, f"{verb} {name}", field=name)
    for parent, name in sorted(shape.uses):
        allowed = access.fields.get((parent, name))
        if allowed is not None and role not in allowed:
            raise _forbidden(role, f"query {name}", field=name)


def check_arguments(
    shape: Shape,
    access: Access,
    role: str,
    customer_id: int | None,
    variables: VariableValues,
) -> None:
    """FORBIDDEN when an argument (with the coerced variables, defaults included) sets an
    input field the role may not set, passes a value the role may not pass, or, for a
    customer, names another customer."""
    for arg in shape.args:
        values = arg.values(variables)  # coerced: a null for a non-null argument is refused
        if isinstance(arg.definition, GraphQLDirective):
            continue  # @include/@skip: nothing a role may not pass
        for name, value in values.items():
            allowed_values = access.values.get((arg.parent, arg.name, name), {}).get(role)
            if allowed_values is not None and value not in allowed_values:
                raise _forbidden(role, f"pass {name}: {value} to {arg.name}", field=name)
            definition = arg.definition.args[name]
            if role == "customer" and (
                name in access.owner_keys or (arg.parent, arg.name, name) in access.owner_args
            ):
                _own(value, customer_id)
            _check_input(value, definition.type, access, role, customer_id)


def _own(value: Any, customer_id: int | None) -> None:
    if value is None:
        return
    if isinstance(value, list):
        for v in value:
            _own(v, customer_id)
        return
    text = str(value)
    # the number compared as digits: leading zeros name the same customer, and no string is
    # converted (Python refuses more than 4,300 digits with a ValueError)
    if not (text.isascii() and text.isdigit() and text.lstrip("0") == str(customer_id)):
        raise ForbiddenError("a customer may only name itself", reason="other_customer")


def _check_input(
    value: Any, gtype: GraphQLInputType, access: Access, role: str, customer_id: int | None
) -> None:
    """Input objects at any depth: fields the role may not set, customers named."""
    if value is None:
        return
    if isinstance(gtype, GraphQLNonNull):
        _check_input(value, gtype.of_type, access, role, customer_id)
        return
    if isinstance(gtype, GraphQLList):
        for item in value if isinstance(value, list) else [value]:
            _check_input(item, gtype.of_type, access, role, customer_id)
        return
    if not isinstance(gtype, GraphQLInputObjectType) or not isinstance(value, dict):
        return
    for name, inner in value.items():
        spec = gtype.fields.get(name)
        if spec is None:
            continue
        allowed = access.inputs.get((gtype.name, name))
        if allowed is not None and role not in allowed and inner is not None:
            raise _forbidden(role, f"set {gtype.name}.{name}", field=name)
        if role == "customer" and name in access.owner_keys:
            _own(inner, customer_id)
        _check_input(inner, spec.type, access, role, customer_id)
