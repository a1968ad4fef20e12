"""Returns: request, approve (restock, refund, order returned), reject; and what is refused."""

from __future__ import annotations

import threading
from datetime import datetime
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
    assert rejected["decided_by"] == "admin"
    # the shop's note has a column of its own: the customer's comment is kept (probe 22, M1)
    assert rejected["decision_comment"] == "worn" and rejected["comment"] == "a comment"
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


# ---- a line's refunds add up to at most what was paid for it (probe 6, L1) ----------------


@pytest.fixture
def odd_line(pg: Conn) -> dict[str, int]:
    """A delivered order of one line whose total is not a multiple of its quantity in
    cents: 3 x 10.00 with 0.01 off = 29.99 (a third of it is 9.9967)."""
    customer = new_customer(pg)
    shirt, _ = new_product(pg, stock=10, price="10.00")
    order_id = delivered_order(pg, customer, [item(shirt, 3, "0.01")])
    pg.commit()
    return {"order": order_id, "shirt": shirt}


def refunds_of(conn: Conn, order_id: int) -> Decimal:
    return Decimal(
        one(
            conn,
            "SELECT coalesce(sum(refund_amount), 0) FROM app.returns"
            " WHERE order_id = %s AND status = 'approved'",
            (order_id,),
        )
    )


def test_a_line_returned_unit_by_unit_refunds_exactly_what_was_paid(
    pg: Conn, odd_line: dict[str, int]
) -> None:
    """Rounding each unit's third up refunded 10.00 three times: 30.00 for 29.99 paid.
    Each return refunds its units' share of the line, so that the shares add up to it."""
    order_id = odd_line["order"]
    refunds = [approve(pg, request(pg, order_id, 1, 1))["refund_amount"] for _ in range(3)]
    pg.commit()
    assert refunds == [Decimal("10.00"), Decimal("9.99"), Decimal("10.00")]
    assert refunds_of(pg, order_id) == Decimal("29.99")
    assert one(pg, "SELECT status FROM app.orders WHERE id = %s", (order_id,)) == "returned"


def test_a_line_rounded_down_is_refunded_whole_too(pg: Conn) -> None:
    """3 x 10.00 with 20.00 off = 10.00: thirds of 3.33 refunded 9.99; now 10.00."""
    customer = new_customer(pg)
    shirt, _ = new_product(pg, stock=10, price="10.00")
    order_id = delivered_order(pg, customer, [item(shirt, 3, "20.00")])
    pg.commit()
    refunds = [approve(pg, request(pg, order_id, 1, 1))["refund_amount"] for _ in range(3)]
    pg.commit()
    assert refunds == [Decimal("3.33"), Decimal("3.34"), Decimal("3.33")]
    assert refunds_of(pg, order_id) == Decimal("10.00")


def test_an_explicit_refund_is_kept_within_what_is_left_of_the_line(
    pg: Conn, odd_line: dict[str, int]
) -> None:
    order_id = odd_line["order"]
    approve(pg, request(pg, order_id, 1, 1), "10.00")
    second = request(pg, order_id, 1, 1)
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        approve(pg, second, "10.00")  # 19.99 paid for two units, 10.00 refunded for one
    assert info.value.fields["field"] == "refund_amount"
    assert info.value.fields["reason"] == "out of range"
    assert Decimal(str(info.value.fields["max"])) == Decimal("9.99")
    assert one(pg, "SELECT status FROM app.returns WHERE id = %s", (second,)) == "requested"
    assert approve(pg, second, "9.99")["refund_amount"] == Decimal("9.99")
    third = request(pg, order_id, 1, 1)
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        approve(pg, third, "10.01")
    assert Decimal(str(info.value.fields["max"])) == Decimal("10.00")
    approve(pg, third)
    pg.commit()
    assert refunds_of(pg, order_id) == Decimal("29.99")


def test_a_refund_withheld_stays_withheld(pg: Conn, odd_line: dict[str, int]) -> None:
    """The shop refunded nothing for the first unit (a restocking fee, say): the last
    unit's refund is its own share, not what the first one left unpaid."""
    order_id = odd_line["order"]
    approve(pg, request(pg, order_id, 1, 1), "0.00")
    refunds = [approve(pg, request(pg, order_id, 1, 1))["refund_amount"] for _ in range(2)]
    pg.commit()
    assert refunds == [Decimal("9.99"), Decimal("10.00")]
    assert refunds_of(pg, order_id) == Decimal("19.99")


def test_a_line_refunded_past_its_total_before_refunds_nothing_more(
    pg: Conn, odd_line: dict[str, int]
) -> None:
    """Refunds approved before the cap (30.00 for 29.99 would have been two at 10.00 and
    one more): what is left bounds the next, down to 0."""
    order_id = odd_line["order"]
    approve(pg, request(pg, order_id, 1, 2))
    pg.execute(
        "UPDATE app.returns SET refund_amount = 29.99 WHERE order_id = %s AND status = 'approved'",
        (order_id,),
    )
    last = request(pg, order_id, 1, 1)
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        approve(pg, last, "0.01")
    assert Decimal(str(info.value.fields["max"])) == Decimal("0.00")
    assert approve(pg, last)["refund_amount"] == Decimal("0.00")
    pg.commit()
    assert refunds_of(pg, order_id) == Decimal("29.99")


# ---- a customer asks for a return within 30 days of delivery (probe 6, L3) ------------------


