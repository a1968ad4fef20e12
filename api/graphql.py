"""``/graphql``: POST runs operations (single or a capped batch), GET serves GraphiQL,
WebSocket speaks graphql-transport-ws for subscriptions.

POST is handled here rather than by Strawberry's view so that every request-level failure
gets a GraphQL-style JSON body and a 4xx (never a 500): an oversized body is refused from
its Content-Length (or while streaming) with 413 without reading the rest; malformed JSON,
a missing query or too many batched operations get 400. Each request gets one
``schema.context.Context`` (its read transaction is rolled back at the end).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import GraphQLError
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from db.errors import CdmsError
from schema.compiled import lane, with_compiled_reads
from schema.compiled.sql import Built
from schema.context import ApiLimits, Context
from schema.errors import classify

log = logging.getLogger("cdms.api.graphql")


@dataclass(frozen=True)
class HttpLimits:
    max_body_bytes: int = 1_000_000
    max_batch: int = 10


_OFF = {"0", "false", "no", "off"}


class _TooLarge(Exception):
    pass


def _error_body(message: str, code: str = "BAD_USER_INPUT") -> dict[str, Any]:
    return {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(_error_body(message, code), status_code=status)


class _StrawberryView(GraphQL[Context, None]):
    """Strawberry's view, used for GraphiQL (GET) and subscriptions (WebSocket)."""

    def __init__(self, schema: strawberry.Schema, make_context: Any) -> None:
        super().__init__(schema, graphql_ide="graphiql", allow_queries_via_get=False)
        self._make_context = make_context

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None
    ) -> Context:
        ctx: Context = self._make_context()
        return ctx


