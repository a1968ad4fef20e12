"""Security settings (``CDMS_*``) and the ASGI middleware that authenticates every request.

``/healthz`` and ``/readyz`` are always open (they hold no secrets: api/readiness.py).
The principal is left in ``scope["state"]["principal"]``
for the GraphQL endpoints. A request must carry at most one ``Authorization`` header.
Requests whose credentials fail are rate-limited per client address (the principal's own
bucket is taken per operation by api/pipeline.py). While the database cannot be reached
to check an API key, the answer is 503 SERVICE_UNAVAILABLE with Retry-After (a WebSocket
is closed with 1013, try again later).

A WebSocket handshake without an ``Authorization`` header is let through to api/ws.py,
which takes the token from the ``connection_init`` payload instead (browsers cannot set
headers on a WebSocket); a handshake with a bad token is refused here (4401).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import JwtRules, UnauthenticatedError, authenticate
from api.http import error_response
from api.ratelimit import RateLimitedError, RateLimiter
from api.settings import _bool, _int
from db.errors import CdmsError, ConfigError

OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def _rate(raw: str | None, production: bool) -> tuple[float, int]:
    """``CDMS_RATE_LIMIT``: ``RATE[,BURST]`` requests/s; 0 turns it off."""
    if raw is None or not raw.strip():
        return (50.0, 100) if production else (0.0, 0)
    head, _, tail = raw.partition(",")
    try:
        rate = float(head)
        burst = int(tail) if tail.strip() else max(1, math.ceil(rate * 2))
    except ValueError:
        raise ConfigError(f"CDMS_RATE_LIMIT must be RATE[,BURST], got {raw!r}") from None
    if not math.isfinite(rate) or rate < 0 or burst < 0 or (rate > 0 and burst < 1):
        raise ConfigError(f"CDMS_RATE_LIMIT must be positive, got {raw!r}")
    return rate, burst


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be 0 or more seconds, got {raw!r}")
    return value


@dataclass(frozen=True)
class SecurityConfig:
    production: bool = False
    demo_open: bool = False
    jwt_secret: str | None = None
    jwt_leeway_s: float = 30.0
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_max_lifetime_s: float = 400 * 86_400
    cors_origins: tuple[str, ...] = ()
    rate_per_s: float = 0.0
    burst: int = 0
    persisted_only: bool = False
    max_cost: int = 50_000
    apikey_cache_s: float = 0.0  # CDMS_APIKEY_CACHE_SECONDS (from_env: default 5)
    cube_sql: bool | None = None  # None: shown outside production

    @property
    def jwt_rules(self) -> JwtRules | None:
        if not self.jwt_secret:
            return None
        return JwtRules(
            self.jwt_secret,
            leeway_s=self.jwt_leeway_s,
            audience=self.jwt_audience,
            issuer=self.jwt_issuer,
            max_lifetime_s=self.jwt_max_lifetime_s,
        )

    @property
    def show_cube_sql(self) -> bool:
        return (not self.production) if self.cube_sql is None else self.cube_sql

    @classmethod
    def from_env(cls) -> SecurityConfig:
        production = os.environ.get("CDMS_ENV", "development") == "production"
        rate, burst = _rate(os.environ.get("CDMS_RATE_LIMIT"), production)
        secret = os.environ.get("CDMS_JWT_SECRET") or None
        if secret is not None and len(secret) < 32:
            raise ConfigError("CDMS_JWT_SECRET must have at least 32 characters")
        origins = tuple(
            o.strip() for o in os.environ.get("CDMS_CORS_ORIGINS", "").split(",") if o.strip()
        )
        cube_sql = os.environ.get("CDMS_CUBE_SQL")
        return cls(
            production=production,
            demo_open=_bool("CDMS_DEMO_OPEN", False),
            jwt_secret=secret,
            jwt_leeway_s=_seconds("CDMS_JWT_LEEWAY_SECONDS", 30.0),
            jwt_audience=os.environ.get("CDMS_JWT_AUDIENCE") or None,
            jwt_issuer=os.environ.get("CDMS_JWT_ISSUER") or None,
            jwt_max_lifetime_s=_seconds("CDMS_JWT_MAX_LIFETIME_SECONDS", 400 * 86_400.0),
            cors_origins=origins,
            rate_per_s=rate,
            burst=burst,
            persisted_only=_bool("CDMS_PERSISTED_ONLY", False),
            max_cost=_int("CDMS_MAX_QUERY_COST", 50_000),
            apikey_cache_s=_seconds("CDMS_APIKEY_CACHE_SECONDS", 5.0),
            cube_sql=None if not cube_sql else _bool("CDMS_CUBE_SQL", False),
        )

    def rate_limiter(self, engine: Engine) -> RateLimiter | None:
        if self.rate_per_s <= 0:
            return None
        return RateLimiter(engine, self.rate_per_s, self.burst)


def client_bucket(scope: Scope) -> str:
    client = scope.get("client")
    return f"addr:{client[0] if client else 'unknown'}"


class SecurityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        engine: Engine,
        config: SecurityConfig,
        rate: RateLimiter | None = None,
    ) -> None:
        self.app = app
        self.engine = engine
        self.config = config
        self.rate = rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        found = [v for k, v in scope["headers"] if k.lower() == b"authorization"]
        if len(found) > 1:
            await self._refuse(
                scope, receive, send, 400, "BAD_USER_INPUT", "send exactly one Authorization header"
            )
            return
        authorization = found[0].decode("latin-1") if found else None
        state: dict[str, Any] = scope.setdefault("state", {})
        if scope["type"] == "websocket" and authorization is None and not self.config.demo_open:
            state["principal"] = None  # api/ws.py authenticates from connection_init
            await self.app(scope, receive, send)
            return
        try:
            principal = await authenticate(
                self.engine,
                authorization,
                jwt_rules=self.config.jwt_rules,
                demo_open=self.config.demo_open,
                key_cache_s=self.config.apikey_cache_s,
            )
        except UnauthenticatedError as exc:
            try:
                await self._admit_client(scope)
            except RateLimitedError as limited:
                await self._refuse(
                    scope, receive, send, 429, limited.code, limited.message,
                    {"Retry-After": str(limited.retry_after)},
                )  # fmt: skip
                return
            except CdmsError:
                pass  # the database is down: the credentials are still wrong
            await self._refuse(
                scope, receive, send, 401, exc.code, exc.message, {"WWW-Authenticate": "Bearer"}
            )
            return
        except CdmsError as exc:  # SERVICE_UNAVAILABLE: an API key cannot be checked now
            await self._refuse(
                scope, receive, send, 503, exc.code, exc.message, {"Retry-After": "1"}
            )
            return
        state["principal"] = principal
        await self.app(scope, receive, send)

    async def _admit_client(self, scope: Scope) -> None:
        if self.rate is None:
            return
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(self.rate.admit, client_bucket(scope), 1)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        if scope["type"] == "websocket":
            # closing before accepting refuses the handshake
            close = {401: 4401, 403: 4403, 429: 4429, 503: 1013}.get(status, 4400)
            await send({"type": "websocket.close", "code": close, "reason": message[:120]})
            return
        await error_response(status, code, message, headers)(scope, receive, send)


def middleware(
    engine: Engine, config: SecurityConfig, rate: RateLimiter | None = None
) -> list[Middleware]:
    """Starlette middleware, outermost first: CORS (when configured), then authentication."""
    stack: list[Middleware] = []
    if config.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Idempotency-Key",
                    "Cdms-Commit-Lsn",
                ],
                expose_headers=["Cdms-Commit-Lsn"],
                max_age=600,
            )
        )
    stack.append(Middleware(SecurityMiddleware, engine=engine, config=config, rate=rate))
    return stack
