"""The rules of app.feedback (0028), held by the database for every API principal.

A hostile customer key once wrote reviews of products it never bought, a review of its own
pending order, a product that was not in the order it named, and 599 ten-thousand-character
complaints about one product in ten seconds (the product's cube: averageRating 1.02).
"""

from __future__ import annotations

import pytest

from db.errors import (
    BadUserInputError,
    ConflictError,
    ForbiddenError,
    LimitReachedError,
    NotFoundError,
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
)

DAILY = 20  # feedback a customer key gives in 24 hours (app.feedback_rules)


def _as(conn: Conn, role: str, customer: int | None = None) -> None:
    """The rest of the transaction runs as the API runs a principal (db/sql/0006)."""
    conn.execute(
        "SELECT set_config('role', %s, true), set_config('cdms.role', %s, true),"
        " set_config('cdms.customer_id', %s, true), set_config('cdms.actor', %s, true)",
        (
            "cdms_customer" if role == "customer" else "cdms_api",
            role,
            "" if customer is None else str(customer),
            f"test:{role}",
        ),
    )


def _give(
    conn: Conn,
    customer: int,
    *,
    order: int | None = None,
    product: int | None = None,
    kind: str = "review",
    rating: int = 4,
) -> int:
    return int(
        one(
            conn,
            "INSERT INTO app.feedback (customer_id, order_id, product_id, kind, rating, comment)"
            " VALUES (%s, %s, %s, %s, %s, 'text') RETURNING id",
            (customer, order, product, kind, rating),
        )
    )


def _count(conn: Conn, customer: int) -> int:
    conn.rollback()
    return int(one(conn, "SELECT count(*) FROM app.feedback WHERE customer_id = %s", (customer,)))


@pytest.fixture
def bought(pg: Conn) -> tuple[int, int, int, int]:
    """(customer, a product it bought and got, that delivered order, a product never bought)."""
    customer = new_customer(pg)
    product, _ = new_product(pg)
    other, _ = new_product(pg)
    order = delivered_order(pg, customer, [item(product, 1)])
    pg.commit()
    return customer, product, order, other


def test_a_named_product_must_be_in_the_named_order_for_every_writer(
    pg: Conn, bought: tuple[int, int, int, int]
) -> None:
    customer, _, order, other = bought
    for role in (None, "admin", "customer"):
        with refused(pg, BadUserInputError) as info:
            if role is not None:
                _as(pg, role, customer)
            _give(pg, customer, order=order, product=other, kind="complaint")
        assert info.value.fields["field"] == "product_id"
        assert info.value.fields["reason"] == "not in the order"
    assert _count(pg, customer) == 0


def test_a_review_is_of_a_product(pg: Conn, bought: tuple[int, int, int, int]) -> None:
    customer, _, order, _ = bought
    for role in ("admin", "customer"):
        with refused(pg, BadUserInputError) as info:
            _as(pg, role, customer)
            _give(pg, customer, order=order)
        assert info.value.fields["field"] == "product_id"
        assert info.value.fields["reason"] == "required for a review"


def test_a_customers_review_needs_the_product_bought_and_delivered(
    pg: Conn, bought: tuple[int, int, int, int]
) -> None:
    customer, product, _, other = bought
    with refused(pg, BadUserInputError) as info:  # never bought
        _as(pg, "customer", customer)
        _give(pg, customer, product=other)
    assert (info.value.fields["field"], info.value.fields["reason"]) == (
        "product_id",
        "not a verified purchase",
    )
    pending = place_order(pg, customer, [item(other, 1)])
    pg.commit()
    with refused(pg, BadUserInputError) as info:  # its own order, still pending
        _as(pg, "customer", customer)
        _give(pg, customer, order=pending, product=other)
    assert (info.value.fields["field"], info.value.fields["status"]) == ("order_id", "pending")
    with refused(pg, BadUserInputError):  # nor without naming the order
        _as(pg, "customer", customer)
        _give(pg, customer, product=other)
    assert _count(pg, customer) == 0

    _as(pg, "customer", customer)
    _give(pg, customer, product=product, rating=5)  # delivered: a verified purchase
    pg.commit()
    assert _count(pg, customer) == 1


def test_a_returned_order_is_still_a_verified_purchase(pg: Conn) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg)
    order = delivered_order(pg, customer, [item(product, 1)])
    pg.execute(
        "SELECT app.approve_return(app.request_return(%s, 1, 1, 'damaged'))", (order,)
    )  # its only unit back: the order is RETURNED
    pg.commit()
    assert one(pg, "SELECT status FROM app.orders WHERE id = %s", (order,)) == "returned"
    _as(pg, "customer", customer)
    _give(pg, customer, order=order, product=product, rating=1)
    pg.commit()
    assert _count(pg, customer) == 1


