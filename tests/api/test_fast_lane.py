"""The per-query caches of the secured endpoint (parsed documents for the guard, compiled
statements) must not change any answer when the same query text comes back with other
variables: bodies stay byte-identical to the Strawberry path, and the checks that depend on
variable values (another customer, page size, cost) still refuse, under row-level security.
"""

from __future__ import annotations

import json
import warnings
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
from schema.compiled import execute, lane
from schema.compiled.sql import Built
from schema.context import ApiLimits
from tests.api.conftest import Shop, options
from tests.api.helpers import lane_prepared
from tests.security.conftest import SECRET, bearer, token

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ORDERS = """query ($id: ID!, $n: Int) { customer(id: $id) { id email
  orders(first: $n) { edges { node { id status totalAmount
    items { lineNo quantity unitPrice product { id sku } } } } } } }"""

MINE = "query ($n: Int) { orders(first: $n) { edges { node { id customer { id } } } } }"


def _client(engine: Engine, compiled: bool, max_cost: int = 10**9) -> TestClient:
    app = create_app(
        engine, SecurityConfig(jwt_secret=SECRET), options(compiled, max_cost=max_cost)
    )
    return TestClient(app, raise_server_exceptions=True)


@pytest.fixture(scope="module")
def clients(api_engine: Engine, shop: Shop) -> Iterator[tuple[TestClient, TestClient]]:
    with _client(api_engine, True) as fast, _client(api_engine, False) as slow:
        yield fast, slow


def _post(client: TestClient, tok: str, query: str, variables: dict[str, Any]) -> tuple[int, bytes]:
    resp = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=bearer(tok)
    )
    return resp.status_code, resp.content


def _same(got: tuple[int, bytes], want: tuple[int, bytes]) -> None:
    """Same status and the same JSON, keys in the same order (the fast lane passes
    PostgreSQL's JSON text through, whose whitespace differs from Python's)."""
    assert got[0] == want[0]
    assert json.dumps(json.loads(got[1])) == json.dumps(json.loads(want[1]))


def test_repeated_query_bodies_match_strawberry(
    clients: tuple[TestClient, TestClient], shop: Shop
) -> None:
    fast, slow = clients
    admin = token("admin")
    seen = set()
    hits = lane.stats.hits
    for _ in range(2):  # the second round hits every cache
        for cid in shop.customers:
            for n in (1, 3, 10):
                variables = {"id": str(cid), "n": n}
                got = _post(fast, admin, ORDERS, variables)
                want = _post(slow, admin, ORDERS, variables)
                _same(got, want)
                assert got[0] == 200 and b'"errors"' not in got[1]
                seen.add(json.dumps(json.loads(got[1])))
    assert len(seen) > len(shop.customers)  # the variables really changed the answers
    # all but the first request per page size came through the fast lane
    assert lane.stats.hits - hits == 2 * len(shop.customers) * 3 - 3


def test_customer_naming_another_customer_is_refused_when_only_variables_change(
    clients: tuple[TestClient, TestClient], shop: Shop
) -> None:
    fast, _ = clients
    a, b = shop.customers[1], shop.customers[2]
    tok = token("customer", a)
    status, body = _post(fast, tok, ORDERS, {"id": str(a), "n": 2})
    assert status == 200 and f'"id":"{a}"'.encode() in body.replace(b" ", b"")
    status, body = _post(fast, tok, ORDERS, {"id": str(b), "n": 2})
    assert status == 403
    assert b"FORBIDDEN" in body and b"may only name itself" in body
    status, _ = _post(fast, tok, ORDERS, {"id": str(a), "n": 2})
    assert status == 200


