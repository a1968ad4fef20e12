"""A WebSocket message is held to the request body limit (``CDMS_MAX_BODY_BYTES``, 1 MB by
default) like an HTTP body: a customer's 15 MB operation over a socket took ~5 s of the
worker's CPU (JSON, then graphql-core coercing a 1.5-million-item list) where the same
operation over HTTP is a 413 read from its Content-Length. Past the limit the socket is
closed with 1009 (RFC 6455: message too big) before the message is parsed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.websockets import WebSocketDisconnect

from api.app import AppOptions
from api.http import HttpLimits
from tests.api.conftest import Shop
from tests.security.conftest import Parties, bearer, make_app, token
from tests.security.transports import WS_PROTOCOL, ws_init, ws_outcome

PROTOCOLS = list(WS_PROTOCOL.values())
LIMIT = 1_000_000  # HttpLimits' default
QUERY = "query ($ids: [ID!]) { orders(filter: {id: {in: $ids}}) { totalCount } }"


def _message(protocol: str, ids: list[str], pad: str = "") -> str:
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    payload = {"query": QUERY, "variables": {"ids": ids, "pad": pad}}
    return json.dumps({"id": "1", "type": kind, "payload": payload}, ensure_ascii=False)


def _send(client: Any, protocol: str, parties: Parties, text: str) -> Any:
    headers = bearer(token("customer", parties.a))
    with client.websocket_connect("/graphql", subprotocols=[protocol], headers=headers) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws.send_text(text)
        return ws_outcome(ws, "1", timeout=30)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_message_over_the_body_limit_closes_the_socket(
    prod: Any, parties: Parties, protocol: str
) -> None:
    text = _message(protocol, [str(i) for i in range(150_000)])
    assert len(text.encode()) > LIMIT
    out = _send(prod, protocol, parties, text)
    assert out.closed == 1009, out  # before: run (~1.3 MB, the same over HTTP: 413)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_limit_counts_bytes_not_characters(prod: Any, parties: Parties, protocol: str) -> None:
    text = _message(protocol, ["é" * 600_000])  # 600,000 characters, 1.2 MB of UTF-8
    assert len(text) < LIMIT < len(text.encode())
    assert _send(prod, protocol, parties, text).closed == 1009


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_message_under_the_limit_is_answered(prod: Any, parties: Parties, protocol: str) -> None:
    # (an `in` list binds 5,000 values at most: the rest of the size is a variable unused)
    text = _message(protocol, [str(i) for i in range(5_000)], pad="x" * 900_000)
    assert 900_000 < len(text.encode()) < LIMIT
    out = _send(prod, protocol, parties, text)
    assert out.closed is None and out.data == {"orders": {"totalCount": 3}}, out


def test_the_limit_is_the_body_limit(sec_engine: Engine, sec_shop: Shop, parties: Parties) -> None:
    options = AppOptions(http=HttpLimits(max_body_bytes=2_000))
    with make_app(sec_engine, options=options) as client:
        small = _message("graphql-transport-ws", [str(i) for i in range(10)])
        assert _send(client, "graphql-transport-ws", parties, small).data is not None
        large = _message("graphql-transport-ws", [str(i) for i in range(1_000)])
        assert _send(client, "graphql-transport-ws", parties, large).closed == 1009
        with pytest.raises(WebSocketDisconnect) as closed:  # connection_init too
            headers = bearer(token("customer", parties.a))
            with client.websocket_connect(
                "/graphql", subprotocols=["graphql-transport-ws"], headers=headers
            ) as ws:
                ws.send_json({"type": "connection_init", "payload": {"x": "y" * 3_000}})
                ws.receive_json()
        assert closed.value.code == 1009
