"""Denial of service with a small document: fragment bombs and cycles, variable defaults,
batches and over-deep JSON all get a coded 4xx answer, in time linear in the document.

A request that the old checks expanded exponentially is run in a thread with a generous
deadline: the deadline only tells a hang from an answer (it is not a speed test; the
timings are printed by bench/security.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.api.conftest import Shop
from tests.security.conftest import Parties, bearer, make_app, token
from tests.security.transports import run_over

HANG = 60.0  # seconds: far beyond any answer, short of a hung process


def bomb(n: int) -> str:
    """``F0`` spreads ``F1`` twice, ``F1`` spreads ``F2`` twice ... : 2**n fields expanded."""
    parts = ["query { ...F0 }"]
    parts += [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n)]
    parts.append(f"fragment F{n} on Query {{ __typename }}")
    return " ".join(parts)


def wide_bomb(n: int) -> str:
    """The same doubling over a connection, so each expanded copy is a page of rows."""
    parts = ["query { ...F0 }"]
    parts += [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n)]
    parts.append(f"fragment F{n} on Query {{ customers(first: 1) {{ totalCount }} }}")
    return " ".join(parts)


@pytest.fixture(scope="module")
def client(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    with make_app(sec_engine, production=True) as c:
        yield c


def _post(client: Any, payload: Any, tok: str | None = None) -> tuple[int, Any]:
    result: list[Any] = []

    def go() -> None:
        resp = client.post("/graphql", json=payload, headers=bearer(tok or token("admin")))
        result.append((resp.status_code, resp.json()))

    worker = threading.Thread(target=go, daemon=True)
    worker.start()
    worker.join(HANG)
    assert not worker.is_alive(), "the request did not come back: the check is not linear"
    status, body = result[0]
    return int(status), body


def _code(body: Any) -> str:
    return str(body["errors"][0]["extensions"]["code"])


@pytest.mark.parametrize("n", [20, 30, 40])
def test_fragment_bombs_answer_a_coded_error(client: Any, n: int) -> None:
    for query in (bomb(n), wide_bomb(n)):
        status, body = _post(client, {"query": query})
        assert status == 400 and _code(body) == "QUERY_TOO_COMPLEX", body
        assert body["data"] is None
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("transport", ["ws", "ws-legacy"])
def test_fragment_bombs_over_websockets(client: Any, sec_engine: Engine, transport: str) -> None:
    result: list[Any] = []
    headers = bearer(token("admin"))
    worker = threading.Thread(
        target=lambda: result.append(run_over(transport, client, sec_engine, headers, bomb(30))),
        daemon=True,
    )
    worker.start()
    worker.join(HANG)
    assert not worker.is_alive()
    assert result[0].codes == ["QUERY_TOO_COMPLEX"], result[0]


def test_a_small_doubling_stays_allowed(client: Any) -> None:
    """A few shared fragments are ordinary GraphQL: only the expanded size is limited."""
    status, body = _post(client, {"query": bomb(3)})
    assert status == 200 and body == {"data": {"__typename": "Query"}}, body


def test_fragment_cycles_are_validation_errors(client: Any) -> None:
    query = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }"
    status, body = _post(client, {"query": query})
    assert status == 400, body
    assert _code(body) == "BAD_USER_INPUT"
    assert "Cannot spread fragment" in body["errors"][0]["message"]


def test_variable_defaults_count_for_cost(client: Any) -> None:
    query = """query ($a: Int = 500, $b: Int = 500) { customers(first: $a) { edges { node {
        orders(first: $b) { edges { node { id } } } } } } }"""
    status, body = _post(client, {"query": query})
    assert status == 400 and _code(body) == "QUERY_TOO_COMPLEX", body
    assert "250500" in body["errors"][0]["message"]
    # a default overridden by a small value is cheap
    status, body = _post(client, {"query": query, "variables": {"a": 2, "b": 2}})
    assert status == 200 and "errors" not in body, body


def test_variable_defaults_count_for_ownership(
    client: Any, sec_engine: Engine, parties: Parties
) -> None:
    from tests.security.test_isolation import _counts

    before = _counts(sec_engine, parties.b)
    query = f"""mutation ($i: PlaceOrderInput! = {{customerId: "{parties.b}",
        items: [{{productId: "1", quantity: 1}}], channel: WEB, paymentMethod: CARD}}) {{
        placeOrder(input: $i) {{ id }} }}"""
    status, body = _post(client, {"query": query}, token("customer", parties.a))
    assert status == 403 and _code(body) == "FORBIDDEN", body
    assert _counts(sec_engine, parties.b) == before


def test_the_cost_limit_holds_for_a_whole_batch(sec_engine: Engine, sec_shop: Shop) -> None:
    op = {"query": "{ customers(first: 100) { edges { node { orders(first: 100) { totalCount }"
          " } } } }"}  # fmt: skip
    with make_app(sec_engine, max_cost=25_000) as c:
        alone = c.post("/graphql", json=op, headers=bearer(token("admin")))
        assert alone.status_code == 200, alone.text  # 100 + 100 x 100 = 10,100
        batch = c.post("/graphql", json=[op, op, op], headers=bearer(token("admin")))
        assert batch.status_code == 400, batch.text  # 30,300 for the batch
        body = batch.json()
        assert _code(body) == "QUERY_TOO_COMPLEX" and "30300" in body["errors"][0]["message"]


def _nested(depth: int) -> str:
    """A cube ``where`` nested ``depth`` levels deep, as JSON text (built as text: the
    encoder itself recurses)."""
    inner = '{"orders": {"status": {"equals": "paid"}}}'
    return '{"AND": [' * depth + inner + "]}" * depth


@pytest.mark.parametrize("depth", [500, 5_000])
def test_over_deep_json_is_bad_user_input(client: Any, depth: int) -> None:
    query = "query ($w: CubeWhere) { cube(where: $w) { sales { orderCount } } }"
    body = f'{{"query": {json.dumps(query)}, "variables": {{"w": {_nested(depth)}}}}}'
    resp = client.post(
        "/graphql",
        content=body,
        headers={**bearer(token("analyst")), "Content-Type": "application/json"},
    )
    assert resp.status_code == 400, resp.text
    assert _code(resp.json()) == "BAD_USER_INPUT"
    assert "deep" in resp.json()["errors"][0]["message"]
