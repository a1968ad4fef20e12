"""An open WebSocket is held to the same rules as a request, for as long as it is open:
its credential is checked again per operation and the socket is closed when the key is
revoked (4403) or the token expires (4401); rate limits and the persisted-only rule apply
to each operation. What a subscription's events may tell: tests/security/test_notify.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.websockets import WebSocketDisconnect

from api.apikeys import create_key
from tests.api.conftest import Shop
from tests.security.conftest import Parties, bearer, make_app, token
from tests.security.transports import WS_PROTOCOL, receive, register, ws_init, ws_outcome, ws_send

PROTOCOLS = list(WS_PROTOCOL.values())
WHO = "{ products { totalCount } }"


def _subscription(customer: int) -> dict[str, Any]:
    return {
        "query": "subscription ($c: ID!) { orderStatusChanged(customerId: $c) {"
        " orderId customerId toStatus } }",
        "variables": {"c": str(customer)},
    }


def _closed_within(ws: Any, seconds: float) -> int | None:
    """The close code if the server closes the socket within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = receive(ws, timeout=max(0.1, deadline - time.monotonic()))
        except WebSocketDisconnect as exc:
            return int(exc.code)
        if msg is None:
            return None
    return None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_expired_token_closes_the_socket(
    sec_engine: Engine, sec_shop: Shop, parties: Parties, protocol: str
) -> None:
    with make_app(sec_engine, jwt_leeway_s=0) as client:
        tok = token("customer", parties.a, ttl=2)
        with client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(tok)
        ) as ws:
            assert ws_init(ws, protocol)["type"] == "connection_ack"
            ws_send(ws, protocol, "1", {"query": WHO})
            first = ws_outcome(ws, "1")
            assert first.data == {"products": {"totalCount": 5}}, first
            ws_send(ws, protocol, "2", _subscription(parties.a))
            assert _closed_within(ws, 10) == 4401


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_revoked_key_closes_the_socket(
    sec_engine: Engine, sec_shop: Shop, parties: Parties, protocol: str
) -> None:
    key_row, key = create_key(sec_engine, "customer", parties.a, name="revoked on a socket")
    with (
        make_app(sec_engine, apikey_cache_s=0.5) as client,
        client.websocket_connect("/graphql", subprotocols=[protocol], headers=bearer(key)) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", _subscription(parties.a))
        with sec_engine.begin() as conn:  # revoked by another process: straight in SQL
            conn.execute(
                sa.text("UPDATE app.api_keys SET revoked_at = now() WHERE id = :id"),
                {"id": key_row.id},
            )
        assert _closed_within(ws, 10) == 4403


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_revoked_key_gets_no_more_answers(
    sec_engine: Engine, sec_shop: Shop, parties: Parties, protocol: str
) -> None:
    key_row, key = create_key(sec_engine, "analyst", name="revoked, asking")
    with (
        make_app(sec_engine, apikey_cache_s=0.2) as client,
        client.websocket_connect("/graphql", subprotocols=[protocol], headers=bearer(key)) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": WHO})
        assert ws_outcome(ws, "1").data == {"products": {"totalCount": 5}}
        with sec_engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE app.api_keys SET revoked_at = now() WHERE id = :id"),
                {"id": key_row.id},
            )
        time.sleep(0.3)  # past the key cache
        ws_send(ws, protocol, "2", {"query": WHO})
        out = ws_outcome(ws, "2")
        assert out.closed == 4403 or out.codes == ["UNAUTHENTICATED"], out
        assert out.data is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rate_limits_apply_to_each_websocket_operation(
    sec_engine: Engine, sec_shop: Shop, protocol: str
) -> None:
    with (
        make_app(sec_engine, rate_per_s=1.0, burst=3) as client,
        client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(token("analyst", sub="ws-rate"))
        ) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        outcomes = []
        for i in range(10):
            ws_send(ws, protocol, str(i), {"query": WHO})
            outcomes.append(ws_outcome(ws, str(i)))
        answered = [o for o in outcomes if o.data is not None]
        limited = [o for o in outcomes if o.codes == ["RATE_LIMITED"]]
        assert len(answered) <= 5 and len(limited) >= 5, outcomes


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_persisted_only_applies_to_websocket_operations(
    sec_engine: Engine, sec_shop: Shop, parties: Parties, protocol: str
) -> None:
    sha = register(sec_engine, WHO)
    with (
        make_app(sec_engine, persisted_only=True) as client,
        client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(token("customer", parties.a))
        ) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": WHO})
        assert ws_outcome(ws, "1").codes == ["PERSISTED_QUERY_REQUIRED"]
        ws_send(
            ws, protocol, "2", {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}}}
        )
        assert ws_outcome(ws, "2").data == {"products": {"totalCount": 5}}


def test_a_token_may_come_in_connection_init(
    sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """Browsers cannot set headers on a WebSocket: the token may be the payload of
    connection_init instead (as Hasura and Apollo clients send it)."""
    protocol = "graphql-transport-ws"
    with (
        make_app(sec_engine) as client,
        client.websocket_connect("/graphql", subprotocols=[protocol]) as ws,
    ):
        payload = {"Authorization": f"Bearer {token('analyst')}"}
        assert ws_init(ws, protocol, payload)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": WHO})
        assert ws_outcome(ws, "1").data == {"products": {"totalCount": 5}}
    with (
        make_app(sec_engine) as client,
        client.websocket_connect("/graphql", subprotocols=[protocol]) as ws,
    ):
        ws.send_json({"type": "connection_init", "payload": {}})
        with pytest.raises(WebSocketDisconnect) as closed:
            receive(ws)
        assert closed.value.code == 4401
