"""Running prepared operations: queries and mutations to one result, subscriptions to a
stream of results. Every transport executes through here, after api/pipeline.py.

Queries the compiled read path covers run as one SQL statement (schema/compiled); a
repeated one goes through the fast lane (one round trip, PostgreSQL's JSON text passed
through). Everything else runs on the Strawberry schema.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import strawberry
from graphql import GraphQLError, OperationType
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from strawberry.types.graphql import OperationType as StrawberryOperation

from api.pipeline import Prepared
from db.errors import CdmsError
from schema.compiled import lane, with_compiled_reads
from schema.compiled.sql import Built
from schema.context import ApiLimits, Context
from schema.errors import classify

log = logging.getLogger("cdms.api.execute")

QUERY, MUTATION = StrawberryOperation.QUERY, StrawberryOperation.MUTATION


@dataclass
class Result:
    """One operation's answer: the body's ``data``/``errors``/``extensions``, or (fast lane)
    the ``data`` JSON text as PostgreSQL wrote it."""

    data: Any = None
    errors: list[Any] = field(default_factory=list)  # formatted GraphQL errors
    extensions: dict[str, Any] = field(default_factory=dict)
    raw_data: str | None = None

    @property
    def unavailable(self) -> bool:
        """Nothing answered because the database is unreachable (HTTP 503)."""
        return (
            self.raw_data is None
            and self.data is None
            and bool(self.errors)
            and all(
                (e.get("extensions") or {}).get("code") == "SERVICE_UNAVAILABLE"
                for e in self.errors
            )
        )

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"data": self.data}
        if self.errors:
            out["errors"] = self.errors
        if self.extensions:
            out["extensions"] = self.extensions
        return out

    def json_bytes(self) -> bytes:
        import json

        if self.raw_data is not None:
            return b'{"data":' + self.raw_data.encode() + b"}"
        return json.dumps(self.body(), separators=(",", ":")).encode()


def failed(exc: CdmsError, ctx: Context) -> Result:
    """The operation's own failure (no data), as the executor reports it."""
    error = classify(GraphQLError(exc.message, original_error=exc), ctx.request_id)
    return Result(errors=[error.formatted])


class Executor:
    def __init__(
        self,
        schema: strawberry.Schema,
        engine: Engine,
        limits: ApiLimits,
        *,
        compiled_reads: bool = True,
        cube_sql: bool = True,
    ) -> None:
        self.schema = schema
        self.exec_schema = with_compiled_reads(schema) if compiled_reads else schema
        self.compiled_reads = compiled_reads
        self.engine = engine
        self.limits = limits
        self.cube_sql = cube_sql

    def context(self, principal: Any, **extra: Any) -> Context:
        ctx = Context(
            engine=self.engine,
            limits=self.limits,
            actor=principal.actor,
            role=principal.role,
            customer_id=principal.customer_id,
            **extra,
        )
        return ctx

    async def run(self, prepared: Prepared, ctx: Context, *, lane_ok: bool = True) -> Result:
        """A query or mutation. ``ctx`` is the request's (closed by the caller)."""
        if lane_ok and self.compiled_reads and prepared.kind is OperationType.QUERY:
            fast = await self._lane(prepared, ctx)
            if fast is not None:
                return fast
        result = await self.exec_schema.execute(
            prepared.query,
            variable_values=prepared.variables,
            context_value=ctx,
            operation_name=prepared.operation_name,
            allowed_operation_types=(QUERY, MUTATION),
        )
        return self._result(result, ctx)

    def _result(self, result: Any, ctx: Context) -> Result:
        errors = [classify(e, ctx.request_id).formatted for e in result.errors or []]
        return Result(result.data, errors, self._extensions(result.extensions or {}))

    def _extensions(self, extensions: dict[str, Any]) -> dict[str, Any]:
        if self.cube_sql or "cube" not in extensions:
            return extensions
        hidden = ("sql", "params")
        cube = [{k: v for k, v in e.items() if k not in hidden} for e in extensions["cube"]]
        return {**extensions, "cube": cube}

    async def _lane(self, prepared: Prepared, ctx: Context) -> Result | None:
        stmt = lane.lookup(
            self.exec_schema,
            self.limits,
            prepared.query,
            prepared.operation_name,
            prepared.variables,
        )
        if stmt is None:
            return None
        try:
            text = await run_in_threadpool(
                lane.fetch,
                self.engine,
                stmt,
                actor=ctx.actor,
                timeout_ms=self.limits.statement_timeout_ms,
                role=ctx.role,
                customer_id=ctx.customer_id,
            )
        except CdmsError as exc:  # TIMEOUT, SERVICE_UNAVAILABLE: as the executor reports them
            return failed(exc, ctx)
        except Exception:
            log.exception("request %s: fast lane failed; running the full pipeline", ctx.request_id)
            return None
        if lane.pending(stmt, text):
            return await self._complete(ctx, stmt, text)
        return Result(raw_data=text)

    async def _complete(self, ctx: Context, stmt: Built, text: str) -> Result:
        """The lane's answer with the predictions that are not stored computed on request."""
        import json

        from schema.compiled.predictions import complete

        data = json.loads(text)
        try:
            errors = await complete(ctx, stmt, data)
        except CdmsError as exc:
            return failed(exc, ctx)
        return Result(data, [classify(e, ctx.request_id).formatted for e in errors])

    async def subscribe(self, prepared: Prepared, ctx: Context) -> AsyncIterator[Result]:
        """The results of a subscription (or its one pre-execution failure)."""
        stream = await self.schema.subscribe(
            prepared.query,
            variable_values=prepared.variables,
            context_value=ctx,
            operation_name=prepared.operation_name,
        )
        try:
            async for result in stream:  # ExecutionResult, or one PreExecutionError
                yield self._result(result, ctx)
        finally:
            await stream.aclose()
