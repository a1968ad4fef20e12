"""Security settings (``CDMS_*``) and the ASGI middleware that authenticates every request
and rate-limits it per principal (token bucket, 429 with ``Retry-After``).

``/healthz`` is always open. The principal is left in ``scope["state"]["principal"]``
(``request.state.principal``) for the GraphQL endpoint.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import UnauthenticatedError, authenticate
from api.settings import _bool, _int
from db.errors import ConfigError

OPEN_PATHS = frozenset({"/healthz"})


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
    if rate < 0 or burst < 0 or (rate > 0 and burst < 1):
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
    cors_origins: tuple[str, ...] = ()
    rate_per_s: float = 0.0
    burst: int = 0
    persisted_only: bool = False
    max_cost: int = 50_000
    apikey_cache_s: float = 0.0  # CDMS_APIKEY_CACHE_SECONDS (from_env: default 5)

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
        return cls(
            production=production,
            demo_open=_bool("CDMS_DEMO_OPEN", False),
            jwt_secret=secret,
            cors_origins=origins,
            rate_per_s=rate,
            burst=burst,
            persisted_only=_bool("CDMS_PERSISTED_ONLY", False),
            max_cost=_int("CDMS_MAX_QUERY_COST", 50_000),
            apikey_cache_s=_seconds("CDMS_APIKEY_CACHE_SECONDS", 5.0),
        )


@dataclass
class TokenBuckets:
    """One bucket per principal: ``burst`` tokens, refilled at ``rate`` per second."""

    rate: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str, now: float | None = None) -> float:
        """0 if a request may pass now, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > 10_000:  # forget idle principals (their buckets are full)
            horizon = self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < horizon}
        return (1.0 - tokens) / self.rate


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status, headers=headers or None)


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, engine: Engine, config: SecurityConfig) -> None:
        self.app = app
        self.engine = engine
        self.config = config
        self.buckets = (
            TokenBuckets(config.rate_per_s, config.burst) if config.rate_per_s > 0 else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            principal = await authenticate(
                self.engine,
                headers.get("authorization"),
                jwt_secret=self.config.jwt_secret,
                demo_open=self.config.demo_open,
                key_cache_s=self.config.apikey_cache_s,
            )
        except UnauthenticatedError as exc:
            await self._refuse(scope, receive, send, 401, exc.code, exc.message)
            return
        if self.buckets is not None:
            wait = self.buckets.take(principal.bucket)
            if wait > 0:
                retry = str(max(1, math.ceil(wait)))
                await self._refuse(
                    scope,
                    receive,
                    send,
                    429,
                    "RATE_LIMITED",
                    f"rate limit of {self.config.rate_per_s:g} requests/s exceeded; "
                    f"retry after {retry} s",
                    retry_after=retry,
                )
                return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["principal"] = principal
        await self.app(scope, receive, send)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        code: str,
        message: str,
        retry_after: str | None = None,
    ) -> None:
        if scope["type"] == "websocket":
            # closing before accepting refuses the handshake (HTTP 403)
            await send({"type": "websocket.close", "code": 4401 if status == 401 else 4429})
            return
        extra: dict[str, str] = {}
        if status == 401:
            extra["WWW-Authenticate"] = "Bearer"
        if retry_after is not None:
            extra["Retry-After"] = retry_after
        await error_response(status, code, message, **extra)(scope, receive, send)


def middleware(engine: Engine, config: SecurityConfig) -> list[Middleware]:
    """Starlette middleware, outermost first: CORS (when configured), then authentication
    and rate limits."""
    stack: list[Middleware] = []
    if config.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        )
    stack.append(Middleware(SecurityMiddleware, engine=engine, config=config))
    return stack
