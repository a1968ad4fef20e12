"""Ids of more than 4,300 digits (Python's limit on converting a digit string to an int)
as a node id, in a filter, a mutation's argument or input, and a ``customerId`` checked
for ownership: once a ValueError (HTTP 500, ``INTERNAL``, over a WebSocket the session torn
down), now a coded refusal before anything runs, on every transport."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.security.conftest import Parties, bearer, token
from tests.security.review.conftest import count
from tests.security.transports import TRANSPORTS, run_over, ws_init, ws_outcome, ws_send

PROTOCOLS = ("graphql-transport-ws", "graphql-ws")


# --- ids past Python's int conversion limit ---------------------------------------------

HUGE = "9" * 5000
PADDING = "0" * 5000  # customer A's own id, zero-padded past the limit


def _with(query: str, value: str) -> str:
    return query.replace("ID", value)


HUGE_IDS = {
    "a node id": _with('{ order(id: "ID") { id } }', HUGE),
    "a node id as an Int literal": _with("{ product(id: ID) { id } }", HUGE),
    "a filter": _with('{ orders(filter: {id: {eq: "ID"}}) { totalCount } }', HUGE),
    "a mutation argument": (
        _with('mutation { setOrderStatus(orderId: "ID", status: CANCELLED) { id } }', HUGE)
    ),
    "another customer in a query": _with('{ customer(id: "ID") { id } }', HUGE),
    "another customer in an input": (
        _with('mutation { submitFeedback(input: {customerId: "ID", rating: 5}) { id } }', HUGE)
    ),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", list(HUGE_IDS))
def test_an_id_of_thousands_of_digits_is_refused_on_every_transport(
    prod: Any, sec_engine: Engine, parties: Parties, transport: str, name: str
) -> None:
    feedback = "SELECT count(*) FROM app.feedback"
    before = count(sec_engine, feedback)
    headers = bearer(token("customer", parties.a))
    out = run_over(transport, prod, sec_engine, headers, HUGE_IDS[name])
    assert out.codes, out
    assert out.codes[0] in {"BAD_USER_INPUT", "FORBIDDEN"}, out  # before: 500 / INTERNAL
    if out.status is not None and transport != "batch":  # (a batch's answers: 200, each coded)
        assert out.status in {400, 403}, out
    assert count(sec_engine, feedback) == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_subscription_for_an_id_of_thousands_of_digits_is_forbidden(
    prod: Any, sec_engine: Engine, parties: Parties, protocol: str
) -> None:
    query = _with('subscription { orderStatusChanged(customerId: "ID") { orderId } }', HUGE)
    headers = bearer(token("customer", parties.a))
    with prod.websocket_connect("/graphql", subprotocols=[protocol], headers=headers) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": query})  # before: the session died
        assert ws_outcome(ws, "1").codes == ["FORBIDDEN"]


def test_a_customer_still_names_itself_zero_padded(prod: Any, parties: Parties) -> None:
    """Ownership compares the number, as before: leading zeros name the same customer,
    however many."""
    query = _with('{ customer(id: "ID") { id } }', PADDING + str(parties.a))
    headers = bearer(token("customer", parties.a))
    resp = prod.post("/graphql", json={"query": query}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"] == {"customer": {"id": str(parties.a)}}
