"""HS256 JSON Web Tokens with the standard library (RFC 7519 / 7515, compact form).

Only what cdms needs: sign and verify HS256, honour ``exp`` and ``nbf``. Anything else in
the header (another ``alg``, ``none``, a ``crit`` list) is refused rather than ignored, and
a token without ``exp`` is refused (no everlasting tokens).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from db.errors import CdmsError


class InvalidTokenError(CdmsError):
    code = "UNAUTHENTICATED"


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(c not in _B64_ALPHABET for c in text):
        raise InvalidTokenError("malformed token")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _sign(signing_input: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), signing_input, hashlib.sha256).digest()


def encode(claims: dict[str, Any], secret: str) -> str:
    """A signed HS256 token carrying ``claims``."""
    header = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    return f"{header}.{payload}.{_b64encode(_sign(signing_input, secret))}"


def decode(
    token: str, secret: str, *, now: float | None = None, leeway_s: int = 30
) -> dict[str, Any]:
    """The claims of a valid token; InvalidTokenError (UNAUTHENTICATED) otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidTokenError("malformed token")
    header_b64, payload_b64, signature_b64 = parts
    try:
        header = json.loads(_b64decode(header_b64))
    except (ValueError, UnicodeDecodeError):
        raise InvalidTokenError("malformed token") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or "crit" in header:
        raise InvalidTokenError("unsupported token: only HS256 is accepted")
    expected = _sign(f"{header_b64}.{payload_b64}".encode("ascii"), secret)
    if not hmac.compare_digest(expected, _b64decode(signature_b64)):
        raise InvalidTokenError("invalid token signature")
    try:
        claims = json.loads(_b64decode(payload_b64))
    except (ValueError, UnicodeDecodeError):
        raise InvalidTokenError("malformed token") from None
    if not isinstance(claims, dict):
        raise InvalidTokenError("malformed token")
    current = time.time() if now is None else now
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidTokenError("token must carry a numeric exp claim")
    if current > exp + leeway_s:
        raise InvalidTokenError("token expired")
    nbf = claims.get("nbf")
    if nbf is not None:
        if not isinstance(nbf, int | float) or isinstance(nbf, bool):
            raise InvalidTokenError("malformed token: nbf must be a number")
        if current < nbf - leeway_s:
            raise InvalidTokenError("token not yet valid")
    return claims
