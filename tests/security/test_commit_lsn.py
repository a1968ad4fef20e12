"""The ``Cdms-Commit-Lsn`` header from a hostile client: anything but a WAL position is a
coded 400 before anything runs (never a 500); a position from the far future only sends
the request's reads to the primary (as a client that wrote last could), under the same
authentication, row-level security and rate limit as any read."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from db.replicas import HEADER
from tests.security.conftest import Parties, bearer, token
from tests.security.transports import ws_init, ws_outcome, ws_send

READ = "query ($id: ID!) { order(id: $id) { id } }"


@pytest.mark.parametrize(
    "value",
    [
        "x",
        "0/0/0",
        "-1/0",
        "1/ 0",
        "FFFFFFFFF/0",
        "0x1/0",
        "1/2;DROP TABLE x",
        "0/" + "F" * 500,
    ],
)
def test_a_malformed_position_is_refused_with_400(
    client: TestClient, parties: Parties, value: str
) -> None:
    headers = {**bearer(token("customer", parties.a)), HEADER: value}
    got = client.post("/graphql", json={"query": READ, "variables": {"id": "1"}}, headers=headers)
    assert got.status_code == 400
    assert got.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_a_future_position_changes_where_not_what_a_customer_reads(
    client: TestClient, parties: Parties
) -> None:
    headers = {**bearer(token("customer", parties.a)), HEADER: "FFFFFFFF/FFFFFFFF"}
    mine, theirs = parties.a_orders[0], parties.b_orders[0]
    for oid, seen in ((mine, {"id": str(mine)}), (theirs, None)):
        got = client.post(
            "/graphql", json={"query": READ, "variables": {"id": str(oid)}}, headers=headers
        )
        assert got.status_code == 200
        assert got.json()["data"]["order"] == seen


def test_two_positions_are_refused_with_400(client: TestClient, parties: Parties) -> None:
    """Two ``Cdms-Commit-Lsn`` headers were taken silently (the first one used) where two
    ``Authorization`` or two ``Idempotency-Key`` headers are refused: which one the client
    meant is anyone's guess, and a proxy that adds one behind the client's picks for it.
    Refused as those are, whatever the values (also the same one twice, also two in one
    header line); over a WebSocket the extension is one JSON value, and a list of them is
    the same refusal."""
    auth = bearer(token("customer", parties.a))
    body = {"query": READ, "variables": {"id": str(parties.a_orders[0])}}
    for values in (["0/0", "FFFFFFFF/FFFFFFFF"], ["FFFFFFFF/FFFFFFFF", "0/0"], ["0/1", "0/1"]):
        headers = [*auth.items(), *((HEADER, v) for v in values)]
        got = client.post("/graphql", json=body, headers=headers)
        assert got.status_code == 400, (values, got.text)
        error = got.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert error["extensions"]["field"] == HEADER, error
        assert got.json()["data"] is None
    got = client.post("/graphql", json=body, headers={**auth, HEADER: "0/0, FFFFFFFF/FFFFFFFF"})
    assert got.status_code == 400 and got.json()["errors"][0]["extensions"]["field"] == HEADER
    connect = client.websocket_connect  # (it sets its headers into the dict it is given)
    with (  # (open at once: the helpers know a socket by its id(), which a closed one frees)
        connect("/graphql", subprotocols=["graphql-transport-ws"], headers=dict(auth)) as one,
        connect("/graphql", subprotocols=["graphql-ws"], headers=dict(auth)) as legacy,
    ):
        for ws, protocol in ((one, "graphql-transport-ws"), (legacy, "graphql-ws")):
            assert ws_init(ws, protocol)["type"] == "connection_ack"
            ws_send(ws, protocol, "q", {**body, "extensions": {"commitLsn": ["0/0", "0/1"]}})
            out = ws_outcome(ws, "q")
            assert out.codes == ["BAD_USER_INPUT"], (protocol, out)
            assert "extensions.commitLsn" in out.messages[0], (protocol, out)