def test_one_review_per_customer_and_product(pg: Conn, bought: tuple[int, int, int, int]) -> None:
    customer, product, order, _ = bought
    _as(pg, "customer", customer)
    first = _give(pg, customer, product=product)
    pg.commit()
    second_order = delivered_order(pg, customer, [item(product, 1)])  # bought again
    pg.commit()
    for role, order_id in (("customer", None), ("customer", second_order), ("admin", order)):
        with refused(pg, ConflictError) as info:
            _as(pg, role, customer)
            _give(pg, customer, order=order_id, product=product)
        assert info.value.fields["field"] == "product_id"
        assert info.value.fields["reason"] == "already reviewed"
        assert info.value.fields["id"] == first
    # a complaint about it is not a second review
    _as(pg, "customer", customer)
    _give(pg, customer, order=second_order, product=product, kind="complaint", rating=2)
    pg.commit()
    assert _count(pg, customer) == 2


def test_a_customers_complaint_about_a_product_needs_it_ordered(
    pg: Conn, bought: tuple[int, int, int, int]
) -> None:
    customer, _, _, other = bought
    with refused(pg, BadUserInputError) as info:
        _as(pg, "customer", customer)
        _give(pg, customer, product=other, kind="complaint", rating=1)
    assert (info.value.fields["field"], info.value.fields["reason"]) == (
        "product_id",
        "not ordered by the customer",
    )
    pending = place_order(pg, customer, [item(other, 1)])  # ordered, not arrived: may complain
    pg.commit()
    _as(pg, "customer", customer)
    _give(pg, customer, order=pending, kind="complaint", rating=1)
    _give(pg, customer, product=other, kind="complaint", rating=1)
    _give(pg, customer, kind="complaint", rating=2)  # about the shop: no order, no product
    pg.commit()
    assert _count(pg, customer) == 3


def test_a_customer_key_gives_at_most_20_feedback_a_day(
    pg: Conn, bought: tuple[int, int, int, int]
) -> None:
    customer, product, order, _ = bought
    _as(pg, "customer", customer)
    for _ in range(DAILY):
        _give(pg, customer, order=order, product=product, kind="complaint", rating=1)
    pg.commit()
    with refused(pg, LimitReachedError) as info:
        _as(pg, "customer", customer)
        _give(pg, customer, kind="complaint", rating=1)
    assert info.value.code == "RATE_LIMITED"
    assert info.value.fields["field"] == "customer_id"
    assert info.value.fields["max"] == DAILY
    assert 86_000 < info.value.fields["retry_after"] <= 86_400
    assert _count(pg, customer) == DAILY
    # the shop's own staff are not bound (an agent typing in a phone call), nor the owner's
    # direct writes (bulk loads, the seed)
    _as(pg, "admin")
    _give(pg, customer, kind="complaint", rating=1)
    pg.commit()
    _give(pg, customer, kind="complaint", rating=1)
    pg.commit()
    assert _count(pg, customer) == DAILY + 2
    # a day later the customer may write again
    pg.execute(
        "UPDATE app.feedback SET created_at = created_at - interval '1 day' WHERE customer_id = %s",
        (customer,),
    )
    pg.commit()
    _as(pg, "customer", customer)
    _give(pg, customer, kind="complaint", rating=3)
    pg.commit()


def test_an_unknown_order_is_still_not_found(pg: Conn, bought: tuple[int, int, int, int]) -> None:
    customer, product, _, _ = bought
    with refused(pg, NotFoundError):
        _as(pg, "customer", customer)
        _give(pg, customer, order=987_654_321, product=product)


def test_owner_writes_keep_the_seeds_history(pg: Conn, bought: tuple[int, int, int, int]) -> None:
    """Rows written straight by the owner (the seed, bulk loads) are not held to the
    API's rules but for the order's own product: seeded data has two reviews of a product
    bought twice, and reviews written before 0028."""
    customer, product, order, other = bought
    _give(pg, customer, order=order, product=product)
    _give(pg, customer, order=order, product=product)
    _give(pg, customer, product=other)
    pg.commit()
    assert _count(pg, customer) == 3


def test_a_customer_writing_for_another_learns_nothing_of_its_orders(
    pg: Conn, bought: tuple[int, int, int, int]
) -> None:
    """Its order is not found (it cannot see it) or row-level security refuses the row
    (FORBIDDEN) before any rule looks: "not in the order" or "not a verified purchase" would
    tell which products another customer's order holds, or what it bought."""
    customer, product, order, other = bought
    stranger = new_customer(pg)
    pg.commit()
    for given_order, error in ((order, NotFoundError), (None, ForbiddenError)):
        for given in (product, other):
            with refused(pg, error):
                _as(pg, "customer", stranger)
                _give(pg, customer, order=given_order, product=given)
    assert _count(pg, customer) == 0
