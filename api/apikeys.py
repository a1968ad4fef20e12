"""API keys: created (shown once), listed, revoked; only their sha256 is stored.

A key reads ``cdms_<8 hex>_<43 url-safe chars>``; the first part (``key_prefix``) is kept
in clear so a key can be recognised in ``cdms apikey list``. 256 random bits make a plain
sha256 as strong as a slow hash here (nothing to brute-force), and lookups stay one index
probe.

A key found active is remembered for ``CDMS_APIKEY_CACHE_SECONDS`` (default 5; 0 looks it
up on every request): the lookup (a transaction, and ``last_used_at`` at most once a
minute) cost 1.4 ms and 1.1 ms of the server's CPU per request, more than a whole fast-lane
read. A key revoked by this process is forgotten at once; revoked elsewhere (``cdms apikey
revoke``), it keeps working on a running server until its entry expires.

A customer key ends with its customer: deleting the customer, or emptying the table (a
reseed), revokes it (migration 0034's triggers), and a key whose customer is gone all the
same (one kept from before 0034) is looked up as no key at all and listed as revoked. Else,
once the id was given again (an insert with an explicit id, a reseed restarting the ids),
the old key would act as the new customer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import threading
import time
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
_PUBLIC = [c for c in api_keys.c if c.name != "key_hash"]  # every column but the hash
_customers = sa.table("customers", sa.column("id", sa.BigInteger), schema="app")
# each key with its customer, if it has one that exists: a customer key whose customer is
# gone (a staff key has none to lose). For one key, a nested loop: its customer by primary
# key (an EXISTS under an OR may be planned as a hash of every customer).
_WITH_CUSTOMER = api_keys.outerjoin(_customers, _customers.c.id == api_keys.c.customer_id)
_CUSTOMER_GONE = sa.and_(api_keys.c.customer_id.is_not(None), _customers.c.id.is_(None))


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
    customer_gone: bool = False  # a customer key whose customer no longer exists

    @property
    def revoked(self) -> bool:
        """Refused: revoked, or its customer gone."""
        return self.revoked_at is not None or self.customer_gone


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
    if not label or len(label) > 200 or not label.isprintable():
        raise BadUserInputError("the name must have 1 to 200 printable characters", field="name")
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
            .returning(*_PUBLIC)
        ).one()
    return ApiKey(**row._mapping), key


def list_keys(engine: Engine) -> list[ApiKey]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*_PUBLIC, _CUSTOMER_GONE.label("customer_gone"))
            .select_from(_WITH_CUSTOMER)
            .order_by(api_keys.c.id)
        ).all()
    return [ApiKey(**r._mapping) for r in rows]


def revoke_key(engine: Engine, key_id: int) -> ApiKey:
    """Revoke a key (idempotent: revoking twice keeps the first time)."""
    with transaction(engine) as conn:
        row = conn.execute(
            sa.update(api_keys)
            .where(api_keys.c.id == key_id)
            .values(revoked_at=sa.func.coalesce(api_keys.c.revoked_at, sa.func.now()))
            .returning(*_PUBLIC)
        ).first()
    if row is None:
        raise NotFoundError(f"API key {key_id} not found", entity="api_key", id=key_id)
    forget(key_id)  # this process refuses it at once; other processes within their cache time
    return ApiKey(**row._mapping)


# keys found active: (database URL, sha256 of the key) -> (the key, valid until: monotonic)
_recent: dict[tuple[str, str], tuple[ApiKey, float]] = {}
_recent_lock = threading.Lock()
_RECENT_MAX = 10_000


def recently_active(engine: Engine, key: str) -> ApiKey | None:
    """The key if :func:`remember` kept it and its time is not up (no database access)."""
    found = _recent.get((str(engine.url), hash_key(key)))
    if found is None or found[1] <= time.monotonic():
        return None
    return found[0]


def remember(engine: Engine, key: str, found: ApiKey, seconds: float) -> None:
    """Keep ``found`` (active) for ``seconds``; nothing when ``seconds`` is 0."""
    if seconds <= 0:
        return
    now = time.monotonic()
    with _recent_lock:
        if len(_recent) >= _RECENT_MAX:  # drop what has expired, or everything
            for k in [k for k, (_, until) in _recent.items() if until <= now] or list(_recent):
                del _recent[k]
        _recent[(str(engine.url), hash_key(key))] = (found, now + seconds)


def forget(key_id: int) -> None:
    """Drop key ``key_id`` from this process's cache (found revoked)."""
    with _recent_lock:
        for k in [k for k, (found, _) in _recent.items() if found.id == key_id]:
            del _recent[k]


def find_active(engine: Engine, key: str) -> ApiKey | None:
    """The unrevoked key with this secret, if its customer (a customer key's) exists
    (touching last_used_at at most once a minute). One statement, two index probes: the
    key's hash, the customer's id."""
    if not looks_like_key(key):
        return None
    with transaction(engine) as conn:
        row = conn.execute(
            sa.select(*_PUBLIC)
            .select_from(_WITH_CUSTOMER)
            .where(
                api_keys.c.key_hash == hash_key(key),
                api_keys.c.revoked_at.is_(None),
                ~_CUSTOMER_GONE,
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
