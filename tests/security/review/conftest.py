"""Fixtures of the hostile review (issues 14 and 15): a shop of their own (the same small
shop as tests/security, in another database: some attacks here try to write, and rate
buckets are per database), and a production-mode app whose server errors come back as
HTTP 500 instead of being raised in the test, so that a crash is a failed assertion.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.app import AppOptions, create_app
from api.security import SecurityConfig
from tests.api.conftest import Shop
from tests.security.conftest import SECRET, bearer, shop_fixtures

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


sec_engine, sec_shop, parties = shop_fixtures("secr")


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
