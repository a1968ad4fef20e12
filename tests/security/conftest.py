"""Fixtures for the security tests: a private database with the API tests' small shop,
an app that requires tokens (JWT secret set, demo mode off), and token factories.

Customer A (``shop.customers[1]``, 3 orders) is the caller in most tests; customer B
(``shop.customers[2]``, 12 orders) is the one whose data must stay out of reach.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.apikeys import create_key
from api.app import AppOptions, create_app
from api.auth import encode_jwt
from api.rules import Access
from api.security import SecurityConfig
from db.engine import make_engine
from tests.api.conftest import Shop, build_shop

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SECRET = "test-secret-0123456789-abcdefghijklmnop"


@dataclass(frozen=True)
class Parties:
    a: int  # the calling customer
    b: int  # another customer
    a_orders: list[int]
    b_orders: list[int]


def shop_fixtures(database: str) -> tuple[Any, Any, Any]:
    """The fixtures ``sec_engine``, ``sec_shop`` and ``parties`` on a shop of their own in
    database ``database`` (a sub-folder whose tests write, or whose rate buckets must not
    meet the others', assigns them in its conftest)."""

    @pytest.fixture(scope="session", name="sec_engine")
    def engine(clone_database: Callable[[str], str]) -> Engine:
        return make_engine(clone_database(database))

    @pytest.fixture(scope="session", name="sec_shop")
    def shop(sec_engine: Engine) -> Shop:
        with sec_engine.begin() as conn:
            # the warehouse counts as published (empty): a never-loaded one makes cube
            # fields answer WAREHOUSE_LOADING (docs/operations.md); these tests are about
            # access
            conn.execute(sa.text("UPDATE dw.etl_state SET version = greatest(version, 1)"))
            return build_shop(conn)

    @pytest.fixture(scope="session", name="parties")
    def the_parties(sec_shop: Shop) -> Parties:
        a, b = sec_shop.customers[1], sec_shop.customers[2]
        return Parties(a, b, sec_shop.orders[a], sec_shop.orders[b])

    return engine, shop, the_parties


sec_engine, sec_shop, parties = shop_fixtures("sec")


def token(role: str, customer_id: int | None = None, ttl: int = 600, **extra: Any) -> str:
    claims: dict[str, Any] = {"role": role, "exp": int(time.time()) + ttl, **extra}
    if customer_id is not None:
        claims["customer_id"] = customer_id
    return encode_jwt(claims, SECRET)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def make_app(
    engine: Engine,
    *,
    access: Access | None = None,
    options: AppOptions | None = None,
    **config: Any,
) -> TestClient:
    """The app as served, with these security settings (a JWT secret by default) and,
    for the tests that switch the checks off, another ``access`` table."""
    config.setdefault("jwt_secret", SECRET)
    security = SecurityConfig(**config)
    options = options or AppOptions()
    if access is not None:
        options = AppOptions(options.api, options.http, options.limits, access)
    return TestClient(create_app(engine, security, options), raise_server_exceptions=True)


@pytest.fixture(scope="session")
def client(sec_engine: Engine, sec_shop: Shop) -> Iterator[TestClient]:
    with make_app(sec_engine) as c:
        yield c


@pytest.fixture(scope="module")
def prod(sec_engine: Engine, sec_shop: Shop) -> Iterator[TestClient]:
    """The app in production mode (review/ has a lenient one of its own)."""
    with make_app(sec_engine, production=True) as c:
        yield c


Call = Callable[..., dict[str, Any]]


def post(
    client: TestClient, tok: str | None, query: str, variables: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    headers = bearer(tok) if tok else {}
    resp = client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    body: dict[str, Any] = resp.json()
    return resp.status_code, body


@pytest.fixture
def as_a(client: TestClient, parties: Parties) -> Call:
    """POST as customer A (JWT); returns the body."""
    tok = token("customer", parties.a)

    def run(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return post(client, tok, query, variables)[1]

    return run


@pytest.fixture
def api_key(sec_engine: Engine, sec_shop: Shop) -> Callable[..., str]:
    def make(role: str, customer_id: int | None = None) -> str:
        return create_key(sec_engine, role, customer_id, name=f"test {role}")[1]

    return make
