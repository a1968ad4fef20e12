"""Who is asking: a bearer token (an API key or an HS256 JWT) becomes a ``Principal``.

- ``Authorization: Bearer cdms_...``: an API key, looked up by its sha256 (unrevoked only).
- ``Authorization: Bearer <jwt>``: HS256-signed with ``CDMS_JWT_SECRET``, verified with
  PyJWT; claims ``role``, ``customer_id`` (customers only: a canonical positive integer in
  bigint range), ``exp`` (required: a finite time at most ``CDMS_JWT_MAX_LIFETIME_SECONDS``
  ahead), optional ``nbf``/``iat`` (finite), ``aud``/``iss`` when configured, optional
  ``sub`` for the actor (at most 200 characters, none of them a control, a line or
  paragraph separator, a bidi control, a surrogate or a private-use character:
  :func:`sub_refusal`).
- No header: anonymous, allowed only when ``CDMS_DEMO_OPEN=1`` (then an admin, for the
  local demo); otherwise every route but ``/healthz`` answers 401 ``UNAUTHENTICATED``.

A principal carries when its credential stops being valid (``expires_at``) so that an open
WebSocket can be closed then (api/ws.py).
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from api.apikeys import ROLES, ApiKey, find_active, looks_like_key, recently_active, remember
from db.errors import CdmsError

BIGINT_MAX = 2**63 - 1
_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")


class UnauthenticatedError(CdmsError):
    code = "UNAUTHENTICATED"


@dataclass(frozen=True)
class JwtRules:
    """How JWTs are verified (``CDMS_JWT_*``)."""

    secret: str
    leeway_s: float = 30.0
    audience: str | None = None
    issuer: str | None = None
    max_lifetime_s: float = 400 * 86_400


@dataclass(frozen=True)
class Principal:
    """The caller: its role, its customer (customers only), how writes record it, the
    bucket its requests are rate-limited in, and until when its credential holds
    (``expires_at``, epoch seconds; None: until revoked)."""

    role: str
    customer_id: int | None
    actor: str
    bucket: str
    expires_at: float | None = None
    key_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


MAX_SUB_CHARS = 200  # a token's subject: the actor of its writes is jwt:<sub>
# What a sub may not hold: controls (Cc: line breaks, ESC...), surrogates (Cs: no text
# encoding carries a lone one), private use (Co: no meaning shared with whoever reads it),
# line and paragraph separators (Zl, Zp); and the Bidi_Control characters (U+061C, U+200E,
# U+200F, U+202A-U+202E, U+2066-U+2069), which reorder what staff read around them.
_SUB_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
TIME_BOUND = 2**53  # seconds: past any time a float holds exactly (and float() at all)

DEMO_PRINCIPAL = Principal(role="admin", customer_id=None, actor="anonymous", bucket="anonymous")


def _customer_id(raw: Any) -> int:
    """A canonical positive integer in bigint range (a JSON number or plain digits)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and _CANONICAL_ID.fullmatch(raw):
        value = int(raw)
    else:
        raise UnauthenticatedError("a customer token needs an integer customer_id claim")
    if not 1 <= value <= BIGINT_MAX:
        raise UnauthenticatedError("customer_id must be a positive 64-bit integer")
    return value


def sub_refusal(sub: str) -> bool:
    """Whether a token's ``sub`` holds a character it may not (see above): the actor
    ``jwt:<sub>`` is stored with every write (``changedBy``) and written to log lines, where
    a line break forged lines, an escape sequence ran on the terminal and a bidi override
    reversed the text. Other format characters are text: ZWNJ inside Persian words, ZWJ in
    emoji sequences and Indic conjuncts, a no-break space in a name (``str.isprintable``,
    the rule before, refused all three: hostile probe 23, L4)."""
    if sub.isprintable():  # none of the refused is printable: the common case, fast
        return False
    return any(
        c in _BIDI_CONTROLS or unicodedata.category(c) in _SUB_REFUSED_CATEGORIES for c in sub
    )


def principal_from_claims(claims: dict[str, Any], expires_at: float | None = None) -> Principal:
    role = claims.get("role")
    if role not in ROLES:
        raise UnauthenticatedError(f"token claim role must be one of {', '.join(ROLES)}")
    customer_id = _customer_id(claims.get("customer_id")) if role == "customer" else None
    sub = claims.get("sub")
    who = str(sub) if isinstance(sub, str | int) and not isinstance(sub, bool) else None
    if who is not None and len(who) > MAX_SUB_CHARS:  # (recorded with every write it makes)
        raise UnauthenticatedError(f"token claim sub is longer than {MAX_SUB_CHARS} characters")
    if who is not None and sub_refusal(who):
        raise UnauthenticatedError(
            "invalid token: claim sub must be text without control, line separator,"
            " bidirectional control, surrogate or private-use characters"
        )
    if customer_id is not None:
        actor = f"customer:{customer_id}"
    else:
        actor = f"jwt:{who}" if who else f"jwt:{role}"
    return Principal(role, customer_id, actor, actor, expires_at=expires_at)


