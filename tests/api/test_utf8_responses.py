"""Text is sent as UTF-8 as stored, never ``\\u``-escaped (docs/api.md, "Formats"), on
every path: the compiled read, a mutation's payload, a query mixing a resolver root with a
relational one, a batch, both WebSocket subprotocols and a subscription's events. Checked
on the raw bytes (a JSON parser reads both spellings alike). Runs on its own database."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from schema import subscriptions as notify
from tests.api.conftest import Shop, TestClient

CITY = "Köln 🙂"  # a Latin-1 letter and a character beyond the BMP (a surrogate pair in \u)
RAW = CITY.encode("utf-8")

READ = "query ($id: ID!) { customer(id: $id) { city } }"
MIXED = "query ($id: ID!) { customer(id: $id) { city } cubeMeta { name } }"
MUTATION = """mutation ($id: ID!, $city: String!) {
  updateCustomer(id: $id, input: {city: $city}) { city } }"""
SUBSCRIPTION = """subscription ($c: ID!) { orderStatusChanged(customerId: $c) {
  toStatus order { customer { city } } } }"""
PROTOCOLS = ("graphql-transport-ws", "graphql-ws")


@pytest.fixture(scope="module")
def customer(w_engine: Engine, w_shop: Shop) -> str:
    cid = w_shop.customers[1]
    with w_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE app.customers SET city = :c WHERE id = :id"), {"c": CITY, "id": cid}
        )
    return str(cid)


def _operations(customer: str) -> dict[str, dict[str, Any]]:
    return {
        "read": {"query": READ, "variables": {"id": customer}},
        "mixed": {"query": MIXED, "variables": {"id": customer}},
        "mutation": {"query": MUTATION, "variables": {"id": customer, "city": CITY}},
    }


def _unescaped(raw: bytes) -> None:
    assert RAW in raw, raw
    assert b"\\u" not in raw, raw


@pytest.mark.parametrize("kind", ["read", "mixed", "mutation"])
def test_http_answers_text_unescaped(w_client: TestClient, customer: str, kind: str) -> None:
    resp = w_client.post("/graphql", json=_operations(customer)[kind])
    assert resp.status_code == 200 and "errors" not in resp.json(), resp.text
    assert resp.headers["content-type"].startswith("application/json")
    _unescaped(resp.content)


def test_a_batch_answers_text_unescaped(w_client: TestClient, customer: str) -> None:
    ops = list(_operations(customer).values())
    resp = w_client.post("/graphql", json=ops)
    body = resp.json()
    assert resp.status_code == 200 and len(body) == 3, resp.text
    assert all("errors" not in b for b in body), body
    assert resp.content.count(RAW) == 3 and b"\\u" not in resp.content, resp.content


@pytest.mark.parametrize(
    "operation",
    [
        {"query": '{ customer(id: "Köln") { id } }'},  # an argument the field refuses
        {  # a variable the request checks refuse
            "query": "query ($n: Int) { customers(first: $n) { totalCount } }",
            "variables": {"n": "Köln"},
        },
    ],
)
def test_an_error_message_is_unescaped(w_client: TestClient, operation: dict[str, Any]) -> None:
    """An error answered before anything ran, quoting what was sent."""
    resp = w_client.post("/graphql", json=operation)
    assert resp.status_code == 400, resp.text
    assert "Köln".encode() in resp.content and b"\\u" not in resp.content, resp.content


def _connect(ws: Any) -> None:
    ws.send_json({"type": "connection_init"})
    assert ws.receive_json()["type"] == "connection_ack"


def _answer(ws: Any, op_id: str) -> str:
    """The raw text of the first ``next``/``data`` message of ``op_id``."""
    while True:
        text: str = ws.receive_text()
        if f'"id":"{op_id}"' in text and ('"type":"next"' in text or '"type":"data"' in text):
            return text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_websockets_answer_text_unescaped(
    w_client: TestClient, customer: str, protocol: str
) -> None:
    start = "subscribe" if protocol == "graphql-transport-ws" else "start"
    with w_client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
        _connect(ws)
        for op_id, payload in _operations(customer).items():
            ws.send_json({"id": op_id, "type": start, "payload": payload})
            text = _answer(ws, op_id)
            assert '"errors"' not in text, text
            _unescaped(text.encode("utf-8"))


def _queues() -> set[Any]:
    return {q for h in list(notify._hubs.values()) for q in list(h.subscribers)}


def _wait_for_listener(before: set[Any]) -> None:
    """Until a hub listens with a subscriber not in ``before``: this test's own (the
    previous test's may still be there, being dropped, and hear the change instead)."""
    deadline = time.monotonic() + 10
    while not any(
        h.listening.is_set() and set(h.subscribers) - before for h in list(notify._hubs.values())
    ):
        assert time.monotonic() < deadline, "the subscription never listened"
        time.sleep(0.02)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subscription_events_are_unescaped(
    w_client: TestClient, w_engine: Engine, w_shop: Shop, customer: str, protocol: str
) -> None:
    start = "subscribe" if protocol == "graphql-transport-ws" else "start"
    order = w_shop.orders[int(customer)][0 if protocol == PROTOCOLS[0] else 1]

    def change() -> None:
        with w_engine.begin() as conn:  # pending -> cancelled, or paid -> cancelled
            conn.execute(
                sa.text("UPDATE app.orders SET status = 'cancelled' WHERE id = :id"), {"id": order}
            )

    with w_client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
        _connect(ws)
        before = _queues()
        payload = {"query": SUBSCRIPTION, "variables": {"c": customer}}
        ws.send_json({"id": "s", "type": start, "payload": payload})
        _wait_for_listener(before)
        threading.Thread(target=change).start()
        text = _answer(ws, "s")
        ws.send_json({"id": "s", "type": "complete" if start == "subscribe" else "stop"})
    assert '"CANCELLED"' in text and '"errors"' not in text, text
    _unescaped(text.encode("utf-8"))
