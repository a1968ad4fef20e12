"""Fixtures of the hostile review (issues 14 and 15): a shop of their own (the same small
shop as tests/security, in another database: some attacks here try to write, and rate
buckets are per database), and a production-mode app whose server errors come back as
HTTP 500 instead of being raised in the test, so that a crash is a failed assertion.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.app import AppOptions, create_app
from api.security import SecurityConfig
from db.engine import make_engine
from tests.api.conftest import Shop, build_shop
from tests.security.conftest import SECRET, Parties, bearer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture(scope="session")
def sec_engine(clone_database: Callable[[str], str]) -> Engine:
    return make_engine(clone_database("secr"))


@pytest.fixture(scope="session")
def sec_shop(sec_engine: Engine) -> Shop:
    with sec_engine.begin() as conn:
        # the warehouse counts as published (empty): a never-loaded one makes cube fields
        # answer WAREHOUSE_LOADING (docs/operations.md), and these tests are about access
        conn.execute(sa.text("UPDATE dw.etl_state SET version = greatest(version, 1)"))
        return build_shop(conn)


@pytest.fixture(scope="session")
def parties(sec_shop: Shop) -> Parties:
    a, b = sec_shop.customers[1], sec_shop.customers[2]
    return Parties(a, b, sec_shop.orders[a], sec_shop.orders[b])


def lenient_app(engine: Engine, client: tuple[str, int] | None = None, **config: Any) -> TestClient:
    """The app as served (production mode unless told otherwise), answering 500 for what
    it does not handle rather than raising it into the test."""
    config.setdefault("jwt_secret", SECRET)
    config.setdefault("production", True)
    app = create_app(engine, SecurityConfig(**config), AppOptions())
    extra: dict[str, Any] = {} if client is None else {"client": client}
    return TestClient(app, raise_server_exceptions=False, **extra)


@pytest.fixture(scope="module")
def prod(sec_engine: Engine, sec_shop: Shop) -> Iterator[TestClient]:
    with lenient_app(sec_engine) as c:
        yield c


def post_raw(client: TestClient, tok: str, body: str) -> Any:
    """POST a JSON body given as text (for escapes a JSON encoder would not write)."""
    return client.post(
        "/graphql",
        content=body.encode("utf-8"),
        headers={**bearer(tok), "Content-Type": "application/json"},
    )


def count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


def code_of(body: Any) -> str | None:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return None
    return str((errors[0].get("extensions") or {}).get("code"))
