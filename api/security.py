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

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import DEMO_PRINCIPAL, JwtRules, Principal, UnauthenticatedError, authenticate
from api.http import error_response
from api.ratelimit import RateLimitedError, RateLimiter
from api.readiness import pool_exhausted
from api.settings import Settings
from db.errors import CdmsError

OPEN_PATHS = frozenset({"/healthz", "/readyz"})


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
    # CDMS_DEMO_HOSTS: host names under which a demo-open server lets a request without a
    # token in from any client address: the operator opens the demo to a network
    # (docs/security.md); without them, only this machine's clients are let in
    demo_hosts: tuple[str, ...] = ()

    def demo_open_for(self, scope: Scope) -> bool:
        """Whether a request without a token is the demo's admin: demo-open, and either
        addressed by a name of ``CDMS_DEMO_HOSTS`` (the operator's choice to open the demo
        to whoever reaches the server under it), or sent from this machine (a loopback
        client address) to ``localhost`` or an IP address. Another machine of the network
        reaches the server by its IP address: its own address is not loopback. A page of
        another site that makes its own host name resolve to 127.0.0.1 (DNS rebinding) is
        same-origin with the API as far as the browser knows; its requests carry that name
        in ``Host``."""
        if not self.demo_open:
            return False
        name = host_name(scope)
        if name is None:
            return False
        if name in self.demo_hosts:
            return True
        return _local_name(name) and loopback_client(scope)

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
        return cls.of(Settings.from_env())

    @classmethod
    def of(cls, settings: Settings) -> SecurityConfig:
        rate, burst = settings.rate
        return cls(
            production=settings.production,
            demo_open=settings.demo_open,
            jwt_secret=settings.jwt_secret or None,
            jwt_leeway_s=settings.jwt_leeway_s,
            jwt_audience=settings.jwt_audience,
            jwt_issuer=settings.jwt_issuer,
            jwt_max_lifetime_s=settings.jwt_max_lifetime_s,
            cors_origins=tuple(o.strip() for o in settings.cors_origins.split(",") if o.strip()),
            rate_per_s=rate,
            burst=burst,
            persisted_only=settings.persisted_only,
            max_cost=settings.max_query_cost,
            apikey_cache_s=settings.apikey_cache_s,
            cube_sql=settings.cube_sql,
            demo_hosts=tuple(
                h.strip().lower() for h in settings.demo_hosts.split(",") if h.strip()
            ),
        )

    def rate_limiter(self, engine: Engine) -> RateLimiter | None:
        if self.rate_per_s <= 0:
            return None
        return RateLimiter(engine, self.rate_per_s, self.burst)


def host_of(scope: Scope) -> SplitResult | None:
    """The request's one ``Host`` header, parsed (None: none, several, or not a host)."""
    hosts: list[str] = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
    if len(hosts) != 1:
        return None
    try:
        return urlsplit("//" + hosts[0].strip())
    except ValueError:  # an unclosed IPv6 bracket
        return None


def host_name(scope: Scope) -> str | None:
    """The host name (or IP address) of the request's one ``Host`` header, lower-case,
    without a trailing dot (None: no usable ``Host``)."""
    host = host_of(scope)
    name = None if host is None else host.hostname
    return name.rstrip(".") if name else None


