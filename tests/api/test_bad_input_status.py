"""Bad input answers 4xx on every kind of root: an operation that answered and wrote
nothing because of what it asked (``data`` null, every error a client's) is HTTP 400
(BAD_USER_INPUT), 403, 404 (NOT_FOUND) or 409 (CONFLICT, INVALID_TRANSITION, OUT_OF_STOCK),
whether refused while planning (a relational read) or by a resolver root (a what-if input
out of range, a cube's unknown timezone, a mutation's input, id or state); a batch stays
200, each operation's answer in it as alone."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.api.conftest import Shop, TestClient

WHAT_IF = """{ predictOrderStatus(input: {segment: "retail", ageBand: "25-34",
  country: "DE", tenureDays: 30, priorOrders: 1, channel: "WEB", paymentMethod: "CARD",
  itemCount: 1, lineCount: 1, basketValue: 10, mainCategory: "books", categoryCount: 1,
  dayOfWeek: 3, month: 13}) { label } }"""
CUBE = """{ cube(timezone: "Mars/Olympus") { orders { count } } }"""
PLACE = """mutation ($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, channel: WEB,
  paymentMethod: CARD, items: [{productId: $p, quantity: 0}]}) { id } }"""


def _post(client: TestClient, payload: Any) -> Any:
    return client.post("/graphql", json=payload)


def _refused(resp: Any, code: str = "BAD_USER_INPUT", status: int = 400) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["data"] is None, body
    assert {e["extensions"]["code"] for e in body["errors"]} == {code}, body
    return body


def test_a_resolver_roots_bad_input_is_400(w_client: TestClient) -> None:
    body = _refused(_post(w_client, {"query": WHAT_IF}))
    assert body["errors"][0]["extensions"]["field"] == "input.month"
    _refused(_post(w_client, {"query": CUBE}))


def test_a_mutations_bad_input_is_400_and_writes_nothing(
    w_client: TestClient, w_engine: Engine, w_shop: Shop
) -> None:
    with w_engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM app.orders")).scalar_one()
    variables = {"c": str(w_shop.customers[0]), "p": str(w_shop.products[0])}
    _refused(_post(w_client, {"query": PLACE, "variables": variables}))
    with w_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM app.orders")).scalar_one() == before


def test_a_mutation_refused_for_an_id_or_a_state_is_404_or_409_and_writes_nothing(
    w_client: TestClient, w_engine: Engine, w_shop: Shop
) -> None:
    def orders_and_stock() -> tuple[int, int]:
        with w_engine.connect() as conn:
            return (
                conn.execute(sa.text("SELECT count(*) FROM app.orders")).scalar_one(),
                conn.execute(sa.text("SELECT sum(stock) FROM app.products")).scalar_one(),
            )

    before = orders_and_stock()
    c, p = str(w_shop.customers[0]), str(w_shop.products[0])
    unknown = _post(w_client, {"query": PLACE.replace("quantity: 0", "quantity: 1"),
                             "variables": {"c": c, "p": "999999999"}})  # fmt: skip
    _refused(unknown, "NOT_FOUND", 404)
    too_many = _post(w_client, {"query": PLACE.replace("quantity: 0", "quantity: 100000"),
                              "variables": {"c": c, "p": p}})  # fmt: skip
    _refused(too_many, "OUT_OF_STOCK", 409)
    assert orders_and_stock() == before
    with w_engine.connect() as conn:  # (no order goes back to PENDING)
        settled = conn.execute(
            sa.text("SELECT min(id) FROM app.orders WHERE status <> 'pending'")
        ).scalar_one()
    back = _post(
        w_client,
        {
            "query": "mutation ($o: ID!) { setOrderStatus(orderId: $o, status: PENDING) { id } }",
            "variables": {"o": str(settled)},
        },
    )
    _refused(back, "INVALID_TRANSITION", 409)


def test_an_operation_refused_after_a_write_is_400_and_writes_nothing(
    w_client: TestClient, w_engine: Engine, w_shop: Shop
) -> None:
    """Mutation fields run in turn, in one transaction: the first one writes, then the
    second one's input is refused, and the first one's write is rolled back with it. Until
    2026-12-07 the first one was committed while the answer (``data: null``) read as
    "nothing happened", and a client that retried wrote twice; now nothing happened."""
    with w_engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM app.orders")).scalar_one()
    c, p = w_shop.customers[0], w_shop.products[0]
    both = f"""mutation {{
      a: placeOrder(input: {{customerId: "{c}", channel: WEB, paymentMethod: CARD,
        items: [{{productId: "{p}", quantity: 1}}]}}) {{ id }}
      b: placeOrder(input: {{customerId: "{c}", channel: WEB, paymentMethod: CARD,
        items: [{{productId: "{p}", quantity: 0}}]}}) {{ id }} }}"""
    resp = _post(w_client, {"query": both})
    body = _refused(resp, "BAD_USER_INPUT", 400)
    assert "extensions" not in body and "Cdms-Commit-Lsn" not in resp.headers, body
    with w_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM app.orders")).scalar_one() == before


def test_a_batch_stays_200(w_client: TestClient) -> None:
    batch = _post(w_client, [{"query": WHAT_IF}, {"query": "{ __typename }"}])
    assert batch.status_code == 200, batch.text
    assert [r["data"] for r in batch.json()] == [None, {"__typename": "Query"}]


def test_an_operation_that_wrote_is_never_told_as_nothing_done() -> None:
    """An answer that carries a committed write (its operation's fields all answered, so
    the executor never builds one without data: a guard) is no 503 'try again' (a retry
    would write twice), and the 400 of bad input holds even when the commit position could
    not be read afterwards (the database went away: no commitLsn to tell it by)."""
    from api.http import status_of
    from schema.execute import Result

    def error(code: str) -> dict[str, Any]:
        return {"message": code, "extensions": {"code": code}}

    away = Result(
        errors=[error("SERVICE_UNAVAILABLE")], extensions={"commitLsn": "0/1"}, wrote=True
    )
    assert status_of([Result(errors=[error("SERVICE_UNAVAILABLE")])], batch=False) == 503
    assert status_of([away], batch=False) == 200
    no_lsn = Result(errors=[error("BAD_USER_INPUT")], wrote=True)
    assert status_of([no_lsn], batch=False) == 200
    unread = Result(errors=[error("SERVICE_UNAVAILABLE")], wrote=True)
    assert status_of([unread], batch=False) == 200
