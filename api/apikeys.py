"""API keys: created (shown once), listed, revoked; only their sha256 is stored.

A key reads ``cdms_<8 hex>_<43 url-safe chars>``; the first part (``key_prefix``) is kept
in clear so a key can be recognised in ``cdms apikey list``. 256 random bits make a plain
sha256 as strong as a slow hash here (nothing to brute-force), and lookups stay one index
probe per request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import transaction
from db.errors import BadUserInputError, NotFoundError

ROLES = ("admin", "analyst", "service", "customer")
_KEY_RE = re.compile(r"^(cdms_[0-9a-f]{8})_[A-Za-z0-9_-]{43}$")

_meta = sa.MetaData()
api_keys = sa.Table(
    "api_keys",
    _meta,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("role", sa.Text),
    sa.Column("customer_id", sa.BigInteger),
    sa.Column("key_prefix", sa.Text),
    sa.Column("key_hash", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
    schema="app",
)
_customers = sa.table("customers", sa.column("id", sa.BigInteger), schema="app")


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    role: str
    customer_id: int | None
    key_prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_key(token: str) -> bool:
    return _KEY_RE.match(token) is not None


def validate_role(role: str, customer_id: int | None) -> None:
    if role not in ROLES:
        raise BadUserInputError(
            f"unknown role {role!r}: use one of {', '.join(ROLES)}", field="role", value=role
        )
    if role == "customer" and customer_id is None:
        raise BadUserInputError("a customer key needs --customer ID", field="customer_id")
    if role != "customer" and customer_id is not None:
        raise BadUserInputError(
            f"--customer applies to customer keys only, not to role {role}", field="customer_id"
        )


def create_key(
    engine: Engine, role: str, customer_id: int | None = None, name: str | None = None
) -> tuple[ApiKey, str]:
    """Store a new key; return it with its secret (the only time the secret exists)."""
    validate_role(role, customer_id)
    prefix = f"cdms_{secrets.token_hex(4)}"
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    label = (name or f"{role} key").strip()
    if not label or len(label) > 200:
        raise BadUserInputError("the name must have 1 to 200 characters", field="name")
    with transaction(engine) as conn:
        if customer_id is not None:
            found = conn.execute(
                sa.select(_customers.c.id).where(_customers.c.id == customer_id)
            ).first()
            if found is None:
                raise NotFoundError(
                    f"customer {customer_id} not found", entity="customer", id=customer_id
                )
        row = conn.execute(
            sa.insert(api_keys)
            .values(
                name=label,
                role=role,
                customer_id=customer_id,
                key_prefix=prefix,
                key_hash=hash_key(key),
            )
            .returning(*_public_columns())
        ).one()
    return ApiKey(**row._mapping), key


def _public_columns() -> list[sa.Column[object]]:
    return [c for c in api_keys.c if c.name != "key_hash"]


def list_keys(engine: Engine) -> list[ApiKey]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*_public_columns()).order_by(api_keys.c.id)).all()
    return [ApiKey(**r._mapping) for r in rows]


def revoke_key(engine: Engine, key_id: int) -> ApiKey:
    """Revoke a key (idempotent: revoking twice keeps the first time)."""
    with transaction(engine) as conn:
        row = conn.execute(
            sa.update(api_keys)
            .where(api_keys.c.id == key_id)
            .values(revoked_at=sa.func.coalesce(api_keys.c.revoked_at, sa.func.now()))
            .returning(*_public_columns())
        ).first()
    if row is None:
        raise NotFoundError(f"API key {key_id} not found", entity="api_key", id=key_id)
    return ApiKey(**row._mapping)


def find_active(engine: Engine, key: str) -> ApiKey | None:
    """The unrevoked key with this secret (touching last_used_at at most once a minute)."""
    if not looks_like_key(key):
        return None
    with transaction(engine) as conn:
        row = conn.execute(
            sa.select(*_public_columns()).where(
                api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
            )
        ).first()
        if row is None:
            return None
        conn.execute(
            sa.update(api_keys)
            .where(
                api_keys.c.id == row.id,
                sa.or_(
                    api_keys.c.last_used_at.is_(None),
                    api_keys.c.last_used_at < sa.func.now() - sa.text("interval '1 minute'"),
                ),
            )
            .values(last_used_at=sa.func.now())
        )
    return ApiKey(**row._mapping)
