"""An operation's mutation fields are written all or nothing: they run in one transaction,
committed once the last has answered. Before, each field committed on its own: with
``a: placeOrder(…) b: placeOrder(<refused>)`` order ``a`` was placed (stock taken, history
written, its idempotency key kept) while the answer, every payload being non-null, was
``data: null`` and the error, which reads as "nothing happened"; a client that retried
placed ``a`` twice."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.apikeys import create_key
from db.replicas import HEADER, parse_lsn
from tests.api.conftest import Shop
from tests.security.conftest import make_app, token
from tests.security.transports import run_over

ROLES = ("admin", "service")  # a customer's operation makes one change (below)


@pytest.fixture(scope="module")
def client(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    with make_app(sec_engine, production=True) as c:
        yield c


@pytest.fixture(scope="module")
def service_key(sec_engine: Engine, sec_shop: Shop) -> str:
    return create_key(sec_engine, "service", name="atomicity service")[1]


@dataclass(frozen=True)
class Caller:
    customer: int  # a customer of the test's own
    headers: dict[str, str]  # its token, or the service key


@pytest.fixture(params=ROLES)
def caller(request: pytest.FixtureRequest, sec_engine: Engine, service_key: str) -> Caller:
    me = _customer(sec_engine)
    secret = token("admin", sub=f"atomic-{me}") if request.param == "admin" else service_key
    return Caller(me, {"Authorization": f"Bearer {secret}"})


def _customer(engine: Engine) -> int:
    """A customer of the test's own: no other test's orders, none of its unpaid units."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.text(
                    "INSERT INTO app.customers (email, first_name, last_name, country, region,"
                    " city) VALUES (:e, 'At', 'Omic', 'DE', 'R', 'C') RETURNING id"
                ),
                {"e": f"atomic-{secrets.token_hex(6)}@example.com"},
            ).scalar_one()
        )


