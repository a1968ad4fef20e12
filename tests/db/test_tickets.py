"""Support tickets (open, status changes, satisfaction) and feedback ownership."""

from __future__ import annotations

from typing import Any

import pytest

from db.errors import BadUserInputError, InvalidTransitionError, NotFoundError
from tests.db.shop import Conn, item, new_customer, new_product, one, place_order, refused, row


def open_ticket(conn: Conn, customer: int, order_id: int | None = None, **kw: Any) -> int:
    args = {"category": "delivery", "priority": "high", "channel": "email", "subject": "late"}
    args.update(kw)
    return int(
        one(
            conn,
            "SELECT app.open_ticket(%s, %s, %s, %s, %s, %s)",
            (
                customer,
                args["category"],
                args["priority"],
                args["channel"],
                args["subject"],
                order_id,
            ),
        )
    )


def set_status(
    conn: Conn, ticket: int, status: str, satisfaction: int | None = None
) -> dict[str, Any]:
    return row(
        conn,
        "SELECT * FROM app.set_ticket_status(%s, %s, %s)",
        (ticket, status, satisfaction),
    )


def tickets_of(conn: Conn, customer: int) -> int:
    return int(
        one(conn, "SELECT count(*) FROM app.support_tickets WHERE customer_id = %s", (customer,))
    )


def test_open_ticket_records_who_opened_it(pg: Conn) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg)
    order_id = place_order(pg, customer, [item(product, 1)])
    pg.execute("SET LOCAL cdms.actor = 'customer:3'")
    ticket = open_ticket(pg, customer, order_id)
    pg.commit()
    found = row(pg, "SELECT * FROM app.support_tickets WHERE id = %s", (ticket,))
    assert (found["status"], found["order_id"], found["opened_by"]) == (
        "open",
        order_id,
        "customer:3",
    )
    assert found["resolved_at"] is None and found["satisfaction"] is None


def test_resolve_reopen_close_lifecycle(pg: Conn) -> None:
    customer = new_customer(pg)
    ticket = open_ticket(pg, customer)
    pg.commit()

    pg.execute("SET LOCAL cdms.actor = 'agent:5'")
    t = set_status(pg, ticket, "in_progress")
    assert (t["status"], t["resolved_at"], t["updated_by"]) == ("in_progress", None, "agent:5")
    t = set_status(pg, ticket, "resolved", 2)
    assert t["resolved_at"] is not None and t["satisfaction"] == 2
    pg.commit()

    t = set_status(pg, ticket, "open")  # reopening voids the resolution and its rating
    assert (t["status"], t["resolved_at"], t["satisfaction"]) == ("open", None, None)
    pg.commit()
    t = set_status(pg, ticket, "resolved")
    assert t["resolved_at"] is not None and t["satisfaction"] is None
    t = set_status(pg, ticket, "closed", 5)
    assert t["closed_at"] is not None and t["resolved_at"] is not None
    assert t["satisfaction"] == 5
    pg.commit()

    for status in ("open", "in_progress", "resolved"):
        with refused(pg, InvalidTransitionError) as info:
            set_status(pg, ticket, status)
        assert info.value.fields == {
            "entity": "ticket",
            "id": ticket,
            "from": "closed",
            "to": status,
        }
        with refused(pg, InvalidTransitionError):  # a plain UPDATE too
            pg.execute("UPDATE app.support_tickets SET status = %s WHERE id = %s", (status, ticket))
    assert one(pg, "SELECT status FROM app.support_tickets WHERE id = %s", (ticket,)) == "closed"


def test_closing_an_open_ticket_stamps_both_times(pg: Conn) -> None:
    ticket = open_ticket(pg, new_customer(pg))
    t = set_status(pg, ticket, "closed")
    assert t["resolved_at"] is not None and t["closed_at"] is not None
    pg.rollback()


@pytest.mark.parametrize(
    ("status", "satisfaction"),
    [("in_progress", 3), ("open", 4), ("resolved", 0), ("resolved", 6), ("closed", -1)],
)
def test_satisfaction_is_1_to_5_and_only_for_resolved_or_closed(
    pg: Conn, status: str, satisfaction: int
) -> None:
    ticket = open_ticket(pg, new_customer(pg))
    if status == "open":
        set_status(pg, ticket, "in_progress")
    pg.commit()
    before = row(pg, "SELECT * FROM app.support_tickets WHERE id = %s", (ticket,))
    pg.rollback()
    with refused(pg, BadUserInputError) as info:
        set_status(pg, ticket, status, satisfaction)
    assert info.value.fields["field"] == "satisfaction"
    assert row(pg, "SELECT * FROM app.support_tickets WHERE id = %s", (ticket,)) == before


def test_satisfaction_on_an_open_ticket_is_refused_for_plain_writes(pg: Conn) -> None:
    ticket = open_ticket(pg, new_customer(pg))
    pg.commit()
    with refused(pg, BadUserInputError):
        pg.execute("UPDATE app.support_tickets SET satisfaction = 4 WHERE id = %s", (ticket,))
    assert one(pg, "SELECT satisfaction FROM app.support_tickets WHERE id = %s", (ticket,)) is None


