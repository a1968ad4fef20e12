"""Every path for a customer token to reach another customer's data fails: by id, by
filter, through nested fields, totals and aggregates, subscriptions and mutations, and
even with the request checks switched off (row-level security is the floor)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from graphql import OperationType
from sqlalchemy.engine import Engine

from api.rules import Access
from tests.api.conftest import Shop
from tests.security.conftest import Call, Parties, bearer, make_app, post, token


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def ids(conn: dict[str, Any]) -> list[int]:
    return [int(e["node"]["id"]) for e in conn["edges"]]


def test_by_id(as_a: Call, parties: Parties) -> None:
    body = as_a(
        "query ($c: ID!, $o: ID!) { customer(id: $c) { id } order(id: $o) { id } }",
        {"c": str(parties.b), "o": str(parties.b_orders[0])},
    )
    # the request checks refuse naming another customer outright
    assert codes(body) == ["FORBIDDEN"]
    body = as_a(
        "query ($o: ID!) { order(id: $o) { id customer { id } } }", {"o": str(parties.b_orders[0])}
    )
    assert body["data"]["order"] is None
    body = as_a(
        "query ($o: ID!) { order(id: $o) { id customer { id } } }", {"o": str(parties.a_orders[0])}
    )
    assert body["data"]["order"]["customer"]["id"] == str(parties.a)


def test_by_filter_totals_and_aggregates(as_a: Call, parties: Parties) -> None:
    body = as_a(
        """query ($b: ID!) {
          customers(filter: {id: {eq: $b}}) { totalCount edges { node { id } } }
          all: customers { totalCount aggregate { count } edges { node { id } } }
          orders(first: 100) {
            totalCount aggregate { count } edges { node { id customer { id } } } }
          other: orders(filter: {customer: {some: {id: {eq: $b}}}}) {
            totalCount edges { node { id } } }
        }""",
        {"b": str(parties.b)},
    )
    assert "errors" not in body, body
    d = body["data"]
    assert d["customers"] == {"totalCount": 0, "edges": []}
    assert d["all"]["totalCount"] == d["all"]["aggregate"]["count"] == 1
    assert ids(d["all"]) == [parties.a]
    assert d["orders"]["totalCount"] == d["orders"]["aggregate"]["count"] == len(parties.a_orders)
    assert sorted(ids(d["orders"])) == sorted(parties.a_orders)
    assert {e["node"]["customer"]["id"] for e in d["orders"]["edges"]} == {str(parties.a)}
    assert d["other"] == {"totalCount": 0, "edges": []}


def test_nested_fields(as_a: Call, sec_engine: Engine, parties: Parties) -> None:
    with sec_engine.connect() as conn:
        foreign = conn.execute(
            sa.text("SELECT count(*) FROM app.feedback WHERE customer_id <> :a"), {"a": parties.a}
        ).scalar_one()
    assert foreign > 0  # other customers' feedback exists on the products
    body = as_a(
        """{ products { edges { node { id
               feedback { totalCount edges { node { customer { id } } } } } } }
             feedback { totalCount edges { node { customer { id } order { id } } } }
             returns { totalCount } supportTickets { totalCount edges { node { id } } } }"""
    )
    assert "errors" not in body, body
    d = body["data"]
    seen = {
        e2["node"]["customer"]["id"]
        for e in d["products"]["edges"]
        for e2 in e["node"]["feedback"]["edges"]
    }
    assert seen <= {str(parties.a)}
    assert {e["node"]["customer"]["id"] for e in d["feedback"]["edges"]} <= {str(parties.a)}
    with sec_engine.connect() as conn:
        own = conn.execute(
            sa.text("SELECT count(*) FROM app.feedback WHERE customer_id = :a"), {"a": parties.a}
        ).scalar_one()
    assert d["feedback"]["totalCount"] == own


def test_who_changed_an_order_is_for_staff_only(client: Any, parties: Parties) -> None:
    """``changedBy`` names the shop's API keys and staff: a customer is refused it, also
    inside a fragment, while the rest of its own order's history stays readable."""
    q = """query ($o: ID!) { order(id: $o) { statusHistory { toStatus ...who } } }
    fragment who on OrderStatusChange { changedBy }"""
    variables = {"o": str(parties.a_orders[0])}
    status, body = post(client, token("customer", parties.a), q, variables)
    assert status == 403 and codes(body) == ["FORBIDDEN"], body
    assert "changedBy" in body["errors"][0]["message"]
    status, body = post(
        client,
        token("customer", parties.a),
        "query ($o: ID!) { order(id: $o) { statusHistory { toStatus changedAt } } }",
        variables,
    )
    assert status == 200 and body["data"]["order"]["statusHistory"], body
    for role in ("admin", "analyst", "service"):
        status, body = post(client, token(role), q, variables)
        assert status == 200 and "errors" not in body, body
        assert all("changedBy" in h for h in body["data"]["order"]["statusHistory"])


