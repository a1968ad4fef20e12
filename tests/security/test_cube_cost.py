"""Cube fields in the query cost: each ``cube`` / ``cubeDrillDown`` has a base cost (a
statement of its own, ~0.8 s of database time for the stock snapshot even at limit 1)
plus its ``limit`` times the cells of a row; at most ``Limits.max_cube_fields`` of them in one
operation. Both are checked before anything runs, on the fast path (an operation of cube
fields alone) and on the resolver path alike."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from tests.api.conftest import Shop
from tests.security.conftest import bearer, make_app, post, token

MAX_CUBE_FIELDS = 10  # api.rules.Limits.max_cube_fields, docs/api.md
STOCK = (
    "cube(limit: {limit}, offset: {offset})"
    " {{ stock {{ productId snapshotDate {{ day }} unitsOnHand }} }}"
)

CHARTS = """query Charts($s: CubeWhere, $o: CubeWhere, $ret: CubeWhere, $fb: CubeWhere) {
    month: cube(where: $s, orderBy: [{sales: {orderedAt: ASC}}]) {
      sales { revenue priorYear: revenue(compare: PRIOR_YEAR) orderedAt { month } } }
    segment: cube(where: $s, orderBy: [{sales: {revenue: DESC}}]) {
      customers { segment } sales { revenue } }
    status: cube(where: $o, orderBy: [{orders: {count: DESC}}]) { orders { status count } }
    geo: cube(where: $s, orderBy: [{sales: {revenue: DESC}}], limit: 12) {
      customers { label: country } sales { revenue } }
    cat: cube(where: $s, orderBy: [{sales: {revenue: DESC}}], limit: 12) {
      products { label: category } sales { revenue } }
    demo: cube(where: $s) { customers { ageBand gender } sales { customerCount } }
    returns: cube(where: $ret, orderBy: [{returns: {returnedAt: ASC}}]) {
      returns { count returnedAt { month } } }
    complaints: cube(where: $fb, orderBy: [{feedback: {createdAt: ASC}}]) {
      feedback { complaintCount createdAt { month } } }
}"""


def aliases(n: int, limit: int, extra: str = "") -> str:
    fields = " ".join(f"a{i}: " + STOCK.format(limit=limit, offset=i) for i in range(n))
    return "{ " + fields + extra + " }"


def refused(body: dict[str, Any]) -> dict[str, Any]:
    errors = body.get("errors") or []
    assert errors and errors[0]["extensions"]["code"] == "QUERY_TOO_COMPLEX", body
    assert "data" not in body or body["data"] is None, body
    ext: dict[str, Any] = errors[0]["extensions"]
    return ext


def test_thirty_cube_aliases_are_refused_before_running(client: TestClient) -> None:
    tok = token("analyst")
    # cube fields alone (the fast path), and with another root field (the resolver path)
    for extra in ("", " cubeMeta { name }"):
        for limit in (1, 50_000):
            status, body = post(client, tok, aliases(30, limit, extra))
            assert status == 400, body
            ext = refused(body)
            assert ext["limit"] == MAX_CUBE_FIELDS, ext


def test_one_cube_field_past_the_cap_is_refused(client: TestClient) -> None:
    tok = token("analyst")
    status, body = post(client, tok, aliases(MAX_CUBE_FIELDS + 1, 1))
    assert status == 400 and refused(body)["limit"] == MAX_CUBE_FIELDS, body
    # a cube field in a fragment counts too
    frag = (
        "fragment F on Query { "
        + STOCK.format(limit=1, offset=0)
        + " }\n{ "
        + " ".join(f"k{i}: cubeMeta {{ name }}" for i in range(1))
        + " "
        + " ".join(f"a{i}: " + STOCK.format(limit=1, offset=i) for i in range(MAX_CUBE_FIELDS))
        + " ...F }"
    )
    status, body = post(client, tok, frag)
    assert status == 400 and refused(body)["limit"] == MAX_CUBE_FIELDS, body


def test_big_cube_limits_cost_their_cells(client: TestClient) -> None:
    """Within the field cap, large limits are refused by cost: each row's cells count."""
    tok = token("analyst")
    status, body = post(client, tok, aliases(8, 50_000))
    assert status == 400, body
    ext = refused(body)
    # (alias i skips i rows: an offset costs the rows it skips)
    want = sum(1_000 + math.ceil((50_000 + i) * 3 / 20) for i in range(8))
    assert ext["limit"] == 50_000 and ext["cost"] == want, ext
    drills = (
        "{ "
        + " ".join(
            f'd{i}: cubeDrillDown(member: "customers.country", value: "x{i}") {{ children }}'
            for i in range(MAX_CUBE_FIELDS + 1)
        )
        + " }"
    )
    status, body = post(client, tok, drills)
    assert status == 400 and refused(body)["limit"] == MAX_CUBE_FIELDS, body