def delivered_days_ago(conn: Conn, order_id: int, days: int) -> None:
    """The order's timestamps moved back so that it was delivered ``days`` days ago."""
    conn.execute(
        "UPDATE app.orders SET ordered_at = ordered_at - make_interval(days => %(d)s),"
        " paid_at = paid_at - make_interval(days => %(d)s),"
        " shipped_at = shipped_at - make_interval(days => %(d)s),"
        " delivered_at = delivered_at - make_interval(days => %(d)s) WHERE id = %(o)s",
        {"d": days, "o": order_id},
    )


def as_role(conn: Conn, role: str, customer_id: int | None = None) -> None:
    conn.execute("SELECT set_config('cdms.role', %s, true)", (role,))
    if customer_id is not None:
        conn.execute("SELECT set_config('cdms.customer_id', %s, true)", (str(customer_id),))


@pytest.mark.parametrize("reason", ["changed_mind", "defective", "damaged"])
def test_a_customer_asks_for_a_return_within_30_days_of_delivery(
    pg: Conn, bought: dict[str, int], reason: str
) -> None:
    order_id = bought["order"]
    delivered_days_ago(pg, order_id, 31)
    pg.commit()
    window_end = one(pg, "SELECT delivered_at + interval '30 days' FROM app.orders WHERE id = %s",
                     (order_id,))  # fmt: skip
    as_role(pg, "customer", bought["customer"])
    with refused(pg, BadUserInputError) as info:
        request(pg, order_id, 1, 1, reason)
    assert info.value.fields["field"] == "order_id"
    assert info.value.fields["reason"] == "return window closed"
    assert info.value.fields["days"] == 30
    # to the second, in UTC ("2026-01-09T10:12:33Z")
    assert info.value.fields["window_end"].endswith("Z")
    assert datetime.fromisoformat(info.value.fields["window_end"]) == window_end.replace(
        microsecond=0
    )
    assert "30 days" in info.value.message
    assert returns_of(pg, order_id) == 0


def test_within_the_window_a_customers_request_is_taken(pg: Conn, bought: dict[str, int]) -> None:
    delivered_days_ago(pg, bought["order"], 29)
    pg.commit()
    as_role(pg, "customer", bought["customer"])
    request(pg, bought["order"], 1, 1, "changed_mind")
    pg.commit()
    assert returns_of(pg, bought["order"]) == 1


@pytest.mark.parametrize("role", ["service", "admin", None])
def test_the_shops_keys_and_the_owner_take_a_late_return(
    pg: Conn, bought: dict[str, int], role: str | None
) -> None:
    """Exceptions (a warranty claim, goodwill) are the shop's to make; the seed, as the
    owner, writes returns of orders delivered years ago."""
    delivered_days_ago(pg, bought["order"], 3 * 365)
    pg.commit()
    if role is not None:
        as_role(pg, role)
    request(pg, bought["order"], 1, 1, "changed_mind")
    pg.commit()
    assert returns_of(pg, bought["order"]) == 1


# ---- an order is RETURNED by its returns only (probe 12, finding 3) --------------------------


def _order_state(conn: Conn, order_id: int) -> tuple[Any, ...]:
    state = conn.execute(
        "SELECT o.*, (SELECT count(*) FROM app.order_status_history WHERE order_id = o.id)"
        " FROM app.orders AS o WHERE o.id = %s",
        (order_id,),
    ).fetchone()
    assert state is not None
    return state


@pytest.mark.parametrize("role", ["service", "admin", None])
@pytest.mark.parametrize("writer", ["procedure", "plain UPDATE"])
def test_an_order_is_returned_only_once_every_unit_came_back(
    pg: Conn, bought: dict[str, int], role: str | None, writer: str
) -> None:
    """delivered -> returned was legal for every writer: an order could be RETURNED with
    no return, no refund and no restock, and then none could be asked for. It is refused
    (CD002) unless approved returns cover every unit of every line, the state in which
    app.approve_return moves the order itself: so every writer, the owner too, leaves the
    move to the returns."""
    order_id = bought["order"]  # 3 shirts and a cap
    before = _order_state(pg, order_id)
    stocks = (stock(pg, bought["shirt"]), stock(pg, bought["cap"]))
    pg.rollback()

    def refused_with(returned: int) -> None:
        with refused(pg, InvalidTransitionError) as info:
            if role is not None:
                as_role(pg, role)
            if writer == "procedure":
                set_order_status(pg, order_id, "returned")
            else:
                pg.execute("UPDATE app.orders SET status = 'returned' WHERE id = %s", (order_id,))
        assert info.value.fields == {
            "entity": "order", "id": order_id, "from": "delivered", "to": "returned",
            "reason": "units not returned", "units": 4, "returned_units": returned,
        }  # fmt: skip

    refused_with(0)
    assert _order_state(pg, order_id) == before
    assert (stock(pg, bought["shirt"]), stock(pg, bought["cap"])) == stocks
    assert returns_of(pg, order_id) == 0

    # every unit asked back, all but the cap approved; a rejected return counts for nothing
    shirts = request(pg, order_id, 1, 3)
    cap = request(pg, order_id, 2, 1)
    pg.commit()
    approve(pg, shirts)
    pg.commit()
    refused_with(3)
    one(pg, "SELECT app.reject_return(%s)", (cap,))
    pg.commit()
    refused_with(3)
    assert one(pg, "SELECT status FROM app.orders WHERE id = %s", (order_id,)) == "delivered"

    # the last unit approved: approve_return moves the order (through set_order_status)
    approve(pg, request(pg, order_id, 2, 1))
    pg.commit()
    assert one(pg, "SELECT status FROM app.orders WHERE id = %s", (order_id,)) == "returned"
    assert (stock(pg, bought["shirt"]), stock(pg, bought["cap"])) == (10, 10)
