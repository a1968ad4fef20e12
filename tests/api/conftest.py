"""Fixtures for the API tests: a private database with a small, known shop, the app on it,
a client, and a statement counter on the engine.

The shop (``shop`` fixture) is built with plain SQL so expected values can be recomputed
with SQL in the tests: 6 customers with 0, 3, 12, 5, 1 and 7 orders, 1-3 lines each.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.app import AppOptions, create_app
from api.http import HttpLimits
from api.rules import Limits
from api.security import SecurityConfig
from db.engine import make_engine
from schema.context import ApiLimits
from tests.api.helpers import body_of

with warnings.catch_warnings():
    # starlette 1.x prefers httpx2 for its TestClient; httpx works the same for our use
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ORDERS_PER_CUSTOMER = [0, 3, 12, 5, 1, 7]
BASE = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@dataclass
class Shop:
    customers: list[int]
    products: list[int]
    skus: list[str]
    orders: dict[int, list[int]]  # customer id -> order ids (oldest first)


def build_shop(conn: sa.Connection) -> Shop:
    skus = [f"API-{i:03d}" for i in range(1, 6)]
    products = []
    for i, sku in enumerate(skus, start=1):
        pid = conn.execute(
            sa.text(
                "INSERT INTO app.products (sku, name, category, subcategory, brand, unit_price,"
                " cost, stock) VALUES (:sku, :name, :cat, 'sub', :brand, :price, 1, 1000)"
                " RETURNING id"
            ),
            {
                "sku": sku,
                "name": f"Widget {i} 50%_off" if i == 3 else f"Widget {i}",
                "cat": "tools" if i % 2 else "toys",
                "brand": "acme" if i < 4 else "zenith",
                "price": Decimal(f"{i * 10}.50"),
            },
        ).scalar_one()
        products.append(int(pid))
    customers = []
    orders: dict[int, list[int]] = {}
    segments = ["consumer", "corporate", "home_office"]
    for c, n_orders in enumerate(ORDERS_PER_CUSTOMER):
        cid = conn.execute(
            sa.text(
                "INSERT INTO app.customers (email, first_name, last_name, segment, country,"
                " region, city, signup_at) VALUES (:email, 'Ann', :last, :seg, :country, 'R',"
                " 'C', :signup) RETURNING id"
            ),
            {
                "email": f"api{c}@example.com",
                "last": ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Davies"][c],
                "seg": segments[c % 3],
                "country": "DE" if c % 2 else "FR",
                "signup": BASE - dt.timedelta(days=400 - c),
            },
        ).scalar_one()
        customers.append(int(cid))
        orders[int(cid)] = []
        for k in range(n_orders):
            oid = conn.execute(
                sa.text(
                    "INSERT INTO app.orders (customer_id, channel, payment_method, ordered_at)"
                    " VALUES (:cid, 'web', 'card', :at) RETURNING id"
                ),
                # two orders share a timestamp to exercise the id tie-breaker
                {"cid": cid, "at": BASE + dt.timedelta(days=c * 20 + (k // 2 if c == 2 else k))},
            ).scalar_one()
            orders[int(cid)].append(int(oid))
            for line in range(1 + (k % 3)):
                conn.execute(
                    sa.text(
                        "INSERT INTO app.order_items (order_id, line_no, product_id, quantity,"
                        " unit_price) VALUES (:oid, :line, :pid, :qty, :price)"
                    ),
                    {
                        "oid": oid,
                        "line": line + 1,
                        "pid": products[(k + line) % 5],
                        "qty": 1 + (k + line) % 4,
                        "price": Decimal(f"{((k + line) % 5 + 1) * 10}.50"),
                    },
                )
    # some orders move on, so statuses differ
    for oids in orders.values():
        for k, oid in enumerate(oids):
            if k % 3 == 1:
                conn.execute(
                    sa.text("UPDATE app.orders SET status = 'paid' WHERE id = :id"), {"id": oid}
                )
            if k % 3 == 2:
                conn.execute(
                    sa.text("UPDATE app.orders SET status = 'cancelled' WHERE id = :id"),
                    {"id": oid},
                )
    for i, cid in enumerate(customers[:4]):
        conn.execute(
            sa.text(
                "INSERT INTO app.feedback (customer_id, product_id, kind, rating, comment)"
                " VALUES (:cid, :pid, :kind, :rating, 'ok')"
            ),
            {
                "cid": cid,
                "pid": products[i % 2],
                "kind": "review" if i % 2 else "complaint",
                "rating": i + 2,
            },
        )
    return Shop(customers, products, skus, orders)


@pytest.fixture(scope="session")
def api_url(clone_database: Callable[[str], str]) -> str:
    """A private database for the API tests (their counts must be exact)."""
    return clone_database("api")


@pytest.fixture(scope="session")
def api_engine(api_url: str) -> Engine:
    return make_engine(api_url)


@pytest.fixture(scope="session")
def shop(api_engine: Engine) -> Shop:
    with api_engine.begin() as conn:
        return build_shop(conn)


def options(**limits: Any) -> AppOptions:
    """App options from keyword limits of ApiLimits, HttpLimits or api.rules.Limits (no
    cost limit unless given)."""

    def pick(cls: Any) -> dict[str, Any]:
        return {k: v for k, v in limits.items() if k in cls.__dataclass_fields__}

    api = ApiLimits(**pick(ApiLimits))
    rules = {"max_cost": 10**9, "default_page": api.default_page_size,
             "max_page": api.max_page_size, **pick(Limits)}  # fmt: skip
    return AppOptions(api, HttpLimits(**pick(HttpLimits)), Limits(**rules))


def make_client(engine: Engine, **limits: Any) -> TestClient:
    # demo-open: anonymous requests are the admin principal (RLS as cdms_api, admin role);
    # tests/security covers the other principals
    app = create_app(
        engine, SecurityConfig(demo_open=True, demo_hosts=("testserver",)), options(**limits)
    )
    return TestClient(app, raise_server_exceptions=True)


@pytest.fixture(scope="session")
def client(api_engine: Engine, shop: Shop) -> Iterator[TestClient]:
    with make_client(api_engine) as c:
        yield c


# a shop of the test module's own, for tests that write (the session's shop above is read
# by exact counts): one database per module that asks
@pytest.fixture(scope="module")
def w_engine(clone_database: Callable[[str], str], request: pytest.FixtureRequest) -> Engine:
    return make_engine(clone_database("w_" + request.module.__name__.rsplit(".", 1)[-1]))


@pytest.fixture(scope="module")
def w_shop(w_engine: Engine) -> Shop:
    with w_engine.begin() as conn:
        return build_shop(conn)


@pytest.fixture(scope="module")
def w_client(w_engine: Engine, w_shop: Shop) -> Iterator[TestClient]:
    with make_client(w_engine) as c:
        yield c


Gql = Callable[..., dict[str, Any]]


@pytest.fixture
def gql(client: TestClient) -> Gql:
    """POST one operation; returns the JSON body (asserts HTTP 200)."""

    def run(
        query: str, variables: dict[str, Any] | None = None, operationName: str | None = None
    ) -> dict[str, Any]:
        payload = {"query": query, "variables": variables or {}, "operationName": operationName}
        return body_of(client.post("/graphql", json=payload))

    return run


@dataclass
class StatementLog:
    statements: list[str]

    def clear(self) -> None:
        self.statements.clear()

    @property
    def reads(self) -> list[str]:
        """Statements other than the per-transaction session settings."""
        return [s for s in self.statements if "set_config" not in s]


@pytest.fixture
def statements(api_engine: Engine) -> Iterator[StatementLog]:
    """Every statement sent: through SQLAlchemy, and by the read lane's raw connections."""
    from schema import lane

    log = StatementLog([])

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        log.statements.append(statement)

    sa.event.listen(api_engine, "before_cursor_execute", before)
    unobserve = lane.observe(log.statements.append)
    try:
        yield log
    finally:
        unobserve()
        sa.event.remove(api_engine, "before_cursor_execute", before)