def _local_name(name: str) -> bool:
    """``localhost`` (and ``*.localhost``) or an IP address: names no other site's page
    can be served under."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def loopback_client(scope: Scope) -> bool:
    """Whether the client's address is a loopback one: a program of this machine. The
    address is the one the server saw, or the one a proxy that uvicorn trusts
    (``FORWARDED_ALLOW_IPS``, by default 127.0.0.1 and ::1) put in ``X-Forwarded-For``."""
    client = scope.get("client")
    return client is not None and is_loopback(str(client[0]))


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback IP address (127.0.0.0/8, ::1, ::ffff:127.x.y.z)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _loopback_network(entry: str) -> bool:
    """Whether a ``FORWARDED_ALLOW_IPS`` entry (an address or a network) is loopback only."""
    try:
        net = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return is_loopback(entry)
    return is_loopback(str(net.network_address)) and is_loopback(str(net.broadcast_address))


def demo_warnings(config: SecurityConfig, bind: str, forwarded_allow_ips: str | None) -> list[str]:
    """What ``cdms serve`` warns of before it listens on ``bind`` demo-open: who besides
    this machine may be the admin without a token (``forwarded_allow_ips``: uvicorn's
    ``FORWARDED_ALLOW_IPS``, the proxies whose ``X-Forwarded-For`` it takes)."""
    if not config.demo_open:
        return []
    said = []
    if bind.lower() != "localhost" and not is_loopback(bind):
        if config.demo_hosts:
            said.append(
                f"CDMS_DEMO_OPEN=1 while listening on {bind}: anyone who reaches this server"
                f" as {', '.join(config.demo_hosts)} (CDMS_DEMO_HOSTS) is the admin without"
                " a token, from any machine"
            )
        else:
            said.append(
                f"CDMS_DEMO_OPEN=1 while listening on {bind}: a request without a token is the"
                " admin only from this machine (as localhost or 127.0.0.1); other machines"
                " get 401 and need an API key (cdms apikey create)"
            )
    proxies = [p.strip() for p in (forwarded_allow_ips or "").split(",") if p.strip()]
    if not all(map(_loopback_network, proxies)):
        said.append(
            f"CDMS_DEMO_OPEN=1 with FORWARDED_ALLOW_IPS={forwarded_allow_ips}: a client of"
            " those proxies may claim a loopback address in X-Forwarded-For and is then the"
            " admin without a token"
        )
    return said


def client_bucket(scope: Scope) -> str:
    """What the per-address bounds count a client by: its IPv4 address (mapped into IPv6
    too), or its IPv6 address's /64, the least a client is given (2^64 addresses: counted
    one by one, a client had as many buckets)."""
    client = scope.get("client")
    host = client[0] if client else "unknown"
    if len(host) > _HOST_CHARS:  # no address (a forwarded header's junk): one bucket, uncached
        return "addr:unparsed"
    return _address_bucket(host)


_HOST_CHARS = 64  # an IPv6 address with a zone id fits


@functools.lru_cache(maxsize=4096)
def _address_bucket(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])  # (a zone id: fe80::1%eth0)
    except ValueError:  # (a test client's name, a Unix socket)
        return f"addr:{host}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"addr:{ip}"


def credential_key(principal: Principal, scope: Scope) -> str:
    """What a credential's per-process bounds (its sockets, its unread answers) count by:
    its rate-limit bucket; the shared demo principal's, per client address."""
    if principal.bucket == DEMO_PRINCIPAL.bucket:
        return client_bucket(scope)
    return str(principal.bucket)


@dataclass(eq=False)
class SecurityMiddleware:
    app: ASGIApp
    engine: Engine
    config: SecurityConfig
    rate: RateLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        found = [v for k, v in scope["headers"] if k.lower() == b"authorization"]
        if scope["path"] in OPEN_PATHS:
            scope.setdefault("state", {})["principal"] = await self._probe_principal(scope, found)
            await self.app(scope, receive, send)
            return
        if len(found) > 1:
            await self._refuse(
                scope, receive, send, 400, "BAD_USER_INPUT", "send exactly one Authorization header"
            )
            return
        authorization = found[0].decode("latin-1") if found else None
        state: dict[str, Any] = scope.setdefault("state", {})
        demo_open = self.config.demo_open_for(scope)
        if scope["type"] == "websocket" and authorization is None and not demo_open:
            state["principal"] = None  # api/ws.py authenticates from connection_init
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._authenticate(scope, authorization, demo_open=demo_open)
        except RateLimitedError as limited:
            await self._refuse(
                scope, receive, send, 429, limited.code, limited.message,
                {"Retry-After": str(limited.retry_after)},
            )  # fmt: skip
            return
        except UnauthenticatedError as exc:
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

    async def _probe_principal(self, scope: Scope, found: list[bytes]) -> Principal | None:
        """Who asks ``/healthz`` or ``/readyz``: a staff token gets their detail, but the
        answer's status never depends on a credential (an expired or rotated token on a
        liveness probe would fail every replica at once): one that fails, or that cannot be
        checked now (the pool has no connection free: the probes never wait for one), is
        no one. A wrong one still counts against the client address's bad credentials."""
        if len(found) != 1 or pool_exhausted(self.engine):
            return None
        try:
            return await self._authenticate(scope, found[0].decode("latin-1"), demo_open=False)
        except CdmsError:  # wrong, rate-limited or not checkable now: no one
            return None

    async def _authenticate(
        self, scope: Scope, authorization: str | None, *, demo_open: bool
    ) -> Principal:
        """The principal of a credential; a wrong one takes from the client address's bucket
        of bad credentials and raises ``RateLimitedError`` once that is empty (else
        ``UnauthenticatedError``; ``CdmsError`` when an API key cannot be checked now)."""
        try:
            return await authenticate(
                self.engine,
                authorization,
                jwt_rules=self.config.jwt_rules,
                demo_open=demo_open,
                key_cache_s=self.config.apikey_cache_s,
            )
        except UnauthenticatedError:
            if self.rate is not None:
                try:
                    await run_in_threadpool(self.rate.admit, client_bucket(scope), 1)
                except RateLimitedError:
                    raise
                except CdmsError:
                    pass  # the database is down: the credentials are still wrong
            raise

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
