"""Reads on a streaming replica, writes on the primary, read-your-writes with the
``Cdms-Commit-Lsn`` header, against a real standby that applies WAL ten seconds late."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from db.replicas import HEADER, parse_lsn, router_for
from tests.api.conftest import make_client
from tests.scale.cluster import free_port, wait_for
from tests.scale.conftest import Replicated
from tests.security.transports import ws_init, ws_outcome, ws_send

pytestmark = pytest.mark.scale

PLACE = """mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }"""
READ = """query ($id: ID!) { order(id: $id) { id status } }"""


@pytest.fixture
def client(replicated: Replicated, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("CDMS_READ_URLS", replicated.read_url)
    with make_client(replicated.engine) as c:
        yield c


def _place(client: TestClient, r: Replicated) -> tuple[str, str, Any]:
    items = [{"productId": str(r.shop.products[0]), "quantity": 1}]
    got = client.post(
        "/graphql",
        json={"query": PLACE, "variables": {"input": {
            "customerId": str(r.shop.customers[1]), "channel": "WEB",
            "paymentMethod": "CARD", "items": items}}},
    )  # fmt: skip
    body = got.json()
    assert got.status_code == 200 and "errors" not in body, body
    return body["data"]["placeOrder"]["id"], got.headers[HEADER], body


def _read(client: TestClient, order_id: str, lsn: str | None = None) -> Any:
    headers = {} if lsn is None else {HEADER: lsn}
    got = client.post(
        "/graphql", json={"query": READ, "variables": {"id": order_id}}, headers=headers
    )
    assert got.status_code == 200, got.text
    return got.json()["data"]["order"]


def _standby_sessions(r: Replicated) -> int:
    """cdms's sessions on the standby (its pg_stat_activity)."""
    got = r.standby.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'cdms'"
        " AND backend_type = 'client backend'"
    )
    assert isinstance(got, int)
    return got


def _standby_commits(r: Replicated) -> int:
    got = r.standby.sql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'cdms'")
    return int(str(got))


def _served_by_standby(r: Replicated, send: Any) -> None:
    """``send()`` ran at least one transaction on the standby."""
    before = _standby_commits(r)
    send()
    assert _standby_sessions(r) >= 1
    wait_for(lambda: _standby_commits(r) > before, timeout=5)  # stats flush within 1 s


def test_reads_and_cube_queries_run_on_the_replica(
    client: TestClient, replicated: Replicated
) -> None:
    oid = replicated.shop.orders[replicated.shop.customers[2]][0]

    def read() -> None:
        assert _read(client, str(oid)) == {"id": str(oid), "status": "PENDING"}

    def cube() -> None:
        got = client.post("/graphql", json={"query": "{ cube { sales { lineCount channel } } }"})
        assert got.status_code == 200 and "errors" not in got.json(), got.text

    _served_by_standby(replicated, read)
    _served_by_standby(replicated, cube)


def test_a_mutation_answers_with_its_commit_position(
    client: TestClient, replicated: Replicated
) -> None:
    _, header, body = _place(client, replicated)
    assert body["extensions"]["commitLsn"] == header
    assert parse_lsn(header) > 0
    primary_now = replicated.primary.sql("SELECT pg_current_wal_lsn()::text")
    assert parse_lsn(header) <= parse_lsn(str(primary_now))


def test_read_your_writes_with_the_header(client: TestClient, replicated: Replicated) -> None:
    """The standby is 2 s behind: without the header the new order is not there yet;
    with it the primary answers until the standby has replayed the commit, then the
    standby does."""
    order_id, lsn, _ = _place(client, replicated)
    assert _read(client, order_id, lsn) == {"id": order_id, "status": "PENDING"}
    assert _read(client, order_id) is None  # documented: a replica may lag behind
    router = router_for(replicated.engine, (replicated.read_url,))
    standby = router.replicas[0]
    standby.replayed = -1
    assert router.read_engine(parse_lsn(lsn)) is replicated.engine  # not replayed yet
    wait_for(lambda: router.read_engine(parse_lsn(lsn)) is standby.engine, timeout=30)
    assert _read(client, order_id, lsn) == {"id": order_id, "status": "PENDING"}
    assert _read(client, order_id) == {"id": order_id, "status": "PENDING"}


def test_every_read_with_the_header_sees_the_order(
    client: TestClient, replicated: Replicated
) -> None:
    for _ in range(5):
        order_id, lsn, _ = _place(client, replicated)
        assert _read(client, order_id, lsn) is not None


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
def test_read_your_writes_over_a_websocket(
    client: TestClient, replicated: Replicated, protocol: str
) -> None:
    """Over a socket the commit position rides in the operation's extensions.commitLsn:
    with it the new order is seen at once; without it the 10 s late standby answers."""
    order_id, lsn, _ = _place(client, replicated)
    with client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": READ, "variables": {"id": order_id}})
        assert ws_outcome(ws, "1").data == {"order": None}  # documented: replicas may lag
        with_lsn = {"query": READ, "variables": {"id": order_id}, "extensions": {"commitLsn": lsn}}
        ws_send(ws, protocol, "2", with_lsn)
        assert ws_outcome(ws, "2").data == {"order": {"id": order_id, "status": "PENDING"}}
        ws_send(ws, protocol, "3", {**with_lsn, "extensions": {"commitLsn": "G/1"}})
        bad = ws_outcome(ws, "3")
        assert bad.codes == ["BAD_USER_INPUT"] and "extensions.commitLsn" in bad.messages[0]


@pytest.mark.parametrize("value", ["nope", "0/", "1/2/3", "G/1", "123456789/0", ""])
def test_a_malformed_commit_position_is_a_coded_400(client: TestClient, value: str) -> None:
    got = client.post("/graphql", json={"query": "{ __typename }"}, headers={HEADER: value})
    assert got.status_code == 400
    error = got.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert HEADER in error["message"]


def test_an_unreachable_replica_falls_back_to_the_primary(
    replicated: Replicated, monkeypatch: pytest.MonkeyPatch
) -> None:
    away = f"postgresql://postgres@127.0.0.1:{free_port()}/cdms?connect_timeout=2"
    monkeypatch.setenv("CDMS_READ_URLS", away)
    oid = str(replicated.shop.orders[replicated.shop.customers[2]][0])
    with make_client(replicated.engine) as client:
        started = time.monotonic()
        assert _read(client, oid) == {"id": oid, "status": "PENDING"}  # the fast lane
        got = client.post("/graphql", json={"query": "{ cube { sales { lineCount } } }"})
        assert got.status_code == 200 and "errors" not in got.json(), got.text
        assert time.monotonic() - started < 10
    from db.engine import dispose_engine

    dispose_engine(away)