def test_an_offset_costs_the_rows_it_skips(client: TestClient) -> None:
    """PostgreSQL reads, joins and writes the rows an offset skips as it does those it
    returns (probe p10 #2: ``limit: 1, offset: 400000`` cost 1,000), so a cube's rows are
    its limit plus its offset."""
    tok = token("analyst")
    status, body = post(client, tok, "{ " + STOCK.format(limit=1, offset=400_000) + " }")
    assert status == 400, body
    ext = refused(body)
    assert ext["cost"] == 1_000 + math.ceil((1 + 400_000) * 3 / 20), ext
    by_variable = (
        "query Q($o: Int!) { cube(limit: 1, offset: $o)"
        " { stock { productId snapshotDate { day } unitsOnHand } } }"
    )
    status, body = post(client, tok, by_variable, {"o": 400_000})
    assert status == 400 and refused(body)["cost"] == ext["cost"], body
    # an offset within the limit is answered
    status, body = post(client, tok, by_variable, {"o": 20_000})
    assert status == 200 and "errors" not in body, body


def test_a_batch_adds_its_cube_costs_up(client: TestClient) -> None:
    tok = token("analyst")
    one = aliases(3, 50_000)  # under the limit alone
    status, body = post(client, tok, one)
    assert status == 200 and "errors" not in body, body
    resp = client.post(
        "/graphql",
        json=[{"query": one} for _ in range(3)],
        headers={"Authorization": f"Bearer {tok}"},
    )
    assert resp.status_code == 400, resp.text
    body = resp.json()
    first = body[0] if isinstance(body, list) else body
    refused(first)


def test_the_dashboard_queries_are_answered(client: TestClient) -> None:
    tok = token("analyst")
    status, body = post(client, tok, CHARTS)
    assert status == 200 and "errors" not in body, body
    assert set(body["data"]) == {
        "month",
        "segment",
        "status",
        "geo",
        "cat",
        "demo",
        "returns",
        "complaints",
    }
    status, body = post(client, tok, aliases(MAX_CUBE_FIELDS, 1))
    assert status == 200 and "errors" not in body, body


def test_each_cube_field_past_the_first_takes_a_rate_token(
    sec_engine: Engine, sec_shop: Shop
) -> None:
    """As each mutation field past the first does: three cubes are three tokens."""
    three = {"query": aliases(3, 1)}
    with make_app(sec_engine, rate_per_s=1e-300, burst=2) as app:
        tok = token("analyst", sub="cube-tokens-2")
        refused = app.post("/graphql", json=three, headers=bearer(tok))
    assert refused.status_code == 429, refused.text
    with make_app(sec_engine, rate_per_s=1e-300, burst=3) as app:
        tok = token("analyst", sub="cube-tokens-3")
        first = app.post("/graphql", json=three, headers=bearer(tok))
        second = app.post("/graphql", json={"query": aliases(1, 1)}, headers=bearer(tok))
    assert first.status_code == 200, first.text
    assert second.status_code == 429, second.text


def test_a_refusal_for_cost_explains_the_cost_it_counted(client: TestClient) -> None:
    """The message tells the formula of what the operation holds (probe p21 F3): a cube's
    cost is not page sizes multiplied down the nesting, and a read's is not a cube's."""
    tok = token("analyst")
    cube = "{ cube(limit: 2147483647) { orders { count } } }"
    status, body = post(client, tok, cube)
    assert status == 400, body
    message = body["errors"][0]["message"]
    assert refused(body)["cost"] == 1_000 + math.ceil(2_147_483_647 / 20), body
    assert "each cube field 1,000 plus ceil((limit + offset) * a row's cells / 20)" in message
    assert "cubeDrillDown 3,500" in message, message
    assert "page sizes" not in message, message

    pages = "{ customers(first: 500) { edges { node { orders(first: 500) { totalCount } } } } }"
    status, body = post(client, tok, pages)
    assert status == 400, body
    message = body["errors"][0]["message"]
    assert refused(body)["cost"] == 500 + 500 * 500, body
    assert "page sizes multiplied down the nesting" in message, message
    assert "cube" not in message, message

    both = "{ cube(limit: 1) { orders { count } } " + pages[2:]
    status, body = post(client, tok, both)
    message = body["errors"][0]["message"]
    assert status == 400 and "page sizes" in message and "cube field" in message, body

    # a batch whose cube fields add up past the limit: the cube's formula
    resp = client.post("/graphql", json=[{"query": aliases(3, 50_000)}] * 3, headers=bearer(tok))
    first = resp.json()[0] if isinstance(resp.json(), list) else resp.json()
    message = first["errors"][0]["message"]
    assert "cube field" in message and "page sizes" not in message, first
