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
from typing import Any

import sqlalchemy as sa
import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError, OperationDefinitionNode
from graphql.execution.values import get_variable_values
from graphql.utilities import get_operation_ast
from strawberry.extensions import AddValidationRules, SchemaExtension

from db.errors import CdmsError
from schema.compiled import plan as P
from schema.compiled.sql import Built, statement
from schema.context import ApiLimits, Context

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


async def run(ctx: Context, stmt: Built) -> dict[str, Any]:
    """The ``data`` object: the statement's single JSON value (psycopg parses it)."""
    rows = await ctx.db.run(lambda conn: conn.exec_driver_sql(stmt.sql, stmt.params).all())
    data: dict[str, Any] = rows[0][0]
    return data


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
                except CdmsError as exc:  # e.g. TIMEOUT: the request's own failure
                    error = GraphQLError(exc.message, original_error=exc)
                    ec.result = GraphQLExecutionResult(data=None, errors=[error])
                except sa.exc.DBAPIError:
                    # a statement the database refuses is a compiler bug: log it, and let
                    # Strawberry answer the request
                    log.exception("request %s: compiled read failed", ctx.request_id)
                else:
                    ec.result = GraphQLExecutionResult(data=data, errors=None)
        yield

    def _statement(self, ctx: Context) -> Built | None:
        ec = self.execution_context
        key = _cache_key(ec.query, ec.operation_name, ec.variables, (ec.schema._schema, ctx.limits))
        if key is not None:
            found, stmt = _cache.get(key)
            if found:
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
        return stmt


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
