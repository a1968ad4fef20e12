"""Aliases multiply a mutation: 30 ``placeOrder`` in one operation (and 10 operations in a
batch) placed 300 orders for 10 rate-limit tokens (a hostile black-box test, 2026-12-06)."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.api.conftest import Shop
from tests.security.conftest import bearer, make_app, token


def _orders(engine: Engine, customer_id: int) -> int:
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT count(*) FROM app.orders WHERE customer_id = :c"), {"c": customer_id}
        ).scalar_one()
    return int(found)


def _customer(engine: Engine, tag: str) -> int:
    """A customer of the test's own: the module's customers hold other tests' unpaid orders,
    and a customer's unpaid orders hold at most 100 units."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.text(
                    "INSERT INTO app.customers (email, first_name, last_name, country, region,"
                    " city) VALUES (:e, 'Al', 'Ias', 'DE', 'R', 'C') RETURNING id"
                ),
                {"e": f"{tag}-{secrets.token_hex(6)}@example.com"},
            ).scalar_one()
        )


def test_each_mutation_field_takes_a_rate_token(sec_engine: Engine, sec_shop: Shop) -> None:
    """Aliases multiplied placeOrder: 30 orders for one token. Each mutation field takes
    one (an operation's first is its own token), so a request past the bucket places
    nothing (its operation's token is spent), and one within it places all."""
    product = sec_shop.products[0]
    me = _customer(sec_engine, "aliases")
    place = (
        f'placeOrder(input: {{customerId: "{me}", items: [{{productId: "{product}",'
        " quantity: 1}], channel: WEB, paymentMethod: CARD}) { id }"
    )
    tok = token("service", sub="aliases")  # (a customer's operation makes one change)

    def mutation(n: int) -> str:
        return "mutation { " + " ".join(f"a{i}: {place}" for i in range(n)) + " }"

    with make_app(sec_engine, rate_per_s=0.01, burst=6) as client:
        before = _orders(sec_engine, me)
        resp = client.post("/graphql", json={"query": mutation(7)}, headers=bearer(tok))
        assert resp.status_code == 429, resp.text
        assert resp.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert _orders(sec_engine, me) == before
        resp = client.post("/graphql", json={"query": mutation(5)}, headers=bearer(tok))
        assert resp.status_code == 200 and "errors" not in resp.json(), resp.text  # 1 + 4
        assert _orders(sec_engine, me) == before + 5
        resp = client.post("/graphql", json={"query": mutation(1)}, headers=bearer(tok))
        assert resp.status_code == 429  # the five took the bucket


def test_a_customers_operation_makes_one_change(sec_engine: Engine, sec_shop: Shop) -> None:
    """An operation's mutation fields share one transaction, holding what each locks until
    the last: a customer ordering [b] then [a] in one operation deadlocked other customers'
    orders of [a, b], and a last field refused on purpose rolled everything back, free of
    the customer's daily limits (the hostile review of 2026-12-07). A customer's operation
    of two mutation fields is refused before anything runs, on every transport; the same
    two as a batch of two operations are placed (each its own transaction)."""
    a, b = sec_shop.products[0], sec_shop.products[1]
    me = _customer(sec_engine, "one-change")

    def place(alias: str, product: int) -> str:
        return (
            f'{alias}: placeOrder(input: {{customerId: "{me}", items: [{{productId:'
            f' "{product}", quantity: 1}}], channel: WEB, paymentMethod: CARD}}) {{ id }}'
        )

    tok = token("customer", me, sub="one-change")
    two = "mutation { " + place("x", b) + " " + place("y", a) + " }"
    with make_app(sec_engine) as client:
        for body in ({"query": two}, [{"query": "{ __typename }"}, {"query": two}]):
            resp = client.post("/graphql", json=body, headers=bearer(tok))
            assert resp.status_code == 400, resp.text
            answer = resp.json()
            error = (answer[1] if isinstance(answer, list) else answer)["errors"][0]
            assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", answer
            assert error["extensions"]["limit"] == 1, answer
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {tok}"}})
            assert ws.receive_json()["type"] == "connection_ack"
            ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": two}})
            message = ws.receive_json()
            assert message["type"] == "error", message
            assert message["payload"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert _orders(sec_engine, me) == 0
        batch = [{"query": "mutation { " + place("x", p) + " }"} for p in (b, a)]
        resp = client.post("/graphql", json=batch, headers=bearer(tok))
        assert resp.status_code == 200 and all("errors" not in r for r in resp.json()), resp.text
        assert _orders(sec_engine, me) == 2
