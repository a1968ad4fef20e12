"""Prices and discounts are the shop's: a customer cannot order for free, in GraphQL or in
SQL; only admin and service principals discount, within the procedure's rules. A customer
may cancel its own pending or paid order, and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.api.conftest import Shop
from tests.security.conftest import Parties, make_app, post, token
from tests.security.test_rls import as_principal

PLACE = """mutation ($i: PlaceOrderInput!) { placeOrder(input: $i) {
  id totalAmount items { quantity unitPrice discount lineTotal } } }"""
SET_STATUS = """mutation ($o: ID!, $s: OrderStatus!) { setOrderStatus(orderId: $o, status: $s) {
  id status } }"""


@pytest.fixture(scope="module")
def client(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    with make_app(sec_engine, production=True) as c:
        yield c


def _state(engine: Engine, customer: int, product: int) -> tuple[int, int]:
    with engine.connect() as conn:
        orders = conn.execute(
            sa.text("SELECT count(*) FROM app.orders WHERE customer_id = :c"), {"c": customer}
        ).scalar_one()
        stock = conn.execute(
            sa.text("SELECT stock FROM app.products WHERE id = :p"), {"p": product}
        ).scalar_one()
    return int(orders), int(stock)


def _basket(customer: int, product: int, quantity: int, discount: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"productId": str(product), "quantity": quantity}
    if discount is not None:
        item["discount"] = discount
    return {
        "i": {
            "customerId": str(customer),
            "items": [item],
            "channel": "WEB",
            "paymentMethod": "CARD",
        }
    }


def _code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


def test_a_customer_cannot_set_a_discount(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    product = sec_shop.products[4]
    before = _state(sec_engine, parties.a, product)
    for discount in ("1899.50", "0.01", "0"):
        status, body = post(
            client,
            token("customer", parties.a),
            PLACE,
            _basket(parties.a, product, 50, discount),
        )
        assert status == 403 and _code(body) == "FORBIDDEN", body
        assert body["data"] is None
    assert _state(sec_engine, parties.a, product) == before
    # without a discount the customer pays the shop's price
    status, body = post(
        client, token("customer", parties.a), PLACE, _basket(parties.a, product, 1, None)
    )
    assert status == 200 and "errors" not in body, body
    line = body["data"]["placeOrder"]["items"][0]
    assert line["discount"] == "0.00" and Decimal(line["lineTotal"]) == Decimal(line["unitPrice"])


def test_the_procedure_refuses_a_customers_discount_too(
    sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """The rule holds for every writer: a customer principal calling the procedure in SQL."""
    product = sec_shop.products[4]
    before = _state(sec_engine, parties.a, product)
    with (
        as_principal(sec_engine, "customer", parties.a) as conn,
        pytest.raises(sa.exc.DBAPIError) as exc,
    ):
        conn.execute(
            sa.text(
                "SELECT app.place_order(:c, jsonb_build_array(jsonb_build_object("
                "'product_id', CAST(:p AS bigint), 'quantity', 50, 'discount', '1899.50')),"
                " 'web', 'card')"
            ),
            {"c": parties.a, "p": product},
        )
    assert exc.value.orig.sqlstate == "CD006"  # type: ignore[union-attr]
    assert _state(sec_engine, parties.a, product) == before


def test_service_discounts_within_the_line(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    product = sec_shop.products[0]  # 10.50
    _, body = post(client, token("service"), PLACE, _basket(parties.a, product, 2, "21.01"))
    assert _code(body) == "BAD_USER_INPUT", body  # more than the line
    status, body = post(client, token("service"), PLACE, _basket(parties.a, product, 2, "1.00"))
    assert status == 200 and "errors" not in body, body
    assert body["data"]["placeOrder"]["totalAmount"] == "20.00"


def _order_in(engine: Engine, customer: int, status: str) -> int:
    with engine.begin() as conn:
        oid = conn.execute(
            sa.text(
                "SELECT app.place_order(:c, jsonb_build_array(jsonb_build_object("
                "'product_id', (SELECT min(id) FROM app.products), 'quantity', 1)),"
                " 'web', 'card')"
            ),
            {"c": customer},
        ).scalar_one()
        path = {"pending": [], "paid": ["paid"], "shipped": ["paid", "shipped"]}[status]
        for step in path:
            conn.execute(sa.text("SELECT app.set_order_status(:o, :s)"), {"o": oid, "s": step})
    return int(oid)


@pytest.mark.parametrize("status", ["pending", "paid"])
def test_a_customer_cancels_its_own_pending_or_paid_order(
    client: Any, sec_engine: Engine, parties: Parties, status: str
) -> None:
    oid = _order_in(sec_engine, parties.a, status)
    code, body = post(
        client, token("customer", parties.a), SET_STATUS, {"o": str(oid), "s": "CANCELLED"}
    )
    assert code == 200 and body["data"]["setOrderStatus"]["status"] == "CANCELLED", body


def test_a_customer_cancels_nothing_else(client: Any, sec_engine: Engine, parties: Parties) -> None:
    mine = _order_in(sec_engine, parties.a, "pending")
    # another status than CANCELLED: refused before anything runs
    code, body = post(
        client, token("customer", parties.a), SET_STATUS, {"o": str(mine), "s": "PAID"}
    )
    assert code == 403 and _code(body) == "FORBIDDEN", body
    # a shipped order can no longer be cancelled
    shipped = _order_in(sec_engine, parties.a, "shipped")
    code, body = post(
        client, token("customer", parties.a), SET_STATUS, {"o": str(shipped), "s": "CANCELLED"}
    )
    assert _code(body) == "INVALID_TRANSITION", body
    # another customer's order does not exist for this customer
    theirs = _order_in(sec_engine, parties.b, "pending")
    code, body = post(
        client, token("customer", parties.a), SET_STATUS, {"o": str(theirs), "s": "CANCELLED"}
    )
    assert _code(body) == "NOT_FOUND", body
    with sec_engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT status FROM app.orders WHERE id = :o"), {"o": theirs}
            ).scalar_one()
            == "pending"
        )


def _pending_units(engine: Engine, customer: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT coalesce(sum(i.quantity), 0) FROM app.order_items i"
                    " JOIN app.orders o ON o.id = i.order_id"
                    " WHERE o.customer_id = :c AND o.status = 'pending'"
                    " AND app.is_customer_actor(o.created_by)"
                ),
                {"c": customer},
            ).scalar_one()
        )


def test_a_customer_holds_a_bounded_stock_in_unpaid_orders(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """The probe of 2026-12-07 put every active product's whole stock in one pending order
    of one customer key (134,889 units to 6,342 left; the next customer OUT_OF_STOCK), and
    could renew it by cancelling. A customer key's unpaid (pending) orders hold at most
    MAX_PENDING_UNITS units together; the shop's own keys (service, admin) are not bound."""
    from schema.mutations import MAX_PENDING_UNITS

    tok = token("customer", parties.a)
    product = sec_shop.products[2]
    held = _pending_units(sec_engine, parties.a)
    room = MAX_PENDING_UNITS - held
    assert room > 1, held
    status, body = post(client, tok, PLACE, _basket(parties.a, product, room, None))
    assert status == 200 and "errors" not in body, body
    order = body["data"]["placeOrder"]["id"]
    before = _state(sec_engine, parties.a, product)
    status, body = post(client, tok, PLACE, _basket(parties.a, product, 1, None))
    assert status == 400 and _code(body) == "BAD_USER_INPUT", body
    ext = body["errors"][0]["extensions"]
    assert (ext["field"], ext["reason"]) == ("items", "unpaid units over the maximum"), ext
    assert (ext["value"], ext["max"]) == (MAX_PENDING_UNITS + 1, MAX_PENDING_UNITS), ext
    assert _state(sec_engine, parties.a, product) == before  # nothing written
    # the shop's service places more for the customer
    status, body = post(client, token("service"), PLACE, _basket(parties.a, product, 5, None))
    assert status == 200 and "errors" not in body, body
    # cancelling gives the room back
    status, body = post(client, tok, SET_STATUS, {"o": order, "s": "CANCELLED"})
    assert status == 200 and "errors" not in body, body
    status, body = post(client, tok, PLACE, _basket(parties.a, product, 1, None))
    assert status == 200 and "errors" not in body, body

    # the customer's API key is the customer too (its orders were once not counted), and
    # what the shop placed for the customer does not take the customer's room
    from api.apikeys import create_key

    key = create_key(sec_engine, "customer", parties.a, name="pending units")[1]
    room = MAX_PENDING_UNITS - _pending_units(sec_engine, parties.a)
    status, body = post(client, key, PLACE, _basket(parties.a, product, room, None))
    assert status == 200 and "errors" not in body, body
    by_key = body["data"]["placeOrder"]["id"]
    status, body = post(client, key, PLACE, _basket(parties.a, product, 1, None))
    assert status == 400 and _code(body) == "BAD_USER_INPUT", body
    with sec_engine.connect() as conn:
        by_customer = conn.execute(
            sa.text("SELECT app.is_customer_actor(created_by) FROM app.orders WHERE id = :o"),
            {"o": int(by_key)},
        ).scalar_one()
    assert by_customer is True


