"""Returns refund what was paid and are asked for in time: a line returned unit by unit
refunded 176.97 for 176.96 paid (each unit's share rounded up), and a customer key's
CHANGED_MIND return of an order delivered three years before was taken (probe 6)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.api.conftest import Shop
from tests.security.conftest import make_app, post, token

REQUEST = """mutation ($i: RequestReturnInput!) { requestReturn(input: $i) { id status } }"""
APPROVE = """mutation ($r: ID!, $a: Decimal) { approveReturn(returnId: $r, refundAmount: $a) {
  refundAmount } }"""


@pytest.fixture(scope="module")
def client(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    with make_app(sec_engine, production=True) as c:
        yield c


def _customer(engine: Engine) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.text(
                    "INSERT INTO app.customers (email, first_name, last_name, country, region,"
                    " city) VALUES ('rt' || gen_random_uuid() || '@example.com', 'R', 'T', 'DE',"
                    " 'R', 'C') RETURNING id"
                )
            ).scalar_one()
        )


def _delivered(
    engine: Engine, customer: int, product: int, quantity: int, discount: str, days: int
) -> int:
    """The customer's order of one line, delivered ``days`` days ago."""
    with engine.begin() as conn:
        order = conn.execute(
            sa.text(
                "SELECT app.place_order(:c, jsonb_build_array(jsonb_build_object("
                "'product_id', CAST(:p AS bigint), 'quantity', CAST(:q AS integer),"
                " 'discount', CAST(:d AS text))), 'web', 'card')"
            ),
            {"c": customer, "p": product, "q": quantity, "d": discount},
        ).scalar_one()
        for step in ("paid", "shipped", "delivered"):
            conn.execute(sa.text("SELECT app.set_order_status(:o, :s)"), {"o": order, "s": step})
        conn.execute(
            sa.text(
                "UPDATE app.orders SET ordered_at = ordered_at - make_interval(days => :d),"
                " paid_at = paid_at - make_interval(days => :d),"
                " shipped_at = shipped_at - make_interval(days => :d),"
                " delivered_at = delivered_at - make_interval(days => :d) WHERE id = :o"
            ),
            {"d": days, "o": order},
        )
    return int(order)


def _ask(client: Any, tok: str, order: int, quantity: int, reason: str) -> tuple[int, Any]:
    return post(
        client,
        tok,
        REQUEST,
        {"i": {"orderId": str(order), "lineNo": 1, "quantity": quantity, "reason": reason}},
    )


def test_a_lines_refunds_add_up_to_what_was_paid(
    client: Any, sec_engine: Engine, sec_shop: Shop
) -> None:
    customer = _customer(sec_engine)
    order = _delivered(sec_engine, customer, sec_shop.products[2], 3, "0.01", 0)
    with sec_engine.connect() as conn:
        paid = conn.execute(
            sa.text("SELECT line_total FROM app.order_items WHERE order_id = :o"), {"o": order}
        ).scalar_one()
    shop = token("service")
    refunds = []
    for _ in range(3):
        status, body = _ask(client, token("customer", customer), order, 1, "DAMAGED")
        assert status == 200 and "errors" not in body, body
        ret = body["data"]["requestReturn"]["id"]
        if len(refunds) == 2:  # the last unit: at most what is left of the line
            left = paid - sum(refunds)
            status, body = post(client, shop, APPROVE, {"r": ret, "a": str(left + Decimal("0.01"))})
            assert status == 400, body
            ext = body["errors"][0]["extensions"]
            assert (ext["code"], ext["field"], ext["max"]) == (
                "BAD_USER_INPUT", "refundAmount", f"{left:.2f}"
            )  # fmt: skip
        status, body = post(client, shop, APPROVE, {"r": ret})
        assert status == 200 and "errors" not in body, body
        refunds.append(Decimal(body["data"]["approveReturn"]["refundAmount"]))
    assert sum(refunds) == paid


@pytest.mark.parametrize("reason", ["CHANGED_MIND", "DEFECTIVE"])
def test_a_customer_asks_for_a_return_within_30_days_of_delivery(
    client: Any, sec_engine: Engine, sec_shop: Shop, reason: str
) -> None:
    customer = _customer(sec_engine)
    old = _delivered(sec_engine, customer, sec_shop.products[3], 2, "0", 3 * 365)
    status, body = _ask(client, token("customer", customer), old, 1, reason)
    assert status == 400 and body["data"] is None, body
    ext = body["errors"][0]["extensions"]
    assert (ext["code"], ext["field"], ext["reason"]) == (
        "BAD_USER_INPUT", "orderId", "return window closed"
    )  # fmt: skip
    end = datetime.fromisoformat(ext["windowEnd"])
    assert (
        timedelta(days=3 * 365 - 31) < datetime.now(end.tzinfo) - end < timedelta(days=3 * 365 - 29)
    )
    assert "30 days" in body["errors"][0]["message"]
    # the shop's keys make exceptions
    status, body = _ask(client, token("service"), old, 1, reason)
    assert status == 200 and body["data"]["requestReturn"]["status"] == "REQUESTED", body

    recent = _delivered(sec_engine, customer, sec_shop.products[3], 2, "0", 29)
    status, body = _ask(client, token("customer", customer), recent, 1, reason)
    assert status == 200 and "errors" not in body, body
