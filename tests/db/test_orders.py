"""app.place_order and app.set_order_status: what they do, and what they refuse."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from db.config import to_libpq_url
from db.errors import (
    BadUserInputError,
    CdmsError,
    InvalidTransitionError,
    NotFoundError,
    OutOfStockError,
    from_db_error,
)
from tests.db.shop import (
    Conn,
    delivered_order,
    item,
    new_customer,
    new_product,
    one,
    order_count,
    place_order,
    refused,
    row,
    set_order_status,
    stock,
)


def test_place_order_copies_prices_takes_stock_and_totals_the_lines(pg: Conn) -> None:
    customer = new_customer(pg)
    shoe, _ = new_product(pg, stock=10, price="40.00")
    sock, _ = new_product(pg, stock=5, price="3.50")
    pg.execute("SET LOCAL cdms.actor = 'customer:1'")

    order_id = place_order(pg, customer, [item(sock, 2, "1.00"), item(shoe, 3)], "mobile", "paypal")
    pg.commit()

    order = row(pg, "SELECT * FROM app.orders WHERE id = %s", (order_id,))
    assert order["status"] == "pending"
    assert (order["channel"], order["payment_method"]) == ("mobile", "paypal")
    assert order["item_count"] == 5
    assert order["subtotal"] == Decimal("127.00")  # 2 x 3.50 + 3 x 40.00
    assert order["discount_total"] == Decimal("1.00")
    assert order["total_amount"] == Decimal("126.00")
    assert order["created_by"] == "customer:1"
    lines = pg.execute(
        "SELECT line_no, product_id, quantity, unit_price, discount, line_total"
        " FROM app.order_items WHERE order_id = %s ORDER BY line_no",
        (order_id,),
    ).fetchall()
    assert lines == [
        (1, sock, 2, Decimal("3.50"), Decimal("1.00"), Decimal("6.00")),
        (2, shoe, 3, Decimal("40.00"), Decimal("0.00"), Decimal("120.00")),
    ]
    assert (stock(pg, shoe), stock(pg, sock)) == (7, 3)
    history = pg.execute(
        "SELECT from_status, to_status, changed_by FROM app.order_status_history"
        " WHERE order_id = %s",
        (order_id,),
    ).fetchall()
    assert history == [(None, "pending", "customer:1")]


def test_place_order_prices_are_copied_not_linked(pg: Conn) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg, price="10.00")
    order_id = place_order(pg, customer, [item(product, 1)])
    pg.execute("UPDATE app.products SET unit_price = 99 WHERE id = %s", (product,))
    pg.commit()
    assert one(pg, "SELECT total_amount FROM app.orders WHERE id = %s", (order_id,)) == Decimal(
        "10.00"
    )


def test_place_order_accepts_discounts_as_numbers_or_strings(pg: Conn) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg, price="10.00")
    order_id = place_order(pg, customer, [{"product_id": product, "quantity": 2, "discount": 2.5}])
    assert one(pg, "SELECT total_amount FROM app.orders WHERE id = %s", (order_id,)) == Decimal(
        "17.50"
    )
    pg.rollback()


def test_out_of_stock_names_the_sku_and_changes_nothing(pg: Conn) -> None:
    customer = new_customer(pg)
    plenty, _ = new_product(pg, stock=100)
    scarce, scarce_sku = new_product(pg, stock=2)
    pg.commit()

    with refused(pg, OutOfStockError) as info:
        place_order(pg, customer, [item(plenty, 5), item(scarce, 3)])
    assert info.value.fields == {"sku": scarce_sku, "wanted": 3, "available": 2}
    assert scarce_sku in info.value.message
    assert (stock(pg, plenty), stock(pg, scarce)) == (100, 2)
    assert order_count(pg, customer) == 0


BAD_BASKETS: list[tuple[str, Any, str]] = [
    ("empty", [], "items"),
    ("not an array", {"product_id": 1, "quantity": 1}, "items"),
    ("null", None, "items"),
    ("item not an object", [1], "items"),
    ("zero quantity", "zero", "quantity"),
    ("negative quantity", "negative", "quantity"),
    ("fractional quantity", "fraction", "quantity"),
    ("quantity as text", "text", "quantity"),
    ("missing product id", "no-product", "product_id"),
    ("negative discount", "neg-discount", "discount"),
    ("discount above gross", "big-discount", "discount"),
    ("discount with 3 decimals", "fine-discount", "discount"),
    ("discount not a number", "nan-discount", "discount"),
    ("duplicate product", "duplicate", "items"),
    ("inactive product", "inactive", "product_id"),
]


def _basket(kind: Any, product: int, inactive: int) -> Any:
    baskets: dict[str, Any] = {
        "zero": [item(product, 0)],
        "negative": [item(product, -1)],
        "fraction": [{"product_id": product, "quantity": 1.5}],
        "text": [{"product_id": product, "quantity": "two"}],
        "no-product": [{"quantity": 1}],
        "neg-discount": [item(product, 1, "-0.01")],
        "big-discount": [item(product, 2, "20.01")],  # gross is 2 x 10.00
        "fine-discount": [item(product, 2, "0.005")],
        "nan-discount": [item(product, 2, "abc")],
        "duplicate": [item(product, 1), item(product, 2)],
        "inactive": [item(product, 1), item(inactive, 1)],
    }
    return baskets.get(kind, kind) if isinstance(kind, str) else kind


@pytest.mark.parametrize(("label", "basket", "field"), BAD_BASKETS, ids=[b[0] for b in BAD_BASKETS])
def test_bad_baskets_are_refused_with_the_field_and_change_nothing(
    pg: Conn, label: str, basket: Any, field: str
) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg, stock=10, price="10.00")
    inactive, _ = new_product(pg, stock=10, active=False)
    pg.commit()

    with refused(pg, BadUserInputError) as info:
        place_order(pg, customer, _basket(basket, product, inactive))
    assert info.value.fields["field"] == field, label
    assert stock(pg, product) == 10
    assert stock(pg, inactive) == 10
    assert order_count(pg, customer) == 0


def test_unknown_customer_and_unknown_product_are_not_found(pg: Conn) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg, stock=10)
    pg.commit()
    missing = int(one(pg, "SELECT coalesce(max(id), 0) + 1000 FROM app.products"))
    pg.rollback()

    with refused(pg, NotFoundError) as info:
        place_order(pg, customer, [item(product, 1), item(missing, 1)])
    assert info.value.fields == {"entity": "product", "id": missing}

    with refused(pg, NotFoundError) as info:
        place_order(pg, 2**62, [item(product, 1)])
    assert info.value.fields == {"entity": "customer", "id": 2**62}
    assert stock(pg, product) == 10
    assert order_count(pg, customer) == 0


@pytest.mark.parametrize(("channel", "payment", "field"), [
    ("telepathy", "card", "channel"),
    ("web", "iou", "payment_method"),
    (None, "card", "channel"),
])  # fmt: skip
def test_bad_channel_or_payment_method_is_bad_input(
    pg: Conn, channel: str | None, payment: str, field: str
) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg, stock=3)
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        place_order(pg, customer, [item(product, 1)], channel, payment)  # type: ignore[arg-type]
    assert info.value.fields["field"] == field
    assert stock(pg, product) == 3
    assert order_count(pg, customer) == 0


def test_twenty_buyers_racing_for_the_last_five_units(database_url: str, pg: Conn) -> None:
    """Each buyer is its own connection and transaction; exactly five win, none oversell."""
    product, sku = new_product(pg, stock=5)
    buyers = [new_customer(pg) for _ in range(20)]
    pg.commit()

    start = threading.Barrier(len(buyers))
    outcomes: list[object] = []
    lock = threading.Lock()

    def buy(customer: int) -> None:
        with psycopg.connect(to_libpq_url(database_url)) as conn:
            start.wait()
            try:
                order_id = place_order(conn, customer, [item(product, 1)])
                conn.commit()
                result: object = order_id
            except psycopg.Error as exc:
                conn.rollback()
                result = from_db_error(exc) or exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=buy, args=(c,)) for c in buyers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    orders = [o for o in outcomes if isinstance(o, int)]
    failures = [o for o in outcomes if not isinstance(o, int)]
    assert len(outcomes) == 20
    assert len(orders) == 5
    assert all(isinstance(f, OutOfStockError) for f in failures), failures
    assert all(isinstance(f, CdmsError) and f.fields["sku"] == sku for f in failures)
    assert stock(pg, product) == 0
    sold = one(pg, "SELECT sum(quantity) FROM app.order_items WHERE product_id = %s", (product,))
    assert sold == 5


def test_baskets_naming_the_same_products_in_opposite_orders_do_not_deadlock(
    database_url: str, pg: Conn
) -> None:
    """Products are locked in id order whatever the basket order, so these all succeed."""
    a, _ = new_product(pg, stock=100)
    b, _ = new_product(pg, stock=100)
    c, _ = new_product(pg, stock=100)
    buyers = [new_customer(pg) for _ in range(8)]
    pg.commit()
    baskets = [[item(a, 1), item(b, 1), item(c, 1)], [item(c, 1), item(b, 1), item(a, 1)]]
    start = threading.Barrier(len(buyers))
    errors: list[BaseException] = []

    def buy(n: int) -> None:
        try:
            with psycopg.connect(to_libpq_url(database_url)) as conn:
                conn.execute("SET lock_timeout = '20s'")
                start.wait()
                for _ in range(3):
                    place_order(conn, buyers[n], baskets[n % 2])
                    conn.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=buy, args=(n,)) for n in range(len(buyers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert (stock(pg, a), stock(pg, b), stock(pg, c)) == (76, 76, 76)


def test_the_order_lifecycle_stamps_each_status_and_keeps_history(pg: Conn) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg)
    order_id = place_order(pg, customer, [item(product, 1)])
    pg.commit()
    pg.execute("SET LOCAL cdms.actor = 'admin'")
    for status in ("paid", "shipped", "delivered"):
        order = set_order_status(pg, order_id, status)
        assert order["status"] == status
        assert order["id"] == order_id
    pg.commit()

    order = row(pg, "SELECT * FROM app.orders WHERE id = %s", (order_id,))
    assert order["ordered_at"] <= order["paid_at"] <= order["shipped_at"] <= order["delivered_at"]
    assert order["cancelled_at"] is None and order["returned_at"] is None
    history = pg.execute(
        "SELECT from_status, to_status, changed_by FROM app.order_status_history"
        " WHERE order_id = %s ORDER BY id",
        (order_id,),
    ).fetchall()
    assert history == [
        (None, "pending", None),
        ("pending", "paid", "admin"),
        ("paid", "shipped", "admin"),
        ("shipped", "delivered", "admin"),
    ]


@pytest.mark.parametrize("start", ["pending", "paid"])
def test_cancelling_gives_the_stock_back(pg: Conn, start: str) -> None:
    customer = new_customer(pg)
    a, _ = new_product(pg, stock=10)
    b, _ = new_product(pg, stock=4)
    order_id = place_order(pg, customer, [item(b, 4), item(a, 3)])
    if start == "paid":
        set_order_status(pg, order_id, "paid")
    pg.commit()
    assert (stock(pg, a), stock(pg, b)) == (7, 0)

    order = set_order_status(pg, order_id, "cancelled")
    pg.commit()
    assert order["status"] == "cancelled" and order["cancelled_at"] is not None
    assert (stock(pg, a), stock(pg, b)) == (10, 4)


ILLEGAL = [
    ("pending", "shipped"),
    ("pending", "delivered"),
    ("pending", "returned"),
    ("paid", "pending"),
    ("paid", "delivered"),
    ("shipped", "cancelled"),
    ("shipped", "paid"),
    ("delivered", "cancelled"),
    ("delivered", "shipped"),
    ("cancelled", "paid"),
    ("cancelled", "pending"),
]
_PATH = {
    "pending": [],
    "paid": ["paid"],
    "shipped": ["paid", "shipped"],
    "delivered": ["paid", "shipped", "delivered"],
    "cancelled": ["cancelled"],
}


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
@pytest.mark.parametrize("writer", ["procedure", "plain UPDATE"])
def test_illegal_transitions_are_refused_for_every_writer(
    pg: Conn, source: str, target: str, writer: str
) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg, stock=5)
    order_id = place_order(pg, customer, [item(product, 2)])
    for status in _PATH[source]:
        set_order_status(pg, order_id, status)
    pg.commit()
    before = row(pg, "SELECT * FROM app.orders WHERE id = %s", (order_id,))
    history = one(
        pg, "SELECT count(*) FROM app.order_status_history WHERE order_id = %s", (order_id,)
    )
    stock_before = stock(pg, product)
    pg.rollback()

    with refused(pg, InvalidTransitionError) as info:
        if writer == "procedure":
            set_order_status(pg, order_id, target)
        else:
            pg.execute("UPDATE app.orders SET status = %s WHERE id = %s", (target, order_id))
    assert info.value.fields == {"entity": "order", "id": order_id, "from": source, "to": target}
    assert row(pg, "SELECT * FROM app.orders WHERE id = %s", (order_id,)) == before
    assert stock(pg, product) == stock_before
    assert history == one(
        pg, "SELECT count(*) FROM app.order_status_history WHERE order_id = %s", (order_id,)
    )


def test_setting_the_current_status_again_is_not_a_transition(pg: Conn) -> None:
    """The procedure refuses it; a plain UPDATE to the same value is a no-op, not logged."""
    customer = new_customer(pg)
    product, _ = new_product(pg)
    order_id = place_order(pg, customer, [item(product, 1)])
    set_order_status(pg, order_id, "paid")
    pg.commit()
    with refused(pg, InvalidTransitionError):
        set_order_status(pg, order_id, "paid")
    pg.execute("UPDATE app.orders SET status = 'paid' WHERE id = %s", (order_id,))
    pg.commit()
    assert (
        one(pg, "SELECT count(*) FROM app.order_status_history WHERE order_id = %s", (order_id,))
        == 2
    )


def test_a_plain_update_that_is_legal_is_stamped_and_logged(pg: Conn) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg)
    order_id = place_order(pg, customer, [item(product, 1)])
    pg.commit()
    pg.execute("SET LOCAL cdms.actor = 'etl'")
    pg.execute("UPDATE app.orders SET status = 'paid' WHERE id = %s", (order_id,))
    pg.commit()
    assert one(pg, "SELECT paid_at IS NOT NULL FROM app.orders WHERE id = %s", (order_id,))
    last = pg.execute(
        "SELECT from_status, to_status, changed_by FROM app.order_status_history"
        " WHERE order_id = %s ORDER BY id DESC LIMIT 1",
        (order_id,),
    ).fetchone()
    assert last == ("pending", "paid", "etl")


def test_set_order_status_refuses_unknown_orders_and_statuses(pg: Conn) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg)
    order_id = place_order(pg, customer, [item(product, 1)])
    pg.commit()

    with refused(pg, NotFoundError) as nf:
        set_order_status(pg, 2**62, "paid")
    assert nf.value.fields == {"entity": "order", "id": 2**62}
    with refused(pg, BadUserInputError) as bad:
        set_order_status(pg, order_id, "teleported")
    assert bad.value.fields["field"] == "status"
    assert one(pg, "SELECT status FROM app.orders WHERE id = %s", (order_id,)) == "pending"


def test_delivered_then_returned_directly_is_refused(pg: Conn) -> None:
    """Only returns make an order RETURNED: app.approve_return, once every unit came back
    (tests/db/test_returns.py); without them the move is refused, for every writer."""
    customer = new_customer(pg)
    product, _ = new_product(pg)
    order_id = delivered_order(pg, customer, [item(product, 1)])
    pg.commit()
    with refused(pg, InvalidTransitionError) as info:
        set_order_status(pg, order_id, "returned")
    assert (info.value.fields["from"], info.value.fields["to"]) == ("delivered", "returned")
    assert info.value.fields["reason"] == "units not returned"
    assert one(pg, "SELECT status FROM app.orders WHERE id = %s", (order_id,)) == "delivered"


def test_lines_and_orders_past_the_bounds_are_refused_for_every_writer(pg: Conn) -> None:
    """A line holds at most 100,000 units and an order comes to at most 1,000,000,000.00
    before discounts (0025): the triggers refuse more from any writer, naming the field;
    an order written past them before (here: with the triggers off) can still lose lines
    and be cancelled."""
    customer = new_customer(pg)
    dear, _ = new_product(pg, stock=1_000_000_000, price="1000000.00")
    cheap, _ = new_product(pg, stock=1_000_000_000, price="0.01")

    def new_order() -> int:
        return int(
            one(
                pg,
                "INSERT INTO app.orders (customer_id, channel, payment_method)"
                " VALUES (%s, 'web', 'card') RETURNING id",
                (customer,),
            )
        )

    def line(order_id: int, line_no: int, product: int, quantity: int) -> None:
        pg.execute(
            "INSERT INTO app.order_items (order_id, line_no, product_id, quantity, unit_price)"
            " SELECT %s, %s, id, %s, unit_price FROM app.products WHERE id = %s",
            (order_id, line_no, quantity, product),
        )

    order_id = new_order()
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        line(order_id, 1, cheap, 100_001)
    assert info.value.fields == {
        "field": "quantity", "reason": "over the maximum", "index": 1, "value": 100_001,
        "max": 100_000,
    }  # fmt: skip

    order_id = new_order()
    line(order_id, 1, dear, 1_000)
    pg.commit()
    assert one(pg, "SELECT subtotal FROM app.orders WHERE id = %s", (order_id,)) == Decimal(
        "1000000000.00"
    )
    with refused(pg, BadUserInputError) as info:
        line(order_id, 2, cheap, 1)
    assert info.value.fields["field"] == "items"
    assert info.value.fields["value"] == Decimal("1000000000.01")

    pg.execute("SET LOCAL session_replication_role = replica")
    old = new_order()
    line(old, 1, dear, 1_000)
    line(old, 2, dear, 1_000)
    pg.execute("UPDATE app.products SET stock = 0 WHERE id = %s", (dear,))
    pg.execute(
        "UPDATE app.orders SET item_count = 2000, subtotal = 2000000000,"
        " total_amount = 2000000000 WHERE id = %s",
        (old,),
    )
    pg.commit()
    pg.execute("DELETE FROM app.order_items WHERE order_id = %s AND line_no = 2", (old,))
    set_order_status(pg, old, "cancelled")
    pg.commit()
    assert one(pg, "SELECT subtotal FROM app.orders WHERE id = %s", (old,)) == Decimal(
        "1000000000.00"
    )
