"""Returns: request, approve (restock, refund, order returned), reject; and what is refused."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from db.config import to_libpq_url
from db.errors import (
    BadUserInputError,
    ConflictError,
    InvalidTransitionError,
    NotFoundError,
    from_db_error,
)
from tests.db.shop import (
    Conn,
    delivered_order,
    item,
    new_customer,
    new_product,
    one,
    place_order,
    refused,
    row,
    set_order_status,
    stock,
)


def request(conn: Conn, order_id: int, line_no: int, quantity: int, reason: str = "damaged") -> int:
    return int(
        one(
            conn,
            "SELECT app.request_return(%s, %s, %s, %s, 'a comment')",
            (order_id, line_no, quantity, reason),
        )
    )


def approve(conn: Conn, return_id: int, refund: str | None = None) -> dict[str, Any]:
    return row(
        conn,
        "SELECT * FROM app.approve_return(%s, %s)",
        (return_id, Decimal(refund) if refund is not None else None),
    )


def returns_of(conn: Conn, order_id: int) -> int:
    return int(one(conn, "SELECT count(*) FROM app.returns WHERE order_id = %s", (order_id,)))


@pytest.fixture
def bought(pg: Conn) -> dict[str, int]:
    """A delivered order: line 1 = 3 x 10.00 with 3.00 off, line 2 = 1 x 4.00."""
    customer = new_customer(pg)
    shirt, _ = new_product(pg, stock=10, price="10.00")
    cap, _ = new_product(pg, stock=10, price="4.00")
    order_id = delivered_order(pg, customer, [item(shirt, 3, "3.00"), item(cap, 1)])
    pg.commit()
    return {"customer": customer, "order": order_id, "shirt": shirt, "cap": cap}


def test_request_then_approve_restocks_and_refunds_the_net_price(
    pg: Conn, bought: dict[str, int]
) -> None:
    pg.execute("SET LOCAL cdms.actor = 'customer:7'")
    return_id = request(pg, bought["order"], 1, 2)
    pg.commit()
    requested = row(pg, "SELECT * FROM app.returns WHERE id = %s", (return_id,))
    assert requested["status"] == "requested"
    assert requested["customer_id"] == bought["customer"]  # filled from the order
    assert requested["requested_by"] == "customer:7"
    assert requested["decided_at"] is None
    assert stock(pg, bought["shirt"]) == 7  # a request alone does not restock
    pg.rollback()

    pg.execute("SET LOCAL cdms.actor = 'admin'")
    approved = approve(pg, return_id)
    pg.commit()
    assert approved["status"] == "approved"
    assert approved["refund_amount"] == Decimal("18.00")  # (30.00 - 3.00) x 2 / 3
    assert approved["decided_by"] == "admin"
    assert approved["decided_at"] is not None
    assert stock(pg, bought["shirt"]) == 9
    assert one(pg, "SELECT status FROM app.orders WHERE id = %s", (bought["order"],)) == (
        "delivered"
    )


def test_an_explicit_refund_is_kept_within_what_was_paid(pg: Conn, bought: dict[str, int]) -> None:
    return_id = request(pg, bought["order"], 1, 1)
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        approve(pg, return_id, "9.01")  # paid 9.00 for one unit
    assert info.value.fields["field"] == "refund_amount"
    with refused(pg, BadUserInputError):
        approve(pg, return_id, "-1")
    assert one(pg, "SELECT status FROM app.returns WHERE id = %s", (return_id,)) == "requested"
    assert stock(pg, bought["shirt"]) == 7
    assert approve(pg, return_id, "5.00")["refund_amount"] == Decimal("5.00")
    pg.commit()


def test_a_refund_with_a_third_decimal_is_told_as_such(pg: Conn, bought: dict[str, int]) -> None:
    """1.001 is within what was paid: the refusal is about its third decimal, not a range."""
    return_id = request(pg, bought["order"], 1, 1)
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        approve(pg, return_id, "1.001")
    assert info.value.fields["reason"] == "too many decimals"
    assert "more than 2 decimals" in info.value.message
    assert "between" not in info.value.message
    assert one(pg, "SELECT status FROM app.returns WHERE id = %s", (return_id,)) == "requested"
    with refused(pg, BadUserInputError) as info:  # past what was paid: the range, as before
        approve(pg, return_id, "9.01")
    assert info.value.fields["reason"] == "out of range"


def test_returning_every_unit_returns_the_order(pg: Conn, bought: dict[str, int]) -> None:
    order_id = bought["order"]
    first = request(pg, order_id, 1, 1)
    second = request(pg, order_id, 1, 2)
    cap = request(pg, order_id, 2, 1)
    pg.commit()
    approve(pg, first)
    approve(pg, cap)
    pg.commit()
    assert one(pg, "SELECT status FROM app.orders WHERE id = %s", (order_id,)) == "delivered"

    approve(pg, second)
    pg.commit()
    order = row(pg, "SELECT status, returned_at FROM app.orders WHERE id = %s", (order_id,))
    assert order["status"] == "returned" and order["returned_at"] is not None
    last = pg.execute(
        "SELECT from_status, to_status FROM app.order_status_history"
        " WHERE order_id = %s ORDER BY id DESC LIMIT 1",
        (order_id,),
    ).fetchone()
    assert last == ("delivered", "returned")
    assert (stock(pg, bought["shirt"]), stock(pg, bought["cap"])) == (10, 10)


def test_never_more_than_bought_minus_already_requested_or_approved(
    pg: Conn, bought: dict[str, int]
) -> None:
    order_id = bought["order"]
    approve(pg, request(pg, order_id, 1, 1))
    pending = request(pg, order_id, 1, 1)
    pg.commit()

    with refused(pg, BadUserInputError) as info:
        request(pg, order_id, 1, 2)  # 3 bought, 1 approved, 1 requested
    assert info.value.fields == {
        "field": "quantity",
        "reason": "exceeds the returnable quantity",
        "wanted": 2,
        "returnable": 1,
    }
    assert returns_of(pg, order_id) == 2

    # a rejected request frees its units again
    pg.execute("SELECT app.reject_return(%s)", (pending,))
    request(pg, order_id, 1, 2)
    pg.commit()
    assert returns_of(pg, order_id) == 3


def test_the_quantity_rule_holds_for_plain_inserts_too(pg: Conn, bought: dict[str, int]) -> None:
    with refused(pg, BadUserInputError):
        pg.execute(
            "INSERT INTO app.returns (order_id, line_no, reason, quantity)"
            " VALUES (%s, 2, 'damaged', 2)",
            (bought["order"],),
        )
    assert returns_of(pg, bought["order"]) == 0


@pytest.mark.parametrize(
    ("line_no", "quantity", "reason", "error", "field"),
    [
        (1, 0, "damaged", BadUserInputError, "quantity"),
        (1, -2, "damaged", BadUserInputError, "quantity"),
        (1, 4, "damaged", BadUserInputError, "quantity"),
        (1, 1, "bored", BadUserInputError, "reason"),
        (9, 1, "damaged", NotFoundError, None),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(
    pg: Conn,
    bought: dict[str, int],
    line_no: int,
    quantity: int,
    reason: str,
    error: type[Exception],
    field: str | None,
) -> None:
    with refused(pg, error) as info:  # type: ignore[arg-type]
        request(pg, bought["order"], line_no, quantity, reason)
    if field is not None:
        assert info.value.fields["field"] == field
    else:
        assert info.value.fields["entity"] == "order_item"
    assert returns_of(pg, bought["order"]) == 0


@pytest.mark.parametrize("status", ["pending", "paid", "shipped", "cancelled"])
def test_only_delivered_orders_can_be_returned(pg: Conn, status: str) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg)
    order_id = place_order(pg, customer, [item(product, 1)])
    path = {"pending": [], "paid": ["paid"], "shipped": ["paid", "shipped"]}
    for step in path.get(status, [status]):
        set_order_status(pg, order_id, step)
    pg.commit()
    with refused(pg, ConflictError) as info:
        request(pg, order_id, 1, 1)
    assert info.value.fields["status"] == status
    assert returns_of(pg, order_id) == 0


def test_unknown_order_or_return_is_not_found(pg: Conn) -> None:
    with refused(pg, NotFoundError) as info:
        request(pg, 2**62, 1, 1)
    assert info.value.fields == {"entity": "order", "id": 2**62}
    with refused(pg, NotFoundError) as info:
        approve(pg, 2**62)
    assert info.value.fields == {"entity": "return", "id": 2**62}
    with refused(pg, NotFoundError):
        pg.execute("SELECT app.reject_return(%s)", (2**62,))


def test_reject_decides_without_restocking_and_decisions_are_final(
    pg: Conn, bought: dict[str, int]
) -> None:
    rejected_id = request(pg, bought["order"], 1, 1)
    approved_id = request(pg, bought["order"], 2, 1)
    pg.execute("SET LOCAL cdms.actor = 'admin'")
    rejected = row(pg, "SELECT * FROM app.reject_return(%s, 'worn')", (rejected_id,))
    approve(pg, approved_id)
    pg.commit()
    assert rejected["status"] == "rejected"
    assert rejected["comment"] == "worn" and rejected["decided_by"] == "admin"
    assert rejected["refund_amount"] is None
    assert stock(pg, bought["shirt"]) == 7

    for return_id, was in ((rejected_id, "rejected"), (approved_id, "approved")):
        with refused(pg, InvalidTransitionError) as info:
            approve(pg, return_id)
        assert info.value.fields == {
            "entity": "return",
            "id": return_id,
            "from": was,
            "to": "approved",
        }
        with refused(pg, InvalidTransitionError):
            pg.execute("SELECT app.reject_return(%s)", (return_id,))
        with refused(pg, InvalidTransitionError):  # a plain UPDATE too
            pg.execute("UPDATE app.returns SET status = 'requested' WHERE id = %s", (return_id,))
    assert stock(pg, bought["shirt"]) == 7
    assert stock(pg, bought["cap"]) == 10


def test_a_return_names_the_orders_customer(pg: Conn, bought: dict[str, int]) -> None:
    stranger = new_customer(pg)
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        pg.execute(
            "INSERT INTO app.returns (order_id, line_no, customer_id, reason, quantity)"
            " VALUES (%s, 1, %s, 'damaged', 1)",
            (bought["order"], stranger),
        )
    assert info.value.fields["field"] == "order_id"
    assert returns_of(pg, bought["order"]) == 0


def test_concurrent_plain_inserts_for_one_line_never_exceed_it(database_url: str, pg: Conn) -> None:
    """The quantity trigger locks the line, so racing requests are counted one after another."""
    customer = new_customer(pg)
    product, _ = new_product(pg, stock=10)
    order_id = delivered_order(pg, customer, [item(product, 2)])
    pg.commit()
    start = threading.Barrier(6)
    outcomes: list[object] = []

    def claim() -> None:
        with psycopg.connect(to_libpq_url(database_url)) as conn:
            start.wait()
            try:
                # plain inserts: request_return would serialise on the order lock anyway
                new_id = one(
                    conn,
                    "INSERT INTO app.returns (order_id, line_no, reason, quantity)"
                    " VALUES (%s, 1, 'damaged', 1) RETURNING id",
                    (order_id,),
                )
                outcomes.append(int(new_id))
                conn.commit()
            except psycopg.Error as exc:
                conn.rollback()
                outcomes.append(from_db_error(exc))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(isinstance(o, int) for o in outcomes) == 2
    assert sum(isinstance(o, BadUserInputError) for o in outcomes) == 4
    assert returns_of(pg, order_id) == 2
