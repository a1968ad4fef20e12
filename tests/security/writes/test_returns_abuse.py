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


# ---- RETURNED is the returns' doing (probe 12, finding 3) ---------------------------------

SET_STATUS = """mutation ($o: ID!, $s: OrderStatus!) { setOrderStatus(orderId: $o, status: $s) {
  id status } }"""


def _order_state(engine: Engine, order: int, product: int) -> tuple[Any, ...]:
    """The order's status and timestamps, its history, its returns, the product's stock."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.text(
                    "SELECT o.status, o.returned_at, o.updated_at,"
                    " (SELECT count(*) FROM app.order_status_history WHERE order_id = o.id),"
                    " (SELECT count(*) FROM app.returns WHERE order_id = o.id),"
                    " (SELECT stock FROM app.products WHERE id = :p)"
                    " FROM app.orders AS o WHERE o.id = :o"
                ),
                {"o": order, "p": product},
            ).one()
        )


@pytest.mark.parametrize("role", ["service", "admin"])
def test_the_shop_cannot_set_an_order_returned_without_its_returns(
    client: Any, sec_engine: Engine, sec_shop: Shop, role: str
) -> None:
    """setOrderStatus(RETURNED) of a delivered order with no return made it RETURNED with
    no refund and no restock, and no return could be asked for afterwards. The order is
    RETURNED when its returns bring every unit back (approveReturn), and only then."""
    customer = _customer(sec_engine)
    product = sec_shop.products[1]
    order = _delivered(sec_engine, customer, product, 2, "0", 0)
    before = _order_state(sec_engine, order, product)

    def refused(returned: int) -> None:
        status, body = post(client, token(role), SET_STATUS, {"o": str(order), "s": "RETURNED"})
        assert status == 409 and body["data"] is None, body
        ext = body["errors"][0]["extensions"]
        assert ext == {
            "code": "INVALID_TRANSITION", "entity": "Order", "id": str(order),
            "from": "DELIVERED", "to": "RETURNED", "reason": "units not returned",
            "units": 2, "returnedUnits": returned,
        }, body  # fmt: skip
        assert body["errors"][0]["message"].startswith(
            f"order {order} cannot go from DELIVERED to RETURNED: {returned} of its 2 units"
        ), body

    refused(0)
    assert _order_state(sec_engine, order, product) == before

    # both units asked back (the order is still DELIVERED), one approved: still refused
    asked = []
    for _ in range(2):
        status, body = _ask(client, token("customer", customer), order, 1, "DAMAGED")
        assert status == 200 and "errors" not in body, body
        asked.append(body["data"]["requestReturn"]["id"])
    status, body = post(client, token(role), APPROVE, {"r": asked[0]})
    assert status == 200 and "errors" not in body, body
    refused(1)
    status, body = post(client, token(role), APPROVE, {"r": asked[1]})
    assert status == 200 and "errors" not in body, body
    # the last unit approved: the order is RETURNED, once, both units back in stock
    after = _order_state(sec_engine, order, product)
    assert after[0] == "returned" and after[1] is not None
    assert after[3:] == (before[3] + 1, 2, before[5] + 2)


# ---- the shop's decision note is its own (probe 22, M1) -----------------------------------

ASK_WITH_COMMENT = """mutation ($i: RequestReturnInput!) { requestReturn(input: $i) { id } }"""
REJECT = """mutation ($r: ID!, $c: String) { rejectReturn(returnId: $r, comment: $c) {
  status comment decisionComment } }"""
OWN_RETURNS = """query ($c: ID!) { customer(id: $c) { returns(first: 5) { edges { node {
  id status comment } } } } }"""
OWN_NOTE = """query ($c: ID!) { customer(id: $c) { returns(first: 5) { edges { node {
  id ...note } } } } }
