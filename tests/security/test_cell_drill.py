"""``cube { drill { orders } }`` lists operational orders behind a cube cell: only the roles
that query cubes may ask it (customers and services never, not even for their own orders,
so a customer key cannot reach other customers' orders through a cell); the drill's
orders obey the page cap and the cost limit on every transport (the same checks)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tests.security.conftest import Parties, post, token
from tests.security.test_models_and_cubes import code

OWN = """query($id: Float!) { cube(limit: 10, where: {customers: {customerId: {equals: $id}}}) {
    sales { orderCount } drill { orders(first: 10) { totalCount edges { node { id } } } } } }"""


def test_customers_and_services_cannot_drill(client: Any, parties: Parties) -> None:
    for tok in (token("customer", parties.a), token("service")):
        for cid in (parties.a, parties.b):
            status, body = post(client, tok, OWN, {"id": cid})
            assert status == 403 and code(body) == "FORBIDDEN", body
            assert body.get("data") is None


def test_analysts_drill(client: Any, parties: Parties) -> None:
    status, body = post(client, token("analyst"), OWN, {"id": parties.b})
    assert status == 200 and "errors" not in body, body
    assert isinstance(body["data"]["cube"], list)


def test_drill_pages_obey_the_page_cap_and_the_cost_limit(client: Any) -> None:
    tok = token("analyst")
    status, body = post(
        client,
        tok,
        "{ cube(limit: 5) { sales { orderCount } drill { orders(first: 501) { totalCount } } } }",
    )
    assert code(body) == "BAD_USER_INPUT", body
    # the API's cost limit (50,000 objects): 10,000 rows (the default limit) x 50 orders
    status, body = post(
        client, tok, "{ cube { sales { orderCount } drill { orders { totalCount } } } }"
    )
    assert status == 400 and code(body) == "QUERY_TOO_COMPLEX", body


def test_without_the_request_checks_the_database_refuses_a_customers_drill(
    sec_engine: Any, parties: Parties
) -> None:
    """The floor under the role check: a customer's transaction (cdms_customer) reads no
    warehouse table, so a cube cell can never list orders for it, even with every request
    check forgotten; its own orders stay readable through orders, under RLS."""
    from tests.security.conftest import make_app
    from tests.security.test_isolation import _no_checks

    with make_app(sec_engine, access=_no_checks()) as client:
        tok = token("customer", parties.a)
        _, body = post(client, tok, OWN, {"id": parties.b})
        assert body.get("data") is None or body["data"].get("cube") is None, body
        assert code(body) == "FORBIDDEN", body
        status, body = post(client, tok, "{ orders { totalCount } }")
    # its own orders: those of the shop plus any a test placed for it earlier in the session
    with sec_engine.connect() as conn:
        own = conn.execute(
            sa.text("SELECT count(*) FROM app.orders WHERE customer_id = :c"), {"c": parties.a}
        ).scalar_one()
    assert own >= len(parties.a_orders)
    assert status == 200 and body["data"]["orders"]["totalCount"] == own, body