def test_set_ticket_status_refuses_unknown_tickets_statuses_and_repeats(pg: Conn) -> None:
    ticket = open_ticket(pg, new_customer(pg))
    pg.commit()
    with refused(pg, NotFoundError) as nf:
        set_status(pg, 2**62, "resolved")
    assert nf.value.fields == {"entity": "ticket", "id": 2**62}
    with refused(pg, BadUserInputError) as bad:
        set_status(pg, ticket, "escalated")
    assert bad.value.fields["field"] == "status"
    with refused(pg, InvalidTransitionError):
        set_status(pg, ticket, "open")
    assert one(pg, "SELECT status FROM app.support_tickets WHERE id = %s", (ticket,)) == "open"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"category": "weather"}, "category"),
        ({"priority": "whenever"}, "priority"),
        ({"channel": "pigeon"}, "channel"),
        ({"subject": "   "}, "subject"),
        ({"subject": None}, "subject"),
    ],
)
def test_open_ticket_refuses_bad_fields(pg: Conn, overrides: dict[str, Any], field: str) -> None:
    customer = new_customer(pg)
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        open_ticket(pg, customer, **overrides)
    assert info.value.fields["field"] == field
    assert tickets_of(pg, customer) == 0


def test_a_ticket_about_an_order_must_be_the_customers_own(pg: Conn) -> None:
    owner, stranger = new_customer(pg), new_customer(pg)
    product, _ = new_product(pg)
    order_id = place_order(pg, owner, [item(product, 1)])
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        open_ticket(pg, stranger, order_id)
    assert info.value.fields["field"] == "order_id"
    with refused(pg, NotFoundError) as nf:
        open_ticket(pg, owner, 2**62)
    assert nf.value.fields == {"entity": "order", "id": 2**62}
    with refused(pg, NotFoundError) as nf:
        open_ticket(pg, 2**62)
    assert nf.value.fields == {"entity": "customer", "id": 2**62}
    assert tickets_of(pg, stranger) == tickets_of(pg, owner) == 0


# ---- feedback ---------------------------------------------------------------------------


def _feedback(conn: Conn, customer: int, order_id: int | None, rating: int = 4) -> int:
    return int(
        one(
            conn,
            "INSERT INTO app.feedback (customer_id, order_id, rating, kind, comment)"
            " VALUES (%s, %s, %s, 'review', 'ok') RETURNING id",
            (customer, order_id, rating),
        )
    )


def _feedback_of(conn: Conn, customer: int) -> int:
    return int(one(conn, "SELECT count(*) FROM app.feedback WHERE customer_id = %s", (customer,)))


def test_feedback_about_an_order_must_be_the_customers_own(pg: Conn) -> None:
    owner, stranger = new_customer(pg), new_customer(pg)
    product, _ = new_product(pg)
    order_id = place_order(pg, owner, [item(product, 1)])
    own = _feedback(pg, owner, order_id)
    _feedback(pg, stranger, None)  # feedback without an order is fine
    pg.commit()

    with refused(pg, BadUserInputError) as info:
        _feedback(pg, stranger, order_id)
    assert info.value.fields["field"] == "order_id"
    with refused(pg, BadUserInputError):  # moving it onto someone else is refused as well
        pg.execute("UPDATE app.feedback SET customer_id = %s WHERE id = %s", (stranger, own))
    assert (_feedback_of(pg, owner), _feedback_of(pg, stranger)) == (1, 1)


@pytest.mark.parametrize("rating", [0, 6])
def test_feedback_rating_is_1_to_5(pg: Conn, rating: int) -> None:
    customer = new_customer(pg)
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        _feedback(pg, customer, None, rating)
    assert info.value.fields["field"] == "rating"
    assert _feedback_of(pg, customer) == 0


@pytest.mark.parametrize(
    ("subject", "message", "reason"),
    [
        ("", "subject must not be empty", "empty"),
        ("   ", "subject must not be blank", "blank"),
        (None, "subject is required", "required"),
        ("s" * 201, f"invalid subject: {'s' * 64}… (201 characters)", "invalid value"),
    ],
)
def test_a_refused_subject_is_told_without_echoing_it_whole(
    pg: Conn, subject: str | None, message: str, reason: str
) -> None:
    """app.raise_bad_column quotes at most 64 characters of the value (a subject of 900,000
    characters came back twice), and says what is wrong with a missing or empty one."""
    customer = new_customer(pg)
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        open_ticket(pg, customer, subject=subject)
    assert info.value.message == message
    assert info.value.fields["reason"] == reason
    value = info.value.fields["value"]
    assert value == (subject if subject is None or len(subject) <= 64 else "s" * 64 + "…")
    assert tickets_of(pg, customer) == 0