TICKET = """mutation ($c: ID!) { openSupportTicket(input: {customerId: $c, category: OTHER,
  channel: WEB, subject: "again", priority: URGENT}) { id } }"""


def test_a_customer_places_100_orders_and_opens_20_tickets_a_day(
    client: Any, sec_engine: Engine, sec_shop: Shop
) -> None:
    """A probe placed and cancelled an order of one unit 300 times in ten seconds, and
    opened 599 URGENT tickets: per customer, 100 orders (its own) and 20 tickets a day."""
    product = sec_shop.products[2]
    with sec_engine.begin() as conn:
        customer = conn.execute(
            sa.text(
                "INSERT INTO app.customers (email, first_name, last_name, country, region, city)"
                " VALUES ('day' || gen_random_uuid() || '@example.com', 'D', 'L', 'DE', 'R', 'C')"
                " RETURNING id"
            )
        ).scalar_one()
        conn.execute(
            sa.text(
                "SELECT set_config('cdms.role', 'customer', true),"
                " set_config('cdms.customer_id', :c, true), set_config('cdms.actor', :a, true)"
            ),
            {"c": str(customer), "a": f"customer:{customer}"},
        )
        for _ in range(100):  # as the API would have, 100 times: placed, then cancelled
            order = conn.execute(
                sa.text(
                    "SELECT app.place_order(:c, jsonb_build_array(jsonb_build_object("
                    "'product_id', CAST(:p AS bigint), 'quantity', 1)), 'web', 'card')"
                ),
                {"c": customer, "p": product},
            ).scalar_one()
            conn.execute(sa.text("SELECT app.set_order_status(:o, 'cancelled')"), {"o": order})
        for _ in range(20):
            conn.execute(
                sa.text("SELECT app.open_ticket(:c, 'other', 'urgent', 'web', 'again', NULL)"),
                {"c": customer},
            )
    tok = token("customer", customer)
    before = _state(sec_engine, customer, product)

    resp = client.post("/graphql", json={"query": PLACE, "variables": _basket(customer, product,
                       1, None)}, headers={"Authorization": f"Bearer {tok}"})  # fmt: skip
    ext = resp.json()["errors"][0]["extensions"]
    assert (resp.status_code, ext["code"], ext["max"]) == (429, "RATE_LIMITED", 100), resp.text
    assert 86_000 < ext["retryAfter"] <= 86_400
    assert resp.headers["Retry-After"] == str(ext["retryAfter"])
    status, body = post(client, tok, TICKET, {"c": str(customer)})
    assert (status, _code(body), body["errors"][0]["extensions"]["max"]) == (
        429, "RATE_LIMITED", 20,
    ), body  # fmt: skip
    assert _state(sec_engine, customer, product) == before  # nothing written

    # the shop still places orders and opens tickets for the customer, and what it opens
    # does not count for the customer
    status, body = post(client, token("service"), PLACE, _basket(customer, product, 1, None))
    assert status == 200 and "errors" not in body, body
    other = sec_shop.customers[5]
    for _ in range(21):
        status, body = post(client, token("service"), TICKET, {"c": str(other)})
        assert status == 200 and "errors" not in body, body
    status, body = post(client, token("customer", other), TICKET, {"c": str(other)})
    assert status == 200 and "errors" not in body, body


def test_a_discount_in_exponent_form_is_the_amount_it_says(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """docs/api.md: a Decimal may be written with an exponent. "1e1" was passed on as
    "1E+1", which the procedure could not read: refused as "at most 2 decimals"."""
    product = sec_shop.products[2]
    status, body = post(client, token("service"), PLACE, _basket(parties.a, product, 1, "1e1"))
    assert status == 200 and "errors" not in body, body
    assert body["data"]["placeOrder"]["items"][0]["discount"] == "10.00"
