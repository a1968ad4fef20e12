"""The floor under a customer's writes is no wider than its mutations (migration 0032).

A customer request's transaction runs as ``cdms_customer`` with row-level security, which
decides *which rows* a customer writes, not *which columns*: until 0032 the role held
INSERT and UPDATE on whole tables, so a statement no mutation makes (a resolver bug, a
forgotten check) could back-date its feedback (out of the 24-hour window of the daily
limit, 0028), rewrite what a feedback is about, close and rate its own support ticket,
insert an order already delivered or a return already approved, and set any product's
stock. These statements are refused now (42501: column privileges; CD006: stock moved
outside the procedures), and every write a customer's mutation makes still works.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tests.api.conftest import Shop
from tests.security.conftest import Parties


@dataclass(frozen=True)
class Rows:
    customer: int
    feedback: int  # a complaint of the customer's
    ticket: int  # an open ticket of the customer's
    delivered: int  # a delivered order of the customer's (line 1: product)
    product: int


@contextmanager
def as_customer(engine: Engine, shop: Shop, parties: Parties) -> Iterator[tuple[Connection, Rows]]:
    """Customer A's rows written as the owner, then a transaction run as a customer request
    runs (tests/security/test_rls.py ``as_principal``); all rolled back at the end."""
    a, product = parties.a, shop.products[1]
    with engine.connect() as conn, conn.begin() as trans:

        def one(sql: str, **params: object) -> int:
            return int(conn.execute(sa.text(sql), params).scalar_one())

        feedback = one(
            "INSERT INTO app.feedback (customer_id, kind, rating, comment)"
            " VALUES (:a, 'complaint', 3, 'late') RETURNING id",
            a=a,
        )
        ticket = one(
            "INSERT INTO app.support_tickets (customer_id, category, channel, subject)"
            " VALUES (:a, 'other', 'web', 'hello') RETURNING id",
            a=a,
        )
        delivered = one(
            "SELECT app.place_order(:a, jsonb_build_array(jsonb_build_object("
            "'product_id', CAST(:p AS bigint), 'quantity', 2)), 'web', 'card')",
            a=a,
            p=product,
        )
        for status in ("paid", "shipped", "delivered"):
            conn.execute(
                sa.text("UPDATE app.orders SET status = :s WHERE id = :o"),
                {"s": status, "o": delivered},
            )
        conn.execute(
            sa.text(
                "SELECT set_config('role', 'cdms_customer', true),"
                " set_config('cdms.role', 'customer', true),"
                " set_config('cdms.customer_id', :cid, true),"
                " set_config('cdms.actor', :actor, true)"
            ),
            {"cid": str(a), "actor": f"customer:{a}"},
        )
        yield conn, Rows(a, feedback, ticket, delivered, product)
        trans.rollback()


REFUSED = {
    # feedback: updateFeedback changes rating and comment, nothing else
    "backdate feedback": (
        "UPDATE app.feedback SET created_at = now() - interval '2 days' WHERE id = :fb",
        "42501",
    ),
    "feedback's customer": ("UPDATE app.feedback SET customer_id = :a WHERE id = :fb", "42501"),
    "feedback's kind": ("UPDATE app.feedback SET kind = 'complaint' WHERE id = :fb", "42501"),
    "feedback's product": ("UPDATE app.feedback SET product_id = NULL WHERE id = :fb", "42501"),
    "feedback inserted back-dated": (
        "INSERT INTO app.feedback (customer_id, kind, rating, created_at)"
        " VALUES (:a, 'complaint', 1, now() - interval '2 days')",
        "42501",
    ),
    # support tickets: a customer opens them; staff move and rate them
    "close and rate own ticket": (
        "UPDATE app.support_tickets SET status = 'closed', satisfaction = 5 WHERE id = :t",
        "42501",
    ),
    "ticket's subject": ("UPDATE app.support_tickets SET subject = 'x' WHERE id = :t", "42501"),
    "ticket inserted closed and rated": (
        "INSERT INTO app.support_tickets (customer_id, category, channel, subject, status,"
        " satisfaction) VALUES (:a, 'other', 'web', 'x', 'closed', 5)",
        "42501",
    ),
    "ticket inserted back-dated": (
        "INSERT INTO app.support_tickets (customer_id, category, channel, subject, opened_at)"
        " VALUES (:a, 'other', 'web', 'x', now() - interval '2 days')",
        "42501",
    ),
    # orders: placed pending, now, by app.place_order
    "order inserted delivered": (
        "INSERT INTO app.orders (customer_id, channel, payment_method, status)"
        " VALUES (:a, 'web', 'card', 'delivered')",
        "42501",
    ),
    "order inserted back-dated": (
        "INSERT INTO app.orders (customer_id, channel, payment_method, ordered_at)"
        " VALUES (:a, 'web', 'card', now() - interval '2 days')",
        "42501",
    ),
    # returns: requested by app.request_return; deciding is for service and admin
    "return inserted approved": (
        "INSERT INTO app.returns (order_id, line_no, quantity, reason, status, refund_amount,"
        " decided_at) VALUES (:o, 1, 1, 'damaged', 'approved', 1, now())",
        "42501",
    ),
    # products: stock moves only by placing or cancelling an order
    "stock emptied": ("UPDATE app.products SET stock = 0 WHERE id = :p", "CD006"),
    "stock inflated": ("UPDATE app.products SET stock = 1000000000 WHERE id = :p", "CD006"),
    "another column of a product": (
        "UPDATE app.products SET unit_price = 0 WHERE id = :p",
        "42501",
    ),
    # customers: only admins write them
    "own customer row": ("UPDATE app.customers SET city = 'x' WHERE id = :a", "42501"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_customer_write_no_mutation_makes_is_refused(
    sec_engine: Engine, sec_shop: Shop, parties: Parties, case: str
) -> None:
    sql, sqlstate = REFUSED[case]
    with as_customer(sec_engine, sec_shop, parties) as (conn, rows):
        params = {"a": rows.customer, "fb": rows.feedback, "t": rows.ticket,
                  "o": rows.delivered, "p": rows.product}  # fmt: skip
        with pytest.raises(sa.exc.DBAPIError) as exc:
            conn.execute(sa.text(sql), params)
    assert exc.value.orig.sqlstate == sqlstate, (case, exc.value.orig)  # type: ignore[union-attr]


def _stock(conn: Connection, product: int) -> int:
    return int(
        conn.execute(
            sa.text("SELECT stock FROM app.products WHERE id = :p"), {"p": product}
        ).scalar_one()
    )


def test_a_customers_mutations_still_write(
    sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """What placeOrder, cancelling, requestReturn, openSupportTicket, submitFeedback and
    updateFeedback run for a customer key, run as the customer role."""
    with as_customer(sec_engine, sec_shop, parties) as (conn, rows):

        def one(sql: str, **params: object) -> object:
            return conn.execute(sa.text(sql), params).scalar_one()

        before = _stock(conn, rows.product)
        order = one(
            "SELECT app.place_order(:a, jsonb_build_array(jsonb_build_object("
            "'product_id', CAST(:p AS bigint), 'quantity', 3)), 'web', 'card')",
            a=rows.customer,
            p=rows.product,
        )
        assert _stock(conn, rows.product) == before - 3
        # the procedure's leave to move stock ends with it
        conn.execute(sa.text("SAVEPOINT direct"))
        with pytest.raises(sa.exc.DBAPIError) as exc:
            conn.execute(
                sa.text("UPDATE app.products SET stock = stock + 3 WHERE id = :p"),
                {"p": rows.product},
            )
        assert exc.value.orig.sqlstate == "CD006"  # type: ignore[union-attr]
        conn.execute(sa.text("ROLLBACK TO SAVEPOINT direct"))
        status = one("SELECT (app.set_order_status(:o, 'cancelled')).status", o=order)
        assert status == "cancelled"
        assert _stock(conn, rows.product) == before

        returned = one(
            "SELECT app.request_return(:o, 1, 1, 'damaged', 'cracked')", o=rows.delivered
        )
        assert one("SELECT status FROM app.returns WHERE id = :r", r=returned) == "requested"
        ticket = one("SELECT app.open_ticket(:a, 'delivery', 'high', 'web', 'late', :o)",
                     a=rows.customer, o=rows.delivered)  # fmt: skip
        assert one("SELECT status FROM app.support_tickets WHERE id = :t", t=ticket) == "open"
        # submitFeedback inserts exactly these columns, updateFeedback sets these two
        feedback = one(
            "INSERT INTO app.feedback (customer_id, order_id, product_id, kind, rating, comment)"
            " VALUES (:a, :o, :p, 'complaint', 4, 'dented') RETURNING id",
            a=rows.customer,
            o=rows.delivered,
            p=rows.product,
        )
        changed = conn.execute(
            sa.text(
                "UPDATE app.feedback SET rating = 2, comment = NULL WHERE id = :f"
                " RETURNING rating, comment, updated_at IS NOT NULL"
            ),
            {"f": feedback},
        ).one()
        assert tuple(changed) == (2, None, True)
