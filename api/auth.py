"""Who is asking: a bearer token (an API key or an HS256 JWT) becomes a ``Principal``.

- ``Authorization: Bearer cdms_...``: an API key, looked up by its sha256 (unrevoked only).
- ``Authorization: Bearer <jwt>``: HS256-signed with ``CDMS_JWT_SECRET``; claims ``role``,
  ``customer_id`` (customers only), ``exp`` (required), optional ``sub`` for the actor.
- No header: anonymous, allowed only when ``CDMS_DEMO_OPEN=1`` (then an admin, for the
  local demo); otherwise every route but ``/healthz`` answers 401 ``UNAUTHENTICATED``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from api import jwt
from api.apikeys import ROLES, ApiKey, find_active, looks_like_key, recently_active, remember
from db.errors import CdmsError


class UnauthenticatedError(CdmsError):
    code = "UNAUTHENTICATED"


@dataclass(frozen=True)
class Principal:
    """The caller: its role, its customer (customers only), how writes record it, and the
    bucket its requests are rate-limited in."""

    role: str
    customer_id: int | None
    actor: str
    bucket: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


DEMO_PRINCIPAL = Principal(role="admin", customer_id=None, actor="anonymous", bucket="anonymous")


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    role = claims.get("role")
    if role not in ROLES:
        raise UnauthenticatedError(f"token claim role must be one of {', '.join(ROLES)}")
    raw_customer = claims.get("customer_id")
    customer_id: int | None = None
    if role == "customer":
        if isinstance(raw_customer, bool) or not isinstance(raw_customer, int | str):
            raise UnauthenticatedError("a customer token needs an integer customer_id claim")
        try:
            customer_id = int(raw_customer)
        except ValueError:
            raise UnauthenticatedError(
                "a customer token needs an integer customer_id claim"
            ) from None
        if customer_id <= 0:
            raise UnauthenticatedError("a customer token needs a positive customer_id claim")
    sub = claims.get("sub")
    who = str(sub) if isinstance(sub, str | int) and not isinstance(sub, bool) else None
    if customer_id is not None:
        actor = f"customer:{customer_id}"
    else:
        actor = f"jwt:{who}" if who else f"jwt:{role}"
    return Principal(role=role, customer_id=customer_id, actor=actor, bucket=actor)


def _key_principal(key: ApiKey) -> Principal:
    actor = f"apikey:{key.id}"
    return Principal(role=key.role, customer_id=key.customer_id, actor=actor, bucket=actor)


def authenticate_token(
    engine: Engine, token: str, jwt_secret: str | None, key_cache_s: float = 0.0
) -> Principal:
    """The principal of a bearer token (blocking: does one indexed lookup for an API key,
    remembered for ``key_cache_s`` seconds)."""
    if looks_like_key(token):
        key = find_active(engine, token)
        if key is None:
            raise UnauthenticatedError("unknown or revoked API key")
        remember(engine, token, key, key_cache_s)
        return _key_principal(key)
    if token.count(".") == 2:
        if not jwt_secret:
            raise UnauthenticatedError("JWTs are not accepted: CDMS_JWT_SECRET is not set")
        try:
            claims = jwt.decode(token, jwt_secret)
        except jwt.InvalidTokenError as exc:
            raise UnauthenticatedError(exc.message) from None
        return principal_from_claims(claims)
    raise UnauthenticatedError("the bearer token is neither an API key nor a JWT")


async def authenticate(
    engine: Engine,
    authorization: str | None,
    *,
    jwt_secret: str | None,
    demo_open: bool,
    key_cache_s: float = 0.0,
) -> Principal:
    """The principal of a request's ``Authorization`` header (UNAUTHENTICATED if none fits).
    An API key found active in the last ``key_cache_s`` seconds is not looked up again."""
    if authorization is None or not authorization.strip():
        if demo_open:
            return DEMO_PRINCIPAL
        raise UnauthenticatedError("authentication required: send Authorization: Bearer <token>")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthenticatedError("use Authorization: Bearer <token>")
    if key_cache_s > 0 and looks_like_key(token):
        key = recently_active(engine, token)
        if key is not None:
            return _key_principal(key)
    return await run_in_threadpool(authenticate_token, engine, token, jwt_secret, key_cache_s)
