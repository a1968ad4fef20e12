"""The ``Cdms-Commit-Lsn`` header from a hostile client: anything but a WAL position is a
coded 400 before anything runs (never a 500); a position from the far future only sends
the request's reads to the primary (as a client that wrote last could), under the same
authentication, row-level security and rate limit as any read."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from db.replicas import HEADER
from tests.security.conftest import Parties, bearer, token

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