class GraphQLEndpoint:
    def __init__(
        self,
        schema: strawberry.Schema,
        engine: Engine,
        api_limits: ApiLimits,
        http_limits: HttpLimits,
        compiled_reads: bool = False,
    ) -> None:
        self.schema = schema
        # with compiled_reads, queries the compiled read path covers run as one SQL statement;
        # everything else runs on Strawberry (see schema/compiled)
        self.exec_schema = with_compiled_reads(schema) if compiled_reads else schema
        self.compiled_reads = compiled_reads
        self.engine = engine
        self.api_limits = api_limits
        self.http_limits = http_limits
        self.view = _StrawberryView(schema, self.make_context)

    def make_context(self) -> Context:
        return Context(engine=self.engine, limits=self.api_limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" or scope.get("method") == "GET":
            await self.view(scope, receive, send)
            return
        request = Request(scope, receive)
        response = await self.handle_post(request)
        await response(scope, receive, send)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.http_limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def handle_post(self, request: Request) -> Response:
        if request.method != "POST":
            return _error(405, "METHOD_NOT_ALLOWED", "use POST for operations, GET for GraphiQL")
        try:
            body = await self._read_body(request)
        except _TooLarge:
            return _error(
                413,
                "PAYLOAD_TOO_LARGE",
                f"request body exceeds {self.http_limits.max_body_bytes} bytes",
            )
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "BAD_USER_INPUT", "request body is not valid JSON")
        if isinstance(payload, list):
            if not payload:
                return _error(400, "BAD_USER_INPUT", "empty batch")
            if len(payload) > self.http_limits.max_batch:
                return _error(
                    400,
                    "QUERY_TOO_COMPLEX",
                    f"batch of {len(payload)} operations exceeds {self.http_limits.max_batch}",
                )
            ops = payload
        else:
            ops = [payload]
        for op in ops:
            problem = _check_operation(op)
            if problem:
                return _error(400, "BAD_USER_INPUT", problem)
        if not isinstance(payload, list):
            fast = await self.lane(payload)
            if fast is not None:
                return fast
        ctx = self.make_context()
        try:
            results = [await self._execute(op, ctx) for op in ops]
        finally:
            await ctx.close()
        if isinstance(payload, list):
            return JSONResponse([body for body, _ in results])
        single, status = results[0]
        return JSONResponse(single, status_code=status)

    async def lane(self, op: dict[str, Any]) -> Response | None:
        """The response from the fast lane (schema/compiled/lane.py) when the operation's
        statement template is cached; None to run the full pipeline."""
        if not self.compiled_reads:
            return None
        stmt = lane.lookup(
            self.exec_schema,
            self.api_limits,
            op.get("query"),
            op.get("operationName"),
            op.get("variables"),
        )
        if stmt is None:
            return None
        ctx = self.make_context()
        try:
            text = await run_in_threadpool(
                lane.fetch,
                self.engine,
                stmt,
                actor=ctx.actor,
                timeout_ms=self.api_limits.statement_timeout_ms,
                role=ctx.role,
                customer_id=ctx.customer_id,
            )
        except CdmsError as exc:  # TIMEOUT, SERVICE_UNAVAILABLE: as the executor reports them
            return _failed(exc, ctx)
        except Exception:
            log.exception("request %s: fast lane failed; running the full pipeline", ctx.request_id)
            return None
        if lane.pending(stmt, text):
            return await self._complete(ctx, stmt, text)
        return Response(b'{"data":' + text.encode() + b"}", media_type="application/json")

    async def _complete(self, ctx: Context, stmt: Built, text: str) -> Response:
        """The lane's answer with the predictions that are not stored computed on request
        (schema.compiled.predictions: as CompiledReads does after the same statement)."""
        from schema.compiled.predictions import complete

        data = json.loads(text)
        try:
            errors = await complete(ctx, stmt, data)
        except CdmsError as exc:  # e.g. TIMEOUT: the request's own failure, as CompiledReads
            return _failed(exc, ctx)
        finally:
            await ctx.close()
        body: dict[str, Any] = {"data": data}
        if errors:
            body["errors"] = [classify(e, ctx.request_id).formatted for e in errors]
        return JSONResponse(body)

    async def _execute(self, op: dict[str, Any], ctx: Context) -> tuple[dict[str, Any], int]:
        """One operation → (response body, HTTP status when it is sent alone)."""
        try:
            result = await self.exec_schema.execute(
                op["query"],
                variable_values=op.get("variables"),
                context_value=ctx,
                operation_name=op.get("operationName"),
                allowed_operation_types=(OperationType.QUERY, OperationType.MUTATION),
            )
        except InvalidOperationTypeError:
            message = "subscriptions are served over WebSocket (graphql-transport-ws) on /graphql"
            return _error_body(message), 400
        except CannotGetOperationTypeError:
            message = (
                "operationName does not name an operation of the document"
                " (or the document has several operations and no operationName)"
            )
            return _error_body(message), 400
        out: dict[str, Any] = {"data": result.data}
        if result.extensions:
            out["extensions"] = result.extensions
        if result.errors:
            # parse errors bypass the schema's extensions: classify here too (idempotent)
            out["errors"] = [classify(e, ctx.request_id).formatted for e in result.errors]
        return out, 200


def _failed(exc: CdmsError, ctx: Context) -> JSONResponse:
    """The request's own failure (no data), as the executor reports it."""
    error = classify(GraphQLError(exc.message, original_error=exc), ctx.request_id)
    return JSONResponse({"data": None, "errors": [error.formatted]})


def _check_operation(op: Any) -> str | None:
    if not isinstance(op, dict):
        return "each operation must be a JSON object with a query"
    query = op.get("query")
    if not isinstance(query, str) or not query.strip():
        return "no GraphQL query found in the request"
    variables = op.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return "variables must be a JSON object"
    name = op.get("operationName")
    if name is not None and not isinstance(name, str):
        return "operationName must be a string"
    return None


def default_graphql(engine: Engine) -> GraphQLEndpoint:
    """The endpoint with the schema and limits configured by ``CDMS_*`` variables."""
    from api.settings import Settings
    from schema.app import schema

    settings = Settings.from_env()
    return GraphQLEndpoint(
        schema,
        engine,
        ApiLimits(statement_timeout_ms=settings.db.statement_timeout_ms),
        HttpLimits(max_body_bytes=settings.max_body_bytes),
        compiled_reads=compiled_reads_enabled(),
    )


def compiled_reads_enabled() -> bool:
    """``CDMS_COMPILED_READS``: the compiled read path is on unless set to 0/false/no/off."""
    return os.environ.get("CDMS_COMPILED_READS", "1").strip().lower() not in _OFF