def _product(engine: Engine, stock: int) -> int:
    """A product of the test's own holding ``stock`` units."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.text(
                    "INSERT INTO app.products (sku, name, category, subcategory, brand,"
                    " unit_price, cost, stock) VALUES (:s, 'Atom', 'c', 's', 'b', 10, 1, :n)"
                    " RETURNING id"
                ),
                {"s": f"ATOM-{secrets.token_hex(6).upper()}", "n": stock},
            ).scalar_one()
        )


def _state(engine: Engine, customer: int, products: list[int], keys: list[str]) -> dict[str, Any]:
    """What a placed order leaves: the customer's orders and their status history, the
    products' stock, the idempotency keys' rows."""
    with engine.connect() as conn:
        one = conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM app.orders WHERE customer_id = :c),"
                " (SELECT count(*) FROM app.order_status_history AS h"
                "  JOIN app.orders AS o ON o.id = h.order_id WHERE o.customer_id = :c),"
                " (SELECT array_agg(stock ORDER BY id) FROM app.products WHERE id = ANY(:p)),"
                " (SELECT count(*) FROM app.idempotency_keys WHERE key = ANY(:k))"
            ),
            {"c": customer, "p": products, "k": keys},
        ).one()
    return {"orders": one[0], "history": one[1], "stock": list(one[2]), "keys": one[3]}


def _place(alias: str, customer: int, product: int, quantity: int, key: str | None = None) -> str:
    keyed = f', idempotencyKey: "{key}"' if key is not None else ""
    return (
        f'{alias}: placeOrder(input: {{customerId: "{customer}", items: [{{productId:'
        f' "{product}", quantity: {quantity}}}], channel: WEB, paymentMethod: CARD{keyed}}})'
        " { id status items { quantity } }"
    )


def test_a_refused_field_undoes_the_fields_before_it(
    client: Any, sec_engine: Engine, caller: Caller
) -> None:
    plenty, scarce = _product(sec_engine, 100), _product(sec_engine, 3)
    keys = [f"atomic-{secrets.token_hex(6)}", f"atomic-{secrets.token_hex(6)}"]
    query = (
        "mutation { "
        + _place("a", caller.customer, plenty, 2, keys[0])
        + " "
        + _place("b", caller.customer, scarce, 5, keys[1])
        + " }"
    )
    before = _state(sec_engine, caller.customer, [plenty, scarce], keys)
    resp = client.post("/graphql", json={"query": query}, headers=caller.headers)
    body = resp.json()
    assert resp.status_code == 409, body
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["OUT_OF_STOCK"]
    assert "commitLsn" not in body.get("extensions", {}) and HEADER not in resp.headers
    # nothing of `a`: no order, no history row, its stock, no idempotency key
    assert _state(sec_engine, caller.customer, [plenty, scarce], keys) == before

    # the stock arrives: the same operation, retried with the same keys, places both once
    with sec_engine.begin() as conn:
        conn.execute(sa.text("UPDATE app.products SET stock = 10 WHERE id = :p"), {"p": scarce})
    resp = client.post("/graphql", json={"query": query}, headers=caller.headers)
    body = resp.json()
    assert resp.status_code == 200 and "errors" not in body, body
    a, b = body["data"]["a"], body["data"]["b"]
    assert a["status"] == b["status"] == "PENDING" and a["id"] != b["id"]
    assert [a["items"], b["items"]] == [[{"quantity": 2}], [{"quantity": 5}]]
    lsn = body["extensions"]["commitLsn"]
    assert resp.headers[HEADER] == lsn and parse_lsn(lsn) > 0
    after = _state(sec_engine, caller.customer, [plenty, scarce], keys)
    assert after == {
        "orders": before["orders"] + 2,
        "history": before["history"] + 2,
        "stock": [98, 5],
        "keys": 2,
    }
    # and a retry of it again returns the same two orders
    again = client.post("/graphql", json={"query": query}, headers=caller.headers).json()
    assert again["data"] == body["data"]
    assert _state(sec_engine, caller.customer, [plenty, scarce], keys) == after


def test_a_refused_status_change_undoes_the_order_placed_before_it(
    client: Any, sec_engine: Engine, caller: Caller
) -> None:
    product = _product(sec_engine, 100)
    with sec_engine.begin() as conn:  # an order of the customer's, shipped: not cancellable
        shipped = conn.execute(
            sa.text("SELECT app.place_order(:c, jsonb_build_array(jsonb_build_object("
                    "'product_id', :p, 'quantity', 1)), 'web', 'card')"),
            {"c": caller.customer, "p": product},
        ).scalar_one()  # fmt: skip
        for step in ("paid", "shipped"):
            conn.execute(sa.text("SELECT app.set_order_status(:o, :s)"), {"o": shipped, "s": step})
    query = (
        "mutation { "
        + _place("a", caller.customer, product, 4)
        + f' b: setOrderStatus(orderId: "{shipped}", status: CANCELLED) {{ id status }} }}'
    )
    before = _state(sec_engine, caller.customer, [product], [])
    resp = client.post("/graphql", json={"query": query}, headers=caller.headers)
    body = resp.json()
    assert resp.status_code == 409 and body["data"] is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INVALID_TRANSITION"]
    assert _state(sec_engine, caller.customer, [product], []) == before
    with sec_engine.connect() as conn:
        status = conn.execute(
            sa.text("SELECT status FROM app.orders WHERE id = :o"), {"o": shipped}
        ).scalar_one()
    assert status == "shipped"


@pytest.mark.parametrize("transport", ["batch", "ws", "ws-legacy"])
def test_every_transport_writes_an_operation_whole(
    client: Any, sec_engine: Engine, service_key: str, transport: str
) -> None:
    """In a batch (an operation of its own beside a read) and over both WebSocket
    subprotocols: the refused operation writes nothing, the valid one all of it."""
    headers = {"Authorization": f"Bearer {service_key}"}
    plenty, scarce = _product(sec_engine, 100), _product(sec_engine, 3)
    customer = _customer(sec_engine)

    def operation(quantity: int) -> str:
        return (
            "mutation { "
            + _place("a", customer, plenty, 1)
            + " "
            + _place("b", customer, scarce, quantity)
            + " }"
        )

    before = _state(sec_engine, customer, [plenty, scarce], [])
    out = run_over(transport, client, sec_engine, headers, operation(5))
    assert out.data is None and out.codes == ["OUT_OF_STOCK"], out
    assert _state(sec_engine, customer, [plenty, scarce], []) == before
    out = run_over(transport, client, sec_engine, headers, operation(2))
    assert out.codes == [] and out.data["a"]["id"] != out.data["b"]["id"], out
    after = _state(sec_engine, customer, [plenty, scarce], [])
    assert after["orders"] == before["orders"] + 2 and after["stock"] == [99, 1]