def test_page_size_over_the_cap_is_refused_when_only_variables_change(
    clients: tuple[TestClient, TestClient], shop: Shop
) -> None:
    fast, slow = clients
    admin = token("admin")
    cid = str(shop.customers[2])
    assert _post(fast, admin, ORDERS, {"id": cid, "n": 5})[0] == 200
    over = {"id": cid, "n": ApiLimits().max_page_size + 1}
    got = _post(fast, admin, ORDERS, over)
    _same(got, _post(slow, admin, ORDERS, over))
    assert b"BAD_USER_INPUT" in got[1] and b'"customer":null' in got[1]


def test_cost_over_the_limit_is_refused_when_only_variables_change(
    api_engine: Engine, shop: Shop
) -> None:
    admin = token("admin")
    cid = str(shop.customers[2])
    with _client(api_engine, True, max_cost=60) as fast:
        assert _post(fast, admin, ORDERS, {"id": cid, "n": 5})[0] == 200
        status, body = _post(fast, admin, ORDERS, {"id": cid, "n": 100})
        assert status == 400 and b"QUERY_TOO_COMPLEX" in body
        assert _post(fast, admin, ORDERS, {"id": cid, "n": 5})[0] == 200


def test_row_level_security_applies_to_repeated_queries(
    clients: tuple[TestClient, TestClient], shop: Shop
) -> None:
    fast, _ = clients
    hits = lane.stats.hits
    for cid in (shop.customers[1], shop.customers[2], shop.customers[1]):
        resp = fast.post(
            "/graphql",
            json={"query": MINE, "variables": {"n": 50}},
            headers=bearer(token("customer", cid)),
        )
        assert resp.status_code == 200, resp.text
        edges = resp.json()["data"]["orders"]["edges"]
        assert sorted(int(e["node"]["id"]) for e in edges) == sorted(shop.orders[cid])
        assert {e["node"]["customer"]["id"] for e in edges} == {str(cid)}
    assert lane.stats.hits - hits == 2  # the repeats ran in the fast lane, as each customer