def test_mutations_for_someone_else(
    client: Any, as_a: Call, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    before = _counts(sec_engine, parties.b)
    place = """mutation ($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, channel: WEB,
        paymentMethod: CARD, items: [{productId: $p, quantity: 1}]}) { id } }"""
    ticket = """mutation ($c: ID!) { openSupportTicket(input: {customerId: $c, category: OTHER,
        channel: WEB, subject: "hello"}) { id } }"""
    feedback = "mutation ($c: ID!) { submitFeedback(input: {customerId: $c, rating: 1}) { id } }"
    product = sec_shop.products[0]
    inline = f"""mutation {{ placeOrder(input: {{customerId: "{parties.b}", channel: WEB,
        paymentMethod: CARD, items: [{{productId: "{product}", quantity: 1}}]}}) {{ id }} }}"""
    for query in (place, ticket, feedback, inline):
        body = as_a(query, {"c": str(parties.b), "p": str(sec_shop.products[0])})
        assert codes(body) == ["FORBIDDEN"], body
    # operations a customer may not call at all
    body = as_a(
        "mutation ($o: ID!) { setOrderStatus(orderId: $o, status: PAID) { id } }",
        {"o": str(parties.a_orders[0])},
    )
    assert codes(body) == ["FORBIDDEN"]
    assert _counts(sec_engine, parties.b) == before
    # for itself it works, and the write records who made it
    body = as_a(place, {"c": str(parties.a), "p": str(sec_shop.products[0])})
    assert "errors" not in body, body
    oid = int(body["data"]["placeOrder"]["id"])
    body = as_a(ticket, {"c": str(parties.a)})
    tid = int(body["data"]["openSupportTicket"]["id"])
    with sec_engine.connect() as conn:
        created_by = conn.execute(
            sa.text("SELECT created_by FROM app.orders WHERE id = :id"), {"id": oid}
        ).scalar()
        changed_by = conn.execute(
            sa.text("SELECT changed_by FROM app.order_status_history WHERE order_id = :id"),
            {"id": oid},
        ).scalar()
        opened_by = conn.execute(
            sa.text("SELECT opened_by FROM app.support_tickets WHERE id = :id"), {"id": tid}
        ).scalar()
    assert created_by == changed_by == opened_by == f"customer:{parties.a}"


def _counts(engine: Engine, customer: int) -> tuple[int, ...]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM app.orders WHERE customer_id = :c),"
                " (SELECT count(*) FROM app.support_tickets WHERE customer_id = :c),"
                " (SELECT count(*) FROM app.feedback WHERE customer_id = :c)"
            ),
            {"c": customer},
        ).one()
    return tuple(int(x) for x in row)


def _no_checks() -> Access:
    """An access table with every check forgotten: what a bug in it would look like."""
    everyone = frozenset({"admin", "analyst", "service", "customer"})
    return Access(
        fields={},
        root_default=dict.fromkeys(OperationType, everyone),
        owner_keys=frozenset(),
    )


def test_row_level_security_holds_without_the_request_checks(
    sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    before = _counts(sec_engine, parties.b)
    with make_app(sec_engine, access=_no_checks()) as client:
        tok = token("customer", parties.a)
        status, body = post(
            client,
            tok,
            """query ($c: ID!) { customer(id: $c) { id } customers { totalCount }
                orders(filter: {customer: {some: {id: {eq: $c}}}}) { totalCount } }""",
            {"c": str(parties.b)},
        )
        assert status == 200 and "errors" not in body, body
        assert body["data"] == {
            "customer": None,
            "customers": {"totalCount": 1},
            "orders": {"totalCount": 0},
        }
        for query in (
            """mutation ($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, channel: WEB,
               paymentMethod: CARD, items: [{productId: $p, quantity: 1}]}) { id } }""",
            """mutation ($c: ID!) { openSupportTicket(input: {customerId: $c, category: OTHER,
               channel: WEB, subject: "x"}) { id } }""",
            "mutation ($c: ID!) { submitFeedback(input: {customerId: $c, rating: 1}) { id } }",
        ):
            _, body = post(
                client, tok, query, {"c": str(parties.b), "p": str(sec_shop.products[0])}
            )
            assert body["data"] is None and codes(body)[0] in {"FORBIDDEN", "NOT_FOUND"}, body
        # an analyst's mutation is refused by the database too
        _, body = post(
            client,
            token("analyst"),
            "mutation ($o: ID!) { setOrderStatus(orderId: $o, status: PAID) { id } }",
            {"o": str(parties.b_orders[0])},
        )
        assert codes(body)[0] in {"FORBIDDEN", "NOT_FOUND"}, body
    assert _counts(sec_engine, parties.b) == before


def test_subscription_for_someone_else_is_refused(client: Any, parties: Parties) -> None:
    query = "subscription ($c: ID!) { orderStatusChanged(customerId: $c) { orderId } }"
    with client.websocket_connect(
        "/graphql",
        subprotocols=["graphql-transport-ws"],
        headers=bearer(token("customer", parties.a)),
    ) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": query, "variables": {"c": str(parties.b)}},
            }
        )
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "FORBIDDEN", (
            msg
        )


def test_websocket_needs_a_token(client: Any) -> None:
    import pytest
    from starlette.websockets import WebSocketDisconnect

    # a browser cannot send headers on a WebSocket: the socket opens, and the first message
    # (connection_init) must carry the token; without one the app closes it with 4401
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {}})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4401
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"Authorization": "Bearer a.b.c"}})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4401


def test_a_token_in_connection_init_is_the_sockets_principal(client: Any, parties: Parties) -> None:
    """The token of the connection_init payload (how GraphiQL sends it) authenticates the
    socket like a header would: the customer is who the server checks against."""
    query = "subscription ($c: ID!) { orderStatusChanged(customerId: $c) { orderId } }"
    for payload in (
        {"Authorization": f"Bearer {token('customer', parties.a)}"},
        {"headers": {"authorization": f"Bearer {token('customer', parties.a)}"}},
    ):
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init", "payload": payload})
            assert ws.receive_json()["type"] == "connection_ack"
            ws.send_json(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": {"c": str(parties.b)}},
                }
            )
            msg = ws.receive_json()
            assert msg["type"] == "error", msg
            assert msg["payload"][0]["extensions"]["code"] == "FORBIDDEN", msg