def _time_claim(claims: dict[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise UnauthenticatedError(f"token must carry a numeric {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnauthenticatedError(f"token claim {name} must be a number of seconds")
    # (an int first: math.isfinite() of a 400-digit one raises OverflowError)
    if not -TIME_BOUND <= value <= TIME_BOUND or not math.isfinite(value):
        raise UnauthenticatedError(f"token claim {name} must be a finite time")
    return float(value)


# PyJWT's refusals in our words: its messages and the exceptions' texts under them name
# Python's internals (``sys.set_int_max_str_digits()``...)
_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "signature does not match"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed (HS256 only)"),
)


def _refusal(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token must carry a {exc.claim} claim"
    for kind, said in _REFUSALS:
        if isinstance(exc, kind):
            return said
    return "malformed"


def decode_jwt(token: str, rules: JwtRules, now: float | None = None) -> Principal:
    """The principal of a valid JWT; UnauthenticatedError otherwise (never another error:
    a hostile token is the client's problem, not the server's)."""
    try:
        claims = jwt.decode(
            token,
            rules.secret,
            algorithms=["HS256"],
            audience=rules.audience,
            issuer=rules.issuer,
            # the time claims are checked below: PyJWT converts them with int(), which
            # turns Infinity into an OverflowError and 1e308 into a token that never expires
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": rules.audience is not None,
                "verify_iss": rules.issuer is not None,
                "require": ["exp"] + (["aud"] if rules.audience else []),
            },
        )
    except jwt.InvalidTokenError as exc:
        raise UnauthenticatedError(f"invalid token: {_refusal(exc)}") from None
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise UnauthenticatedError("invalid token: malformed") from None
    if not isinstance(claims, dict):
        raise UnauthenticatedError("invalid token: malformed")
    current = time.time() if now is None else now
    exp = _time_claim(claims, "exp", required=True)
    assert exp is not None
    if current > exp + rules.leeway_s:
        raise UnauthenticatedError("token expired")
    if exp > current + rules.max_lifetime_s:
        raise UnauthenticatedError(
            f"token lifetime exceeds {rules.max_lifetime_s:g} s (CDMS_JWT_MAX_LIFETIME_SECONDS)"
        )
    nbf = _time_claim(claims, "nbf", required=False)
    if nbf is not None and current < nbf - rules.leeway_s:
        raise UnauthenticatedError("token not yet valid")
    iat = _time_claim(claims, "iat", required=False)
    if iat is not None and iat > current + rules.leeway_s:
        raise UnauthenticatedError("token issued in the future")
    return principal_from_claims(claims, expires_at=exp + rules.leeway_s)


def encode_jwt(claims: dict[str, Any], secret: str) -> str:
    """An HS256 token carrying ``claims`` (tests and tools)."""
    return jwt.encode(claims, secret, algorithm="HS256")


def _key_principal(key: ApiKey) -> Principal:
    actor = f"apikey:{key.id}"
    return Principal(key.role, key.customer_id, actor, actor, key_id=key.id)


def authenticate_token(
    engine: Engine, token: str, jwt_rules: JwtRules | None, key_cache_s: float = 0.0
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
        if jwt_rules is None:
            raise UnauthenticatedError("this server takes API keys, not JWTs")
        return decode_jwt(token, jwt_rules)
    raise UnauthenticatedError("the bearer token is neither an API key nor a JWT")


def bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthenticatedError("use Authorization: Bearer <token>")
    return token


async def authenticate(
    engine: Engine,
    authorization: str | None,
    *,
    jwt_rules: JwtRules | None,
    demo_open: bool,
    key_cache_s: float = 0.0,
) -> Principal:
    """The principal of a request's ``Authorization`` header (UNAUTHENTICATED if none fits;
    SERVICE_UNAVAILABLE when an API key cannot be looked up). An API key found active in
    the last ``key_cache_s`` seconds is not looked up again."""
    if authorization is None or not authorization.strip():
        if demo_open:
            return DEMO_PRINCIPAL
        raise UnauthenticatedError("authentication required: send Authorization: Bearer <token>")
    token = bearer_token(authorization)
    if key_cache_s > 0 and looks_like_key(token):
        key = recently_active(engine, token)
        if key is not None:
            return _key_principal(key)
    if not looks_like_key(token) and jwt_rules is not None:
        return decode_jwt(token, jwt_rules)  # no I/O: stay on the event loop
    return await run_in_threadpool(authenticate_token, engine, token, jwt_rules, key_cache_s)