def test_other_ids_reuse_one_template_and_bad_ids_get_the_strawberry_errors(
    clients: tuple[TestClient, TestClient], shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = clients
    admin = token("admin")
    query = "query ($c: ID!) { customer(id: $c) { id email lastName } }"
    compiles: list[Any] = []
    real = execute.compile_operation

    def counted(*args: Any) -> Any:
        compiles.append(args[3])
        return real(*args)

    monkeypatch.setattr(execute, "compile_operation", counted)
    for cid in shop.customers:
        variables = {"c": str(cid)}
        _same(_post(fast, admin, query, variables), _post(slow, admin, query, variables))
    # the first id compiles (plus one proving compilation with other ids); the others bind
    assert len(compiles) == 2
    for bad in ("abc", str(2**63), "", 10**20, "-5", str(shop.customers[0]) + "0000"):
        variables = {"c": bad}
        got = _post(fast, admin, query, variables)
        _same(got, _post(slow, admin, query, variables))


def test_only_ids_used_as_root_id_arguments_become_template_slots() -> None:
    from graphql import parse

    def ids(query: str) -> tuple[str, ...]:
        return execute._root_id_variables(parse(query), None)

    assert ids("query ($a: ID!) { customer(id: $a) { id } }") == ("a",)
    assert ids("query ($a: ID!, $b: ID) { customer(id: $a) { id } order(id: $b) { id } }") == (
        "a",
        "b",
    )
    # also used elsewhere, not an ID, a default value, or under a directive: no slot
    assert ids("query ($a: ID!) { customer(id: $a) { id } order(id: $a) { id } }") == ("a",)
    assert (
        ids(
            "query ($a: ID!) { customer(id: $a) { id }"
            " orders(filter: {id: {eq: $a}}) { totalCount } }"
        )
        == ()
    )
    assert ids("query ($a: Int!) { customer(id: $a) { id } }") == ()
    assert ids('query ($a: ID = "1") { customer(id: $a) { id } }') == ()
    assert ids("query ($a: ID!, $s: Boolean!) { customer(id: $a) @skip(if: $s) { id } }") == ()
    assert ids("query ($a: ID!) { ...F } fragment F on Query { customer(id: $a) { id } }") == ()


def test_lane_maps_a_statement_timeout_and_keeps_the_connection_usable(
    api_engine: Engine,
) -> None:
    slow = Built("SELECT json_build_object('slept', pg_sleep(%(s)s)::text) AS data", {"s": 2})
    with pytest.raises(CdmsError) as caught:
        lane.fetch(api_engine, slow, actor="test", timeout_ms=50)
    assert caught.value.code == "TIMEOUT"
    # the failed pipeline left no transaction open on the pooled connection
    for _ in range(6):  # again and again on the pooled connections
        quick = Built("SELECT json_build_object('actor', current_setting('cdms.actor'))", {})
        assert json.loads(lane.fetch(api_engine, quick, actor="after", timeout_ms=1000)) == {
            "actor": "after"
        }


def test_lane_runs_as_the_principal_under_row_level_security(
    api_engine: Engine, shop: Shop
) -> None:
    mine = Built(
        "SELECT json_build_object('ids', (SELECT json_agg(id ORDER BY id) FROM app.orders),"
        " 'role', current_user)",
        {},
    )
    cid = shop.customers[1]
    got = json.loads(
        lane.fetch(api_engine, mine, actor="t", timeout_ms=5000, role="customer", customer_id=cid)
    )
    assert got["role"] == "cdms_customer"
    assert sorted(got["ids"]) == sorted(shop.orders[cid])
    # and nothing of it stays on the pooled connections (role, customer: transaction-local)
    who = Built(
        "SELECT json_build_object('role', current_user,"
        " 'customer', current_setting('cdms.customer_id', true))",
        {},
    )
    for _ in range(6):  # again and again on the pooled connections
        got = json.loads(lane.fetch(api_engine, who, actor="t", timeout_ms=5000))
        assert got["role"] != "cdms_customer" and not got["customer"]


def test_lane_recovers_from_a_killed_connection(api_engine: Engine, api_url: str) -> None:
    quick = Built("SELECT json_build_object('pid', pg_backend_pid())", {})
    pid = json.loads(lane.fetch(api_engine, quick, actor="t", timeout_ms=1000))["pid"]
    with psycopg.connect(api_url, autocommit=True) as other:  # not from the pool
        assert other.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    # the lane finds the connection dead and runs the read again on a pinged checkout
    for _ in range(6):  # again and again on the pooled connections
        assert "pid" in json.loads(lane.fetch(api_engine, quick, actor="t", timeout_ms=1000))


def test_lane_transactions_are_read_only_and_keep_their_prepared_statements(
    api_engine: Engine,
) -> None:
    """A lane transaction cannot write (it ends with COMMIT, so psycopg keeps the statements
    it prepared: after five runs PostgreSQL no longer parses and plans them)."""
    writes = Built("SELECT to_json(nextval('app.orders_id_seq')) AS data", {})
    with api_engine.connect() as conn:
        before = conn.execute(sa.text("SELECT last_value FROM app.orders_id_seq")).scalar_one()
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        lane.fetch(api_engine, writes, actor="t", timeout_ms=1000)
    with api_engine.connect() as conn:
        after = conn.execute(sa.text("SELECT last_value FROM app.orders_id_seq")).scalar_one()
    assert after == before
    marked = Built("SELECT json_build_object('n', %(p0)s::int, 'lane_prepare_test', 1) AS data", {})
    pooled = DbSettings.from_env().pool_size
    for i in range(6 * pooled):  # 6 runs on each of the pool's connections, in turn
        marked.params["p0"] = i
        assert json.loads(lane.fetch(api_engine, marked, actor="t", timeout_ms=1000))["n"] == i
    prepared = [statement for statement, _, _ in lane_prepared(api_engine)]
    assert any("lane_prepare_test" in s for s in prepared), prepared
    assert any("transaction_read_only" in s for s in prepared), prepared
