"""Running compiled reads: a Strawberry extension that answers a query with one statement.

:class:`CompiledReads` hooks ``on_execute``, i.e. after Strawberry has parsed and
validated the document with the schema's own caches and limits (depth, aliases, tokens).
If the operation is a query the planner can compile, it runs the one statement on the
request's read transaction (``Context.db``: same ``statement_timeout`` and actor) and sets
``execution_context.result``, which makes Strawberry skip its own execution. Otherwise
(not compilable, variables that do not coerce, or a validation error such as a bad page
size or cursor) it does nothing and Strawberry executes the operation as usual, so errors
are the Strawberry path's own.

Statements are cached by (query text, operation name, variable values): a repeated
request skips planning and SQL generation (generating the text is cheap too; the server
prepares a statement it sees often, psycopg's ``prepare_threshold``).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    FieldNode,
    GraphQLError,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    VariableNode,
    Visitor,
    visit,
)
from graphql.execution.values import get_variable_values
from graphql.utilities import get_operation_ast
from strawberry.extensions import AddValidationRules, SchemaExtension

from db.errors import CdmsError, from_db_error
from schema.compiled import plan as P
from schema.compiled.sql import Built, statement
from schema.context import ApiLimits, Context
from schema.filters import parse_id

CACHE_SIZE = 512

log = logging.getLogger("cdms.api.compiled")


class StatementCache:
    """A small thread-safe LRU of built statements (or of "not compilable")."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Built | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[bool, Built | None]:
        with self._lock:
            if key not in self._items:
                return False, None
            self._items.move_to_end(key)
            return True, self._items[key]

    def put(self, key: Hashable, value: Built | None) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_cache = StatementCache()


def compile_operation(
    sschema: strawberry.Schema,
    document: Any,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    limits: ApiLimits,
) -> Built:
    """The statement answering the operation; :class:`plan.NotCompilable` or the
    ``CdmsError`` of the Strawberry path otherwise."""
    operation = get_operation_ast(document, operation_name)
    if not isinstance(operation, OperationDefinitionNode):
        raise P.NotCompilable("operation not found")
    coerced = get_variable_values(
        sschema._schema, operation.variable_definitions or (), variables or {}
    )
    if isinstance(coerced, list):
        raise P.NotCompilable("variables do not coerce")
    return statement(P.build(sschema, document, operation, coerced, limits))


