"""``cube { drill { orders } }`` lists operational orders behind a cube cell: only the roles
that query cubes may ask it (customers and services never, not even for their own orders,
so a customer key cannot reach other customers' orders through a cell); the drill's
orders obey the page cap and the cost limit on every transport (the same checks)."""

from __future__ import annotations

from typing import Any

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
