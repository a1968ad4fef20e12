"""GraphQL ``Int`` at its lower limit, -2^31 (found by the schemathesis run): SQLAlchemy types
that one literal BIGINT, one past where it starts to, so a stored procedure with an
``integer`` parameter was "not found" and the mutation answered INTERNAL. Each ``Int``
argument of a procedure call at either limit must get the same answer as its neighbour,
the procedure's own refusal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from db.engine import make_engine
from tests.api.conftest import Shop, build_shop, make_client
from tests.api.helpers import body_of

if TYPE_CHECKING:
    from starlette.testclient import TestClient

LOW, HIGH = -(2**31), 2**31 - 1

REQUEST_RETURN = """mutation ($o: ID!, $l: Int!, $q: Int!) { requestReturn(input: {orderId: $o,
  lineNo: $l, quantity: $q, reason: DAMAGED}) { id } }"""
OPEN_TICKET = """mutation ($c: ID!) { openSupportTicket(input: {customerId: $c, category: OTHER,
  channel: EMAIL, subject: "limits"}) { id } }"""
RATE_TICKET = """mutation ($t: ID!, $s: Int) { updateSupportTicket(ticketId: $t, status: RESOLVED,
  satisfaction: $s) { id } }"""


@pytest.fixture(scope="module")
def limits_client(clone_database: Callable[[str], str]) -> Iterator[tuple[TestClient, Shop]]:
    engine = make_engine(clone_database("intlimits"))
    with engine.begin() as conn:
        shop = build_shop(conn)
    with make_client(engine) as client:
        yield client, shop


def _codes(client: TestClient, query: str, **variables: Any) -> list[str]:
    body = body_of(client.post("/graphql", json={"query": query, "variables": variables}))
    return [e["extensions"]["code"] for e in body.get("errors") or []]


@pytest.mark.parametrize("value", [LOW, HIGH])
def test_request_return_int_limits(limits_client: tuple[TestClient, Shop], value: int) -> None:
    client, shop = limits_client
    order = shop.orders[shop.customers[1]][0]
    for args in ({"l": value, "q": 1}, {"l": 1, "q": value}, {"l": value, "q": value}):
        neighbour = {k: v + (1 if v == LOW else -1 if v == HIGH else 0) for k, v in args.items()}
        got = _codes(client, REQUEST_RETURN, o=order, **args)
        assert got == _codes(client, REQUEST_RETURN, o=order, **neighbour), args
        assert got and "INTERNAL" not in got, (args, got)


@pytest.mark.parametrize("value", [LOW, HIGH])
def test_ticket_satisfaction_int_limits(limits_client: tuple[TestClient, Shop], value: int) -> None:
    client, shop = limits_client
    resp = client.post(
        "/graphql", json={"query": OPEN_TICKET, "variables": {"c": shop.customers[0]}}
    )
    ticket = resp.json()["data"]["openSupportTicket"]["id"]
    neighbour = value + 1 if value == LOW else value - 1
    got = _codes(client, RATE_TICKET, t=ticket, s=value)
    assert got == _codes(client, RATE_TICKET, t=ticket, s=neighbour) == ["BAD_USER_INPUT"]
