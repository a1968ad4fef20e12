"""``/graphql`` for authenticated principals: the API's endpoint with the operation guard
in front and the caller plugged into the request context.

Each request's principal (left on the scope by ``api.security.SecurityMiddleware``) becomes
the ``Context``'s actor, role and customer, so every transaction of the request runs as
``cdms_api`` under row-level security. Before the schema sees a POST, persisted queries are
resolved and ``api.guard`` checks roles, introspection and cost; WebSocket operations go
through the same checks. GraphiQL is for admins in production.
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections import OrderedDict
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    GraphQLError,
)
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send
from strawberry.types.execution import PreExecutionError

from api.auth import Principal
from api.graphql import (
    GraphQLEndpoint,
    HttpLimits,
    _error,
    _StrawberryView,
    _TooLarge,
    compiled_reads_enabled,
)
from api.guard import Document, OperationGuard
from db.errors import CdmsError
from schema.context import ApiLimits, Context

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "cdms_principal", default=None
)


# parsed documents by query text, for the guard: parsing is the guard's main cost and a
# client repeats the same few queries with different variables. Only successful parses
# are kept; the AST is only read, never changed.
_PARSED_SIZE = 256
_PARSED_MAX_CHARS = 50_000
_parsed: OrderedDict[str, DocumentNode] = OrderedDict()
_parsed_lock = threading.Lock()


def _parse(query: str) -> DocumentNode:
    with _parsed_lock:
        doc = _parsed.get(query)
        if doc is not None:
            _parsed.move_to_end(query)
            return doc
    doc = Document.parse(query)  # the guard's own parse and token limit
    if len(query) <= _PARSED_MAX_CHARS:
        with _parsed_lock:
            _parsed[query] = doc
            while len(_parsed) > _PARSED_SIZE:
                _parsed.popitem(last=False)
    return doc


class _CachedDocument(Document):
    """``api.guard.Document`` built from a cached parse (same operation choice)."""

    @staticmethod
    def parse(query: str) -> DocumentNode:
        return _parse(query)


def _check(guard: OperationGuard, op: dict[str, Any], principal: Principal) -> None:
    """``guard.check(op, principal)`` with the document parsed once per query text (a guard
    overriding ``check`` keeps its own)."""
    if type(guard).check is not OperationGuard.check:
        guard.check(op, principal)
        return
    variables = op.get("variables")
    try:
        doc = _CachedDocument(
            op["query"], variables if isinstance(variables, dict) else None, op.get("operationName")
        )
    except GraphQLError:
        return  # unparsable: the schema reports it
    guard.check_document(doc, principal)


def _status(exc: CdmsError) -> int:
    return 403 if exc.code == "FORBIDDEN" else 400


class _GuardedSchema:
    """The schema as the WebSocket transport sees it: each operation passes the guard."""

    def __init__(self, schema: strawberry.Schema, guard: OperationGuard) -> None:
        self._schema = schema
        self._guard = guard

    def __getattr__(self, name: str) -> Any:
        return getattr(self._schema, name)

    async def stream(self, query: str, **kw: Any) -> Any:
        principal = getattr(kw.get("context_value"), "principal", None)
        if isinstance(principal, Principal):
            op = {
                "query": query,
                "variables": kw.get("variable_values"),
                "operationName": kw.get("operation_name"),
            }
            try:
                self._guard.check(op, principal)
            except CdmsError as exc:
                error = GraphQLError(exc.message, extensions={"code": exc.code, **exc.fields})

                async def refused() -> Any:
                    yield PreExecutionError(data=None, errors=[error])

                return refused()
        return await self._schema.stream(query, **kw)


class SecureGraphQLEndpoint(GraphQLEndpoint):
    def __init__(
        self,
        schema: strawberry.Schema,
        engine: Engine,
        api_limits: ApiLimits,
        http_limits: HttpLimits,
        guard: OperationGuard,
        **kw: Any,
    ) -> None:
        super().__init__(schema, engine, api_limits, http_limits, **kw)
        self.guard = guard
        guarded: Any = _GuardedSchema(schema, guard)
        self.view = _StrawberryView(guarded, self.make_context)

    def make_context(self) -> Context:
        principal = _principal.get()
        if principal is None:
            return super().make_context()
        ctx = Context(
            engine=self.engine,
            limits=self.api_limits,
            actor=principal.actor,
            role=principal.role,
            customer_id=principal.customer_id,
        )
        ctx.principal = principal  # type: ignore[attr-defined]
        return ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = scope.get("state", {}).get("principal")
        principal = found if isinstance(found, Principal) else None
        token = _principal.set(principal)
        try:
            if scope["type"] == "http" and principal is not None:
                if scope.get("method") == "GET":
                    if self.guard.production and not principal.is_admin:
                        refusal = _error(403, "FORBIDDEN", "GraphiQL is for admins in production")
                        await refusal(scope, receive, send)
                        return
                elif scope.get("method") == "POST":
                    await self._guarded_post(scope, receive, send, principal)
                    return
            await super().__call__(scope, receive, send)
        finally:
            _principal.reset(token)

    async def _guarded_post(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal
    ) -> None:
        try:
            body = await self._read_body(Request(scope, receive))
        except _TooLarge:
            limit = self.http_limits.max_body_bytes
            await _error(413, "PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes")(
                scope, receive, send
            )
            return
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            payload = None  # the endpoint answers malformed bodies itself
        if isinstance(payload, dict | list) and payload:
            ops = payload if isinstance(payload, list) else [payload]
            try:
                checked = []
                for op in ops[: self.http_limits.max_batch]:
                    if isinstance(op, dict):
                        op = await self.guard.resolve(op, principal)
                        if isinstance(op.get("query"), str):
                            _check(self.guard, op, principal)
                    checked.append(op)
            except CdmsError as exc:
                await _error(_status(exc), exc.code, exc.message)(scope, receive, send)
                return
            if isinstance(payload, dict) and isinstance(checked[0], dict):
                fast = await self.lane(checked[0])
                if fast is not None:
                    await fast(scope, receive, send)
                    return
            checked.extend(ops[self.http_limits.max_batch :])
            body = json.dumps(checked if isinstance(payload, list) else checked[0]).encode()
        await super().__call__(_with_length(scope, len(body)), _replay(body), send)


def _with_length(scope: Scope, length: int) -> Scope:
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
    headers.append((b"content-length", str(length).encode()))
    return {**scope, "headers": headers}


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def secure_graphql(engine: Engine) -> SecureGraphQLEndpoint:
    """The endpoint with the schema, limits and security configured by ``CDMS_*``."""
    from api.security import SecurityConfig
    from api.settings import Settings
    from schema.app import schema

    settings = Settings.from_env()
    security = SecurityConfig.from_env()
    limits = ApiLimits(statement_timeout_ms=settings.db.statement_timeout_ms)
    guard = OperationGuard(
        engine,
        production=security.production,
        persisted_only=security.persisted_only,
        max_cost=security.max_cost,
        default_page=limits.default_page_size,
        max_page=limits.max_page_size,
    )
    return SecureGraphQLEndpoint(
        schema,
        engine,
        limits,
        HttpLimits(max_body_bytes=settings.max_body_bytes),
        guard,
        compiled_reads=compiled_reads_enabled(),
    )