fragment note on Return { decisionComment }"""
NOTE = """query ($c: ID!) { customer(id: $c) { returns(first: 5) { edges { node {
  comment decisionComment } } } } }"""


@pytest.mark.parametrize("role", ["service", "admin"])
def test_a_rejection_note_is_the_shops_and_keeps_the_customers_comment(
    client: Any, sec_engine: Engine, sec_shop: Shop, role: str
) -> None:
    """rejectReturn(comment:) replaced the customer's comment with the staff's note, which
    the customer then read, and its own words were lost. The note has a field of its own,
    decisionComment, for staff roles only (a customer is refused it as it is changedBy);
    the customer's comment is never rewritten, not even by a statement no mutation makes."""
    customer = _customer(sec_engine)
    order = _delivered(sec_engine, customer, sec_shop.products[4], 1, "0", 0)
    mine, note = "Box crushed in transit", "INTERNAL: flagged for fraud review (agent j.smith)"
    status, body = post(
        client,
        token("customer", customer),
        ASK_WITH_COMMENT,
        {"i": {"orderId": str(order), "lineNo": 1, "quantity": 1, "reason": "DAMAGED",
               "comment": mine}},
    )  # fmt: skip
    assert status == 200 and "errors" not in body, body
    ret = body["data"]["requestReturn"]["id"]

    # a note too long is refused naming the argument, not the column
    status, body = post(client, token(role), REJECT, {"r": ret, "c": "x" * 10_001})
    assert status == 400 and body["data"] is None, body
    ext = body["errors"][0]["extensions"]
    assert (ext["code"], ext["field"], ext["reason"], ext["max"]) == (
        "BAD_USER_INPUT", "comment", "too long", 10_000
    )  # fmt: skip
    status, body = post(client, token(role), REJECT, {"r": ret, "c": note})
    assert status == 200 and "errors" not in body, body
    assert body["data"]["rejectReturn"] == {
        "status": "REJECTED", "comment": mine, "decisionComment": note
    }  # fmt: skip

    # the customer reads its own words, and is refused the shop's (also in a fragment)
    status, body = post(client, token("customer", customer), OWN_RETURNS, {"c": str(customer)})
    assert status == 200 and "errors" not in body, body
    [edge] = body["data"]["customer"]["returns"]["edges"]
    assert edge["node"] == {"id": ret, "status": "REJECTED", "comment": mine}
    status, body = post(client, token("customer", customer), OWN_NOTE, {"c": str(customer)})
    assert status == 403 and body["data"] is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert "decisionComment" in body["errors"][0]["message"]
    assert note not in str(body)
    # nor may it select the field in a mutation's payload
    status, body = post(
        client,
        token("customer", customer),
        "mutation ($i: RequestReturnInput!) { requestReturn(input: $i) { id decisionComment } }",
        {"i": {"orderId": str(order), "lineNo": 1, "quantity": 1, "reason": "DAMAGED"}},
    )
    assert status == 403 and [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    for staff in ("admin", "analyst", "service"):
        status, body = post(client, token(staff), NOTE, {"c": str(customer)})
        assert status == 200 and "errors" not in body, body
        [edge] = body["data"]["customer"]["returns"]["edges"]
        assert edge["node"] == {"comment": mine, "decisionComment": note}

    # the floor: the staff's database role may not rewrite the customer's comment
    with sec_engine.connect() as conn, conn.begin() as trans:
        conn.execute(
            sa.text(
                "SELECT set_config('role', 'cdms_api', true), set_config('cdms.role', :role, true)"
            ),
            {"role": role},
        )
        with pytest.raises(sa.exc.DBAPIError) as exc:
            conn.execute(
                sa.text("UPDATE app.returns SET comment = 'overwritten' WHERE id = :r"),
                {"r": int(ret)},
            )
        assert exc.value.orig.sqlstate == "42501", exc.value.orig  # type: ignore[union-attr]
        trans.rollback()
    with sec_engine.connect() as conn:
        kept = conn.execute(
            sa.text("SELECT comment, decision_comment FROM app.returns WHERE id = :r"),
            {"r": int(ret)},
        ).one()
    assert tuple(kept) == (mine, note)
