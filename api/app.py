"""The ASGI application: ``/graphql`` (POST operations, WebSocket subscriptions, GraphiQL
on GET), ``/healthz`` (liveness), ``/readyz`` (readiness), the dashboard; authentication in
front of all but those two."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from api.access import STAFF
from api.dashboard import DashboardAssets
from api.errors import http_exception
from api.graphiql import GraphiQLPage
from api.headers import NoSniff
from api.http import GraphQLHttp, HttpLimits, error_response
from api.pipeline import Pipeline, Policy
from api.readiness import ReadinessProbe, public
from api.rules import Access, Limits
from api.security import SecurityConfig, middleware
from api.ws import GraphQLSockets, SocketLimits
from db.migrate import head_revision, known_revisions
from schema.context import ApiLimits
from schema.execute import Executor

log = logging.getLogger("cdms.api")

HOUSEKEEPING_S = 60.0
PRUNE_EVERY = 60  # housekeeping rounds: hourly
_PRUNE = sa.text("SELECT app.prune_idempotency_keys(), app.prune_rate_buckets()")
# a customer's edits are pruned when it edits again (0033): these are of those who did not
_PRUNE_EDITS = sa.text(
    "DELETE FROM app.feedback_edits WHERE edited_at < now() - interval '24 hours'"
)


def _chores(engine: Engine, prune: bool) -> None:
    from semantic.rollups import flush_hits

    with engine.begin() as conn:
        flush_hits(conn)  # the rollups' hits this process counted (rollups --explain)
        if prune:  # idempotency keys and feedback edits older than a day, idle buckets
            conn.execute(_PRUNE)
            conn.execute(_PRUNE_EDITS)


async def _housekeeping(engine: Engine) -> None:
    """Every minute: the rollup hits; hourly: prune keys, feedback edits and buckets."""
    rounds = 0
    while True:
        await asyncio.sleep(HOUSEKEEPING_S)
        rounds += 1
        try:
            await run_in_threadpool(_chores, engine, rounds % PRUNE_EVERY == 0)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("housekeeping skipped: %s", str(exc).splitlines()[0])


@dataclass(frozen=True)
class AppOptions:
    """What an app is built with beside the security settings (tests override parts)."""

    api: ApiLimits = field(default_factory=ApiLimits)
    http: HttpLimits = field(default_factory=HttpLimits)
    limits: Limits | None = None  # None: Limits() with the security settings' cost limit
    access: Access | None = None  # who may use what; None: the schema's (api/access.py)
    sockets: SocketLimits = field(default_factory=SocketLimits)

    @classmethod
    def from_env(cls) -> AppOptions:
        from api.settings import Settings

        settings = Settings.from_env()
        return cls(
            api=ApiLimits(statement_timeout_ms=settings.db.statement_timeout_ms),
            http=HttpLimits(
                max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s
            ),
            sockets=SocketLimits(send_timeout_s=settings.ws_send_timeout_s),
        )


class GraphQLEndpoint:
    """``/graphql`` for every transport: POST (api/http.py) and WebSocket (api/ws.py);
    browsers get GraphiQL from ``api.graphiql.GraphiQLPage`` in front of it."""

    def __init__(self, engine: Engine, security: SecurityConfig, options: AppOptions) -> None:
        from schema.app import graphql_schema, schema

        limits = options.limits or Limits(
            max_cost=security.max_cost,
            default_page=options.api.default_page_size,
            max_page=options.api.max_page_size,
        )
        policy = Policy(
            security.production, security.persisted_only, limits, recheck_s=security.apikey_cache_s
        )
        self.rate = security.rate_limiter(engine)
        gschema = graphql_schema()
        self.pipeline = Pipeline(gschema, engine, policy, self.rate, options.access)
        self.executor = Executor(
            schema, gschema, engine, options.api, cube_sql=security.show_cube_sql
        )
        self.http = GraphQLHttp(self.pipeline, self.executor, options.http)
        self.sockets = GraphQLSockets(
            self.pipeline,
            self.executor,
            security,
            options.sockets,
            max_message_bytes=options.http.max_body_bytes,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.sockets(scope, receive, send)
            return
        if scope.get("method") == "GET":
            refusal = error_response(
                405,
                "METHOD_NOT_ALLOWED",
                "use POST for operations (a browser asking for HTML gets GraphiQL)",
                {"Allow": "POST"},
            )
            await refusal(scope, receive, send)
            return
        await self.http(scope, receive, send)


class App(Starlette):
    """Starlette with :class:`api.headers.NoSniff` outside all of it: every answer says
    ``nosniff``, the 500 of Starlette's error middleware too."""

    def build_middleware_stack(self) -> ASGIApp:
        return NoSniff(super().build_middleware_stack())


