"""The one read executor (schema/execute.py, schema/lane.py): a purely relational query is
one statement in one round trip; its plan is cached per query, operation and variable
structure, so other ids, filter values and cursors reuse the statement (variables are SQL
parameters); what the statement's text depends on (page sizes, orderBy) keys the cache
too; checks run on every request whatever the cache holds; row-level security, timeouts
and dead connections as everywhere else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.app import create_app
from api.security import SecurityConfig
from db.config import DbSettings
from db.errors import CdmsError
from schema import lane
from tests.api.conftest import Shop, TestClient, options
from tests.api.helpers import lane_prepared
from tests.security.conftest import SECRET, bearer, token

ORDERS = """query ($id: ID!, $n: Int) { customer(id: $id) { id email
  orders(first: $n) { edges { node { id status totalAmount
    items { lineNo quantity unitPrice product { id sku } } } } } } }"""
MINE = "query ($n: Int) { orders(first: $n) { edges { node { id customer { id } } } } }"


def _client(engine: Engine, max_cost: int = 10**9) -> TestClient:
    app = create_app(engine, SecurityConfig(jwt_secret=SECRET), options(max_cost=max_cost))
    return TestClient(app, raise_server_exceptions=True)


@pytest.fixture(scope="module")
def client(api_engine: Engine, shop: Shop) -> Iterator[TestClient]:
    with _client(api_engine) as c:
        yield c


def _post(client: TestClient, tok: str, query: str, variables: dict[str, Any]) -> Any:
    return client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=bearer(tok)
    )


def test_other_ids_reuse_the_statement_and_are_bound_as_parameters(
    client: TestClient, shop: Shop
) -> None:
    admin = token("admin")
    built: list[str] = []
    undo = lane.observe(built.append)
    try:
        trips = lane.stats.round_trips
        answers = []
        for cid in shop.customers:
            resp = _post(client, admin, ORDERS, {"id": str(cid), "n": 3})
            assert resp.status_code == 200 and "errors" not in resp.json(), resp.text
            answers.append(resp.json()["data"]["customer"]["id"])
        assert answers == [str(c) for c in shop.customers]
        assert lane.stats.round_trips - trips == len(shop.customers)  # one round trip each
    finally:
        undo()
    texts = {s for s in built if "set_config" not in s}
    assert len(texts) == 1, texts  # one statement text for every id
    assert str(shop.customers[-1]) not in next(iter(texts))  # the id is a parameter


def test_page_sizes_are_in_the_text_and_key_the_cache(client: TestClient, shop: Shop) -> None:
    admin = token("admin")
    built: list[str] = []
    undo = lane.observe(built.append)
    try:
        for n in (2, 5, 2):
            resp = _post(client, admin, ORDERS, {"id": str(shop.customers[2]), "n": n})
            assert resp.status_code == 200
    finally:
        undo()
    texts = [s for s in built if "set_config" not in s]
    assert len(set(texts)) == 2 and texts[0] == texts[2]
    assert "LIMIT 3" in texts[0] and "LIMIT 6" in texts[1]


def test_checks_run_on_every_request_whatever_the_cache_holds(
    api_engine: Engine, client: TestClient, shop: Shop
) -> None:
    a, b = shop.customers[1], shop.customers[2]
    tok = token("customer", a)
    assert _post(client, tok, ORDERS, {"id": str(a), "n": 2}).status_code == 200
    refused = _post(client, tok, ORDERS, {"id": str(b), "n": 2})
    assert refused.status_code == 403 and "may only name itself" in refused.text
    over = _post(client, token("admin"), ORDERS, {"id": str(a), "n": 501})
    assert over.status_code == 400 and "at most 500" in over.text
    with _client(api_engine, max_cost=60) as strict:
        assert _post(strict, token("admin"), ORDERS, {"id": str(b), "n": 5}).status_code == 200
        costly = _post(strict, token("admin"), ORDERS, {"id": str(b), "n": 100})
        assert costly.status_code == 400 and "QUERY_TOO_COMPLEX" in costly.text


@pytest.mark.parametrize("bad", ["abc", str(2**63), "", "1.5", "\u0661"])
def test_ids_that_do_not_convert_are_refused_before_anything_runs(
    client: TestClient, bad: str
) -> None:
    resp = _post(client, token("admin"), ORDERS, {"id": bad, "n": 1})
    assert resp.status_code == 400, resp.text
    assert (
        resp.json()
        == {
            "data": None,
            "errors": [resp.json()["errors"][0]],
        }
        and resp.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    )


def test_row_level_security_applies_to_the_same_statement(client: TestClient, shop: Shop) -> None:
    for cid in (shop.customers[1], shop.customers[2], shop.customers[1]):
        resp = _post(client, token("customer", cid), MINE, {"n": 50})
        assert resp.status_code == 200, resp.text
        edges = resp.json()["data"]["orders"]["edges"]
        assert sorted(int(e["node"]["id"]) for e in edges) == sorted(shop.orders[cid])
        assert {e["node"]["customer"]["id"] for e in edges} == {str(cid)}


def test_a_query_mixing_relational_and_resolver_roots_reads_the_same_values(
    client: TestClient, shop: Shop
) -> None:
    admin = token("admin")
    alone = _post(client, admin, ORDERS, {"id": str(shop.customers[3]), "n": 4}).json()
    mixed_query = ORDERS.replace("{ customer(id: $id)", "{ models { name } customer(id: $id)")
    mixed = _post(client, admin, mixed_query, {"id": str(shop.customers[3]), "n": 4}).json()
    assert "errors" not in mixed, mixed
    assert mixed["data"]["customer"] == alone["data"]["customer"]
    assert mixed["data"]["models"] == []


def test_lane_maps_a_statement_timeout_and_keeps_the_connection_usable(
    api_engine: Engine,
) -> None:
    slow = "SELECT json_build_object('slept', pg_sleep(%(s)s)::text) AS data"
    with pytest.raises(CdmsError) as caught:
        lane.fetch(api_engine, slow, {"s": 2}, actor="test", timeout_ms=50)
    assert caught.value.code == "TIMEOUT"
    quick = "SELECT json_build_object('actor', current_setting('cdms.actor'))"
    for _ in range(6):  # again and again on the pooled connections
        got = json.loads(lane.fetch(api_engine, quick, {}, actor="after", timeout_ms=1000))
        assert got == {"actor": "after"}


def test_lane_runs_as_the_principal_and_leaves_nothing_on_the_connection(
    api_engine: Engine, shop: Shop
) -> None:
    mine = (
        "SELECT json_build_object('ids', (SELECT json_agg(id ORDER BY id) FROM app.orders),"
        " 'role', current_user, 'zone', current_setting('TimeZone'))"
    )
    cid = shop.customers[1]
    got = json.loads(
        lane.fetch(api_engine, mine, {}, actor="t", timeout_ms=5000, role="customer",
                   customer_id=cid)
    )  # fmt: skip
    assert got["role"] == "cdms_customer" and got["zone"] == "UTC"
    assert sorted(got["ids"]) == sorted(shop.orders[cid])
    who = (
        "SELECT json_build_object('role', current_user,"
        " 'customer', current_setting('cdms.customer_id', true))"
    )
    for _ in range(6):
        got = json.loads(lane.fetch(api_engine, who, {}, actor="t", timeout_ms=5000))
        assert got["role"] != "cdms_customer" and not got["customer"]


def test_lane_recovers_from_a_killed_connection(api_engine: Engine, api_url: str) -> None:
    quick = "SELECT json_build_object('pid', pg_backend_pid())"
    pid = json.loads(lane.fetch(api_engine, quick, {}, actor="t", timeout_ms=1000))["pid"]
    with psycopg.connect(api_url, autocommit=True) as other:  # not from the pool
        assert other.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    for _ in range(6):
        assert "pid" in json.loads(lane.fetch(api_engine, quick, {}, actor="t", timeout_ms=1000))


def test_lane_transactions_are_read_only_and_keep_their_prepared_statements(
    api_engine: Engine,
) -> None:
    writes = "SELECT to_json(nextval('app.orders_id_seq')) AS data"
    with api_engine.connect() as conn:
        before = conn.execute(sa.text("SELECT last_value FROM app.orders_id_seq")).scalar_one()
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        lane.fetch(api_engine, writes, {}, actor="t", timeout_ms=1000)
    with api_engine.connect() as conn:
        after = conn.execute(sa.text("SELECT last_value FROM app.orders_id_seq")).scalar_one()
    assert after == before
    marked = "SELECT json_build_object('n', %(p0)s::int, 'lane_prepare_test', 1) AS data"
    for i in range(6 * DbSettings.from_env().pool_size):
        got = lane.fetch(api_engine, marked, {"p0": i}, actor="t", timeout_ms=1000)
        assert json.loads(got)["n"] == i
    prepared = [statement for statement, _, _ in lane_prepared(api_engine)]
    assert any("lane_prepare_test" in s for s in prepared), prepared
    assert any("transaction_read_only" in s for s in prepared), prepared
