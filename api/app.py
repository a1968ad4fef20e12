"""The ASGI application: health now; GraphQL, dashboard and the rest mount here."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from api.dashboard import DashboardAssets
from api.graphiql import GraphiQLPage
from api.graphql import GraphQLEndpoint
from api.secure_graphql import secure_graphql
from api.security import SecurityConfig, middleware
from db.migrate import head_revision


def create_app(
    engine: Engine,
    graphql: GraphQLEndpoint | None = None,
    security: SecurityConfig | None = None,
) -> Starlette:
    """The app; ``graphql`` and ``security`` default to the environment's settings
    (authentication and limits: api.security, docs/security.md)."""
    head = head_revision()
    graphql = graphql or secure_graphql(engine)
    security = security or SecurityConfig.from_env()

    def _probe() -> str | None:
        with engine.connect() as conn:
            rev = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            return None if rev is None else str(rev)

    async def healthz(request: Request) -> JSONResponse:
        try:
            revision = await run_in_threadpool(_probe)
        except sa.exc.SQLAlchemyError:
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"}, status_code=503
            )
        ok = revision == head
        return JSONResponse(
            {
                "status": "ok" if ok else "degraded",
                "database": "ok",
                "revision": revision,
                "expectedRevision": head,
            },
            status_code=200 if ok else 503,
        )

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
        ],
        # the dashboard's and GraphiQL's static pages hold no data: served before authentication
        middleware=[
            Middleware(DashboardAssets),
            Middleware(GraphiQLPage),
            *middleware(engine, security),
        ],
    )
    app.state.engine = engine
    return app


def worker_app() -> Starlette:
    """The app of one uvicorn worker process of ``cdms serve --workers N``: its own
    engine on ``DATABASE_URL``, which the supervising process set to the database it
    prepared (migrated, seeded, models trained) before starting the workers."""
    from db.engine import get_engine

    return create_app(get_engine())
