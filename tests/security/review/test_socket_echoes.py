"""What a WebSocket sends back as it came is bounded, and a socket names one credential:
an operation id longer than ``SocketLimits.max_id_chars`` (echoed in every message of its
operation) and a ping payload over ``SocketLimits.max_ping_payload_bytes`` (echoed in the
pong) close the socket with 4400, as the protocol's other bad messages; a
``connection_init`` whose credentials differ from each other or from the handshake's
``Authorization`` header is closed with 4400, as HTTP refuses two ``Authorization``
headers (was: a 100,000-character id came back in each ``next``/``complete``, a 500 KB
ping in the pong, and the payload's credential silently won)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from api.ws import SocketLimits
from tests.security.conftest import bearer, token
from tests.security.transports import WS_PROTOCOL, receive, ws_init, ws_outcome, ws_send

PROTOCOLS = list(WS_PROTOCOL.values())
WHO = "{ products { totalCount } }"


def _closed_with(ws: Any) -> int | None:
    """The close code once the server closes the socket (what comes before it, the end of
    an earlier operation or a keep-alive, is skipped), None if it stays open 10 s."""
    try:
        while receive(ws, timeout=10) is not None:
            pass
    except WebSocketDisconnect as exc:
        return int(exc.code)
    return None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_operation_id_is_bounded(prod: Any, protocol: str) -> None:
    limit = SocketLimits().max_id_chars
    headers = bearer(token("analyst", sub="long-ids"))
    with prod.websocket_connect("/graphql", subprotocols=[protocol], headers=headers) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ok = "i" * limit  # the longest id still answered
        ws_send(ws, protocol, ok, {"query": WHO})
        assert ws_outcome(ws, ok, timeout=10).data == {"products": {"totalCount": 5}}
        ws_send(ws, protocol, "i" * 100_000, {"query": WHO})
        assert _closed_with(ws) == 4400


def test_a_ping_payload_is_bounded(prod: Any) -> None:
    protocol = "graphql-transport-ws"
    headers = bearer(token("analyst", sub="big-pings"))
    with prod.websocket_connect("/graphql", subprotocols=[protocol], headers=headers) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws.send_json({"type": "ping", "payload": {"t": "x" * 500}})
        assert receive(ws, timeout=10) == {"type": "pong", "payload": {"t": "x" * 500}}
        ws.send_json({"type": "ping", "payload": {"t": "x" * 500_000}})
        assert _closed_with(ws) == 4400


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "where",
    ["handshake and payload", "payload and payload.headers", "Authorization and authorization"],
)
def test_two_different_credentials_are_refused(prod: Any, protocol: str, where: str) -> None:
    customer = f"Bearer {token('customer', 1)}"
    admin = f"Bearer {token('admin')}"
    headers: dict[str, str] = {}
    payload: dict[str, Any]
    if where == "handshake and payload":
        headers = {"Authorization": customer}
        payload = {"Authorization": admin}
    elif where == "payload and payload.headers":
        payload = {"Authorization": customer, "headers": {"Authorization": admin}}
    else:
        payload = {"Authorization": customer, "authorization": admin}
    with prod.websocket_connect("/graphql", subprotocols=[protocol], headers=headers) as ws:
        ws.send_json({"type": "connection_init", "payload": payload})
        assert _closed_with(ws) == 4400


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_same_credential_twice_is_one(prod: Any, protocol: str) -> None:
    analyst = f"Bearer {token('analyst', sub='twice')}"
    with prod.websocket_connect(
        "/graphql", subprotocols=[protocol], headers={"Authorization": analyst}
    ) as ws:
        payload = {"Authorization": analyst, "headers": {"authorization": analyst}}
        assert ws_init(ws, protocol, payload)["type"] == "connection_ack"
