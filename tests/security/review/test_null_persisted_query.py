"""``extensions.persistedQuery: null`` with no query (the key present, no hash): once an
AssertionError (HTTP 500; over a WebSocket the session torn down), now BAD_USER_INPUT
before anything runs, on every transport, like any operation without a query."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.conftest import Parties, bearer, token
from tests.security.review.conftest import code_of
from tests.security.transports import ws_init, ws_outcome, ws_send

PROTOCOLS = ("graphql-transport-ws", "graphql-ws")


# --- 1. extensions.persistedQuery: null ---------------------------------------------------

NULL_PERSISTED: dict[str, Any] = {"extensions": {"persistedQuery": None}}


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_a_null_persisted_query_without_a_query_is_bad_user_input(
    prod: Any, parties: Parties, batch: bool
) -> None:
    body = [NULL_PERSISTED] if batch else NULL_PERSISTED
    resp = prod.post("/graphql", json=body, headers=bearer(token("customer", parties.a)))
    assert resp.status_code == 400, resp.text  # before: 500 (an AssertionError)
    assert code_of(resp.json()) == "BAD_USER_INPUT"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_null_persisted_query_over_websockets_is_bad_user_input(
    prod: Any, parties: Parties, protocol: str
) -> None:
    headers = bearer(token("customer", parties.a))
    with prod.websocket_connect("/graphql", subprotocols=[protocol], headers=headers) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", NULL_PERSISTED)  # before: the session died with the error
        out = ws_outcome(ws, "1")
        assert out.codes == ["BAD_USER_INPUT"], out
        ws_send(ws, protocol, "2", {"query": "{ __typename }"})  # the socket stays usable
        assert ws_outcome(ws, "2").data == {"__typename": "Query"}
