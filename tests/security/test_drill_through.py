"""``cubeDrillThrough`` lists warehouse rows (orders, customers' lines) behind a cube cell:
only the roles that query cubes may call it; customers and services never, not even for
their own rows; members hidden by a perspective stay as unknown as in ``cube``."""

from __future__ import annotations

from typing import Any

from tests.security.conftest import Parties, post, token
from tests.security.test_models_and_cubes import code

OWN = """query($id: String) { cubeDrillThrough(cube: "sales",
    cell: [{member: "customers.customerId", value: $id}]) {
      totalCount rows { sales { orderId revenue } } } }"""


def test_customers_and_services_cannot_drill(client: Any, parties: Parties) -> None:
    for tok in (token("customer", parties.a), token("service")):
        for cid in (parties.a, parties.b):
            status, body = post(client, tok, OWN, {"id": str(cid)})
            assert status == 403 and code(body) == "FORBIDDEN", body
            assert body.get("data") is None


def test_analysts_drill_and_hidden_members_stay_unknown(client: Any, parties: Parties) -> None:
    tok = token("analyst")
    status, body = post(client, tok, OWN, {"id": str(parties.b)})
    assert status == 200 and "errors" not in body, body
    for hidden, unknown in (("products.unitCost", "products.unitCosts"),):
        answers = []
        for name in (hidden, unknown):
            status, body = post(
                client,
                tok,
                f'{{ cubeDrillThrough(cube: "sales", cell: [{{member: "{name}", value: "1"}}])'
                " { totalCount } }",
            )
            assert code(body) == "BAD_USER_INPUT", body
            answers.append(body["errors"][0]["message"].replace(name, "?"))
        assert answers[0] == answers[1]  # nothing tells a hidden member from a missing one
    status, body = post(
        client, tok, '{ cubeDrillThrough(cube: "sales") { rows { products { unitCost } } } }'
    )
    assert code(body) == "BAD_USER_INPUT", body


def test_drill_pages_obey_the_page_cap(client: Any) -> None:
    status, body = post(
        client, token("analyst"), '{ cubeDrillThrough(cube: "sales", first: 501) { totalCount } }'
    )
    assert status == 400 or code(body) == "BAD_USER_INPUT", body
    assert code(body) == "BAD_USER_INPUT"