def create_app(
    engine: Engine,
    security: SecurityConfig | None = None,
    options: AppOptions | None = None,
) -> Starlette:
    """The app; ``security`` and ``options`` default to the environment's settings
    (authentication and limits: api.security, docs/security.md)."""
    head = head_revision()
    security = security or SecurityConfig.from_env()
    options = options or AppOptions.from_env()
    graphql = GraphQLEndpoint(engine, security, options)

    known = known_revisions()
    probe = ReadinessProbe(engine, head, known)

    def shown(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """The probes' detail for staff (and outside production); else the ready flags."""
        principal = request.scope.get("state", {}).get("principal")
        if not security.production or (principal is not None and principal.role in STAFF):
            return body
        return public(body)

    async def healthz(request: Request) -> JSONResponse:
        """Liveness: the process answers and reaches the database. 200 while the warehouse
        loads or models are missing (a container busy loading is not restarted); the
        warehouse's freshness and failing loads are in its detail."""
        try:
            revision = await run_in_threadpool(probe.revision)
            warehouse = await run_in_threadpool(probe.warehouse)
        except sa.exc.SQLAlchemyError:
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        body = {
            "status": "ok" if revision == head else "degraded",
            "database": "ok",
            "revision": revision,
            "expectedRevision": head,
            "warehouse": warehouse,
        }
        return JSONResponse(shown(request, body))

    async def readyz(request: Request) -> JSONResponse:
        """Readiness (api/readiness.py): 200 once the operational API and the warehouse
        are ready, 503 before; models are reported, and do not gate it."""
        body, ready = await run_in_threadpool(probe.check)
        return JSONResponse(
            shown(request, body),
            status_code=200 if ready else 503,
            headers={} if ready else {"Retry-After": "5"},
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_housekeeping(engine), name="cdms housekeeping")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(sa.exc.SQLAlchemyError):  # keep the last minute's hits
                await run_in_threadpool(_chores, engine, False)

    app = App(
        lifespan=lifespan,
        exception_handlers={HTTPException: http_exception},  # the router's 404 and 405
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/graphql", graphql),  # every method: the endpoint answers 405 in JSON
            WebSocketRoute("/graphql", graphql),
        ],
        # the dashboard's and GraphiQL's static pages hold no data: served before
        # authentication
        middleware=[
            Middleware(DashboardAssets),
            Middleware(GraphiQLPage),
            *middleware(engine, security, graphql.rate),
        ],
    )
    app.state.engine = engine
    app.state.graphql = graphql
    return app


def settle() -> None:
    """Before serving: move every object start-up made (the GraphQL schema, the catalog,
    the cube model...) out of the garbage collector's sight. A full collection otherwise
    walks them all, ~100 ms during which no request is answered: the reads' p99 at any
    load (bench/peer.py); with them frozen it takes ~2 ms."""
    gc.collect()
    gc.freeze()


def worker_app() -> Starlette:
    """The app of one uvicorn worker process of ``cdms serve --workers N``: its own
    engine on ``DATABASE_URL``, which the supervising process set to the database it
    prepared (migrated, seeded) before starting the workers."""
    from db.engine import get_engine

    app = create_app(get_engine())
    settle()
    return app