def _cache_key(
    query: str | None, operation_name: str | None, variables: dict[str, Any] | None, scope: Any
) -> Hashable | None:
    try:
        values = json.dumps(variables or {}, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return (query, operation_name, values, scope)


# --- templates over root ids -------------------------------------------------------------
# A client repeats one query text with other ids (``customer(id: $id)``): keyed by variable
# values, each id would miss the cache and plan again. For variables used only as the ``id``
# argument of root fields (the plan binds ``parse_id(value)`` and nothing else), the
# statement is cached once as a template: the ids' slots in its parameters are found by
# compiling a second time with other ids (same SQL text, only those slots differ, by
# exactly the ids), and a hit binds ``parse_id`` of the request's values into them.
_ID_MARK = "\x00root-id"
_PROBE_BASE = 7_340_912_345_678_900_000
_root_ids: dict[tuple[str, str | None], tuple[str, ...]] = {}  # by (query, operation name)


def _root_id_variables(document: Any, operation_name: str | None) -> tuple[str, ...]:
    """Variables of type ``ID``/``ID!`` used only as ``id: $v`` of root query fields."""
    operation = get_operation_ast(document, operation_name)
    if not isinstance(operation, OperationDefinitionNode) or operation.operation.value != "query":
        return ()
    declared = set()
    for d in operation.variable_definitions or ():
        t = d.type.type if isinstance(d.type, NonNullTypeNode) else d.type
        if isinstance(t, NamedTypeNode) and t.name.value == "ID" and d.default_value is None:
            declared.add(d.variable.name.value)
    if not declared:
        return ()
    root_uses: dict[str, int] = {}
    for sel in operation.selection_set.selections:
        if isinstance(sel, FieldNode) and not sel.directives:
            for arg in sel.arguments or ():
                if arg.name.value == "id" and isinstance(arg.value, VariableNode):
                    name = arg.value.name.value
                    root_uses[name] = root_uses.get(name, 0) + 1
    all_uses: dict[str, int] = {}

    class _Count(Visitor):
        def enter_variable_definition(self, *_: Any) -> Any:
            return self.SKIP  # declarations are not uses

        def enter_variable(self, node: VariableNode, *_: Any) -> None:
            all_uses[node.name.value] = all_uses.get(node.name.value, 0) + 1

    visit(document, _Count())
    return tuple(
        sorted(v for v in declared if root_uses.get(v, 0) and root_uses[v] == all_uses.get(v))
    )


def _template_key(
    query: str | None,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    document: Any,
    scope: Any,
) -> tuple[Hashable, tuple[str, ...]] | None:
    """(cache key of the template, its id variables), or None when there is none."""
    if query is None or document is None:
        return None
    ids = _root_ids.get((query, operation_name))
    if ids is None:
        ids = _root_id_variables(document, operation_name)
        if len(_root_ids) >= CACHE_SIZE:
            _root_ids.clear()
        _root_ids[(query, operation_name)] = ids
    key = template_cache_key(query, operation_name, variables, ids, scope)
    return None if key is None else (key, ids)


def template_cache_key(
    query: str,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    ids: tuple[str, ...],
    scope: Any,
) -> Hashable | None:
    """The cache key of the template over the root-id variables ``ids`` (None if none)."""
    if not ids:
        return None
    values = dict(variables or {})
    for name in ids:
        if name not in values:
            return None
        values[name] = _ID_MARK
    key = _cache_key(query, operation_name, values, scope)
    return None if key is None else ("template", key)


def cached_statement(
    query: str,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    scope: Any,
) -> Built | None:
    """The statement the executor has already built for this operation (so its document
    parsed and validated for this schema): its template over root ids bound to the
    request's ids, or the statement cached for these exact variable values. None when
    there is none or an id does not parse. Never plans or compiles."""
    ids = _root_ids.get((query, operation_name))
    if ids:
        key = template_cache_key(query, operation_name, variables, ids, scope)
        if key is not None:
            found, template = _cache.get(key)
            if found and template is not None:
                return _bind(template, variables or {}, ids)
    exact = _cache_key(query, operation_name, variables, scope)
    if exact is None:
        return None
    found, stmt = _cache.get(exact)
    return stmt if found else None


def _id_value(value: Any) -> int | None:
    """``parse_id`` of a raw ID variable value as the Strawberry path sees it, or None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    try:
        return parse_id(str(value))
    except CdmsError:
        return None


def _probe(
    stmt: Built,
    names: tuple[str, ...],
    variables: dict[str, Any],
    compile_with: Any,
) -> Built | None:
    """``stmt`` with a marker in each parameter slot holding an id variable, when a second
    compilation with other ids proves those slots (and only those) carry the ids."""
    ids = {name: _id_value(variables.get(name)) for name in names}
    if any(v is None for v in ids.values()):
        return None
    taken = [*stmt.params.values(), *ids.values()]  # (values may be unhashable lists)
    probes: dict[str, int] = {}
    n = _PROBE_BASE
    for name in names:
        while n in taken:
            n += 1
        probes[name] = n
        taken.append(n)
    other: Built = compile_with({**variables, **{k: str(v) for k, v in probes.items()}})
    if other.sql != stmt.sql or other.params.keys() != stmt.params.keys():
        return None
    slots: dict[str, str] = {}
    for param, value in stmt.params.items():
        changed = other.params[param]
        if changed == value:
            continue
        owner = [k for k in names if value == ids[k] and changed == probes[k]]
        if len(owner) != 1:
            return None
        slots[param] = owner[0]
    if set(slots.values()) != set(names):
        return None
    params = dict(stmt.params)
    for param, name in slots.items():
        params[param] = _Slot(name)
    return replace(stmt, params=params)


@dataclass(frozen=True)
class _Slot:
    """A template parameter: the id variable ``name``."""

    name: str


def _bind(template: Built, variables: dict[str, Any], names: tuple[str, ...]) -> Built | None:
    """The template with the request's ids; None when one does not parse."""
    ids = {name: _id_value(variables.get(name)) for name in names}
    if any(v is None for v in ids.values()):
        return None
    params = {k: ids[v.name] if isinstance(v, _Slot) else v for k, v in template.params.items()}
    return replace(template, params=params)


async def run(ctx: Context, stmt: Built) -> dict[str, Any]:
    """The ``data`` object: the statement's single JSON value (psycopg parses it)."""
    rows = await ctx.db.run(lambda conn: conn.exec_driver_sql(stmt.sql, stmt.params).all())
    data: dict[str, Any] = rows[0][0]
    return data


# --- ml hook (issue 6) ------------------------------------------------------------------
# A statement whose plan has prediction fields (``Built.predictions``) yields the objects'
# ids there; schema.compiled.predictions fills in the predictions (one feature statement
# per object kind, one model run per model) and returns the errors of fields left null.
# Whoever runs a Built must do the same (or leave such statements to CompiledReads).
async def _predictions(
    ctx: Context, stmt: Built, data: dict[str, Any]
) -> list[GraphQLError] | None:
    if stmt.predictions is None:
        return None
    from schema.compiled.predictions import complete

    return await complete(ctx, stmt, data) or None


class CompiledReads(SchemaExtension):
    """Answers compilable queries with one SQL statement (see the module docstring)."""

    async def on_execute(self) -> AsyncIterator[None]:
        ec = self.execution_context
        ctx = ec.context
        if ec.graphql_document is not None and isinstance(ctx, Context):
            stmt = self._statement(ctx)
            if stmt is not None:
                try:
                    data = await run(ctx, stmt)
                    errors = await _predictions(ctx, stmt, data)  # ml hook (issue 6)
                except CdmsError as exc:  # e.g. TIMEOUT: the request's own failure
                    error = GraphQLError(exc.message, original_error=exc)
                    ec.result = GraphQLExecutionResult(data=None, errors=[error])
                except sa.exc.DBAPIError as exc:
                    mapped = from_db_error(exc)
                    if mapped is not None and mapped.code == "SERVICE_UNAVAILABLE":
                        error = GraphQLError(mapped.message, original_error=mapped)
                        ec.result = GraphQLExecutionResult(data=None, errors=[error])
                    else:
                        # a statement the database refuses is a compiler bug: log it, and
                        # let Strawberry answer the request
                        log.exception("request %s: compiled read failed", ctx.request_id)
                else:
                    ec.result = GraphQLExecutionResult(data=data, errors=errors)
        yield

    def _statement(self, ctx: Context) -> Built | None:
        ec = self.execution_context
        scope = (ec.schema._schema, ctx.limits)
        fast = _template_key(ec.query, ec.operation_name, ec.variables, ec.graphql_document, scope)
        if fast is not None:
            found, template = _cache.get(fast[0])
            if found:
                if template is None:
                    fast = None  # no template for this query: the per-value cache below
                else:
                    bound = _bind(template, ec.variables or {}, fast[1])
                    if bound is not None:
                        return bound
                    return None  # an id that does not parse: the Strawberry path reports it
        key = _cache_key(ec.query, ec.operation_name, ec.variables, scope)
        if key is not None:
            found, stmt = _cache.get(key)
            if found:
                if fast is not None:
                    _cache.put(fast[0], self._template(stmt, fast[1], ctx))
                return stmt
        try:
            stmt = compile_operation(
                ec.schema, ec.graphql_document, ec.operation_name, ec.variables, ctx.limits
            )
        except P.NotCompilable:
            stmt = None
        except CdmsError:
            # bad input: the Strawberry path reports it with its exact errors (not cached)
            return None
        if key is not None:
            _cache.put(key, stmt)
        if fast is not None:
            _cache.put(fast[0], self._template(stmt, fast[1], ctx))
        return stmt

    def _template(self, stmt: Built | None, names: tuple[str, ...], ctx: Context) -> Built | None:
        """The statement as a template over the root-id variables ``names``, proven by a
        second compilation with other ids (see :func:`_probe`); None when not provable."""
        ec = self.execution_context
        if stmt is None:
            return None
        try:
            return _probe(
                stmt,
                names,
                ec.variables or {},
                lambda values: compile_operation(
                    ec.schema, ec.graphql_document, ec.operation_name, values, ctx.limits
                ),
            )
        except (P.NotCompilable, CdmsError):
            return None


def with_compiled_reads(schema: strawberry.Schema) -> strawberry.Schema:
    """``schema`` answering compilable queries through :class:`CompiledReads`.

    A shallow copy sharing everything (types, caches) but the extension list, so the
    original keeps executing every field with Strawberry (the two can be compared).
    Validation-rule extensions (depth and alias limiters) are made to reuse their rule
    classes: constructed per request, they build new rule classes each time, which makes
    ``ValidationCache`` (keyed by the rules) miss on every request.
    """
    compiled = copy.copy(schema)
    compiled.extensions = (*(_stable_rules(e) for e in schema.extensions), CompiledReads)
    return compiled


def _stable_rules(ext: Any) -> Any:
    """A factory of an ``AddValidationRules`` extension → one with the same rule classes."""
    if isinstance(ext, type | SchemaExtension):
        return ext
    sample = ext()
    if not isinstance(sample, AddValidationRules):
        return ext
    rules = list(sample.validation_rules)
    return lambda: AddValidationRules(rules)
