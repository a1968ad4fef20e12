"""Triggers that hold for every writer: updated_at, order totals, status NOTIFY."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from db.config import to_libpq_url
from tests.db.shop import (
    Conn,
    delivered_order,
    item,
    new_customer,
    new_product,
    one,
    place_order,
    row,
    set_order_status,
)


def _totals(conn: Conn, order_id: int) -> tuple[Any, ...]:
    found = conn.execute(
        "SELECT item_count, subtotal, discount_total, total_amount FROM app.orders WHERE id = %s",
        (order_id,),
    ).fetchone()
    assert found is not None
    return tuple(found)


def _bare_order(conn: Conn, customer: int) -> int:
    """An order written straight into the table, the way a bulk load does."""
    return int(
        one(
            conn,
            "INSERT INTO app.orders (customer_id, channel, payment_method)"
            " VALUES (%s, 'web', 'card') RETURNING id",
            (customer,),
        )
    )


# ---- updated_at -------------------------------------------------------------------------


def _tables_with_updated_at(conn: Conn) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = 'app' AND column_name = 'updated_at'"
            " AND table_name IN (SELECT table_name FROM information_schema.tables"
            "                    WHERE table_schema = 'app' AND table_type = 'BASE TABLE')"
            " ORDER BY 1"
        )
    ]


def test_every_app_table_with_updated_at_has_the_touch_trigger(pg: Conn) -> None:
    tables = _tables_with_updated_at(pg)
    assert len(tables) >= 7
    with_trigger = {
        r[0]
        for r in pg.execute(
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'app' AND t.tgname = 'touch_updated_at' AND NOT t.tgisinternal"
        )
    }
    assert set(tables) <= with_trigger


@pytest.fixture
def one_of_each(pg: Conn) -> dict[str, str]:
    """A row in every app table; maps table -> WHERE clause selecting it."""
    customer = new_customer(pg)
    product, _ = new_product(pg)
    order_id = delivered_order(pg, customer, [item(product, 2)])
    feedback = one(
        pg,
        "INSERT INTO app.feedback (customer_id, order_id, product_id, rating)"
        " VALUES (%s, %s, %s, 4) RETURNING id",
        (customer, order_id, product),
    )
    return_id = one(pg, "SELECT app.request_return(%s, 1, 1, 'damaged')", (order_id,))
    ticket = one(
        pg,
        "SELECT app.open_ticket(%s, 'delivery', 'low', 'chat', 'late')",
        (customer,),
    )
    pg.commit()
    return {
        "customers": f"id = {customer}",
        "products": f"id = {product}",
        "orders": f"id = {order_id}",
        "order_items": f"order_id = {order_id} AND line_no = 1",
        "feedback": f"id = {feedback}",
        "returns": f"id = {return_id}",
        "support_tickets": f"id = {ticket}",
    }


def test_updated_at_becomes_now_on_every_update_of_every_table(
    pg: Conn, one_of_each: dict[str, str]
) -> None:
    assert set(one_of_each) == set(_tables_with_updated_at(pg))
    for table, where in one_of_each.items():
        # even a writer that sets updated_at itself gets the transaction's now()
        pg.execute(f"UPDATE app.{table} SET updated_at = '2000-01-01' WHERE {where}")
        stamped = one(pg, f"SELECT updated_at = now() FROM app.{table} WHERE {where}")
        assert stamped, table
    pg.rollback()


# ---- order totals -----------------------------------------------------------------------


def test_a_multi_row_insert_totals_every_order_it_touches(pg: Conn) -> None:
    customer = new_customer(pg)
    a, _ = new_product(pg, price="2.00")
    b, _ = new_product(pg, price="5.25")
    first, second, untouched = (_bare_order(pg, customer) for _ in range(3))
    pg.execute(
        "INSERT INTO app.order_items"
        " (order_id, line_no, product_id, quantity, unit_price, discount)"
        " VALUES (%(x)s, 1, %(a)s, 3, 2.00, 0),"
        "        (%(x)s, 2, %(b)s, 2, 5.25, 0.50),"
        "        (%(y)s, 1, %(b)s, 1, 5.25, 0)",
        {"x": first, "y": second, "a": a, "b": b},
    )
    assert _totals(pg, first) == (5, Decimal("16.50"), Decimal("0.50"), Decimal("16.00"))
    assert _totals(pg, second) == (1, Decimal("5.25"), Decimal("0.00"), Decimal("5.25"))
    assert _totals(pg, untouched) == (0, Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))
    pg.rollback()


def test_the_totals_trigger_runs_once_per_statement(pg: Conn) -> None:
    """Statement level with transition tables: a bulk insert updates each order once."""
    customer = new_customer(pg)
    product, _ = new_product(pg, price="1.00")
    order_id = _bare_order(pg, customer)
    pg.commit()
    pg.execute(
        "INSERT INTO app.order_items (order_id, line_no, product_id, quantity, unit_price)"
        " SELECT %s, g, %s, 1, 1.00 FROM generate_series(1, 50) AS g",
        (order_id, product),
    )
    # this transaction's own statistics: fifty row-level recomputes would be fifty updates
    updates = one(
        pg,
        "SELECT n_tup_upd FROM pg_stat_xact_user_tables"
        " WHERE schemaname = 'app' AND relname = 'orders'",
    )
    assert updates == 1
    assert _totals(pg, order_id)[:2] == (50, Decimal("50.00"))
    pg.rollback()


def test_row_by_row_updates_and_deletes_keep_totals_right(pg: Conn) -> None:
    customer = new_customer(pg)
    a, _ = new_product(pg, price="10.00")
    b, _ = new_product(pg, price="1.00")
    order_id = place_order(pg, customer, [item(a, 1), item(b, 4, "0.40")])
    assert _totals(pg, order_id) == (5, Decimal("14.00"), Decimal("0.40"), Decimal("13.60"))

    pg.execute(
        "UPDATE app.order_items SET quantity = 3 WHERE order_id = %s AND line_no = 1", (order_id,)
    )
    assert _totals(pg, order_id) == (7, Decimal("34.00"), Decimal("0.40"), Decimal("33.60"))
    pg.execute("DELETE FROM app.order_items WHERE order_id = %s AND line_no = 2", (order_id,))
    assert _totals(pg, order_id) == (3, Decimal("30.00"), Decimal("0.00"), Decimal("30.00"))
    pg.execute("DELETE FROM app.order_items WHERE order_id = %s", (order_id,))
    assert _totals(pg, order_id) == (0, Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))
    pg.rollback()


def test_moving_a_line_to_another_order_retotals_both(pg: Conn) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg, price="3.00")
    source = place_order(pg, customer, [item(product, 2)])
    target = _bare_order(pg, customer)
    pg.execute("UPDATE app.order_items SET order_id = %s WHERE order_id = %s", (target, source))
    assert _totals(pg, source) == (0, Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))
    assert _totals(pg, target) == (2, Decimal("6.00"), Decimal("0.00"), Decimal("6.00"))
    pg.rollback()


def test_concurrent_writers_to_one_order_both_count(database_url: str, pg: Conn) -> None:
    """The recompute locks the order first, so the later writer sums the earlier's lines."""
    customer = new_customer(pg)
    product, _ = new_product(pg, price="1.00")
    order_id = _bare_order(pg, customer)
    pg.commit()
    insert = (
        "INSERT INTO app.order_items (order_id, line_no, product_id, quantity, unit_price)"
        " VALUES (%s, %s, %s, %s, 1.00)"
    )
    pg.execute(insert, (order_id, 1, product, 2))  # holds the order's lock until commit
    done = threading.Event()

    def second_writer() -> None:
        with psycopg.connect(to_libpq_url(database_url)) as other:
            other.execute(insert, (order_id, 2, product, 5))
            other.commit()
        done.set()

    thread = threading.Thread(target=second_writer)
    thread.start()
    assert not done.wait(0.5), "the second writer should wait for the order's lock"
    pg.commit()
    thread.join(timeout=30)
    assert done.is_set()
    assert _totals(pg, order_id)[:2] == (7, Decimal("7.00"))


# ---- NOTIFY -----------------------------------------------------------------------------


@pytest.fixture
def listener(database_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(to_libpq_url(database_url), autocommit=True) as conn:
        yield conn


def _heard(
    listener: psycopg.Connection[tuple[Any, ...]], key: str, value: int, expected: int
) -> list[Any]:
    """Payloads whose ``key`` equals ``value``: up to ``expected`` of them, or a short wait."""
    timeout = 5.0 if expected else 0.3
    payloads = [
        json.loads(n.payload)
        for n in listener.notifies(timeout=timeout, stop_after=expected or None)
    ]
    return [p for p in payloads if p.get(key) == value]


def test_order_status_changes_notify_with_the_contract_payload(
    pg: Conn, listener: psycopg.Connection[tuple[Any, ...]]
) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg)
    order_id = place_order(pg, customer, [item(product, 1)])
    pg.commit()
    listener.execute("LISTEN cdms_order_status")

    set_order_status(pg, order_id, "paid")
    assert _heard(listener, "order_id", order_id, 0) == []  # nothing before commit
    pg.commit()
    (payload,) = _heard(listener, "order_id", order_id, 1)
    paid_at = one(pg, "SELECT paid_at FROM app.orders WHERE id = %s", (order_id,))
    assert set(payload) == {"order_id", "customer_id", "from", "to", "changed_at"}
    assert (payload["customer_id"], payload["from"], payload["to"]) == (customer, "pending", "paid")
    assert one(pg, "SELECT %s::timestamptz", (payload["changed_at"],)) == paid_at

    # a refused change notifies nothing
    try:
        set_order_status(pg, order_id, "delivered")
    except psycopg.Error:
        pg.rollback()
    assert _heard(listener, "order_id", order_id, 0) == []


def test_return_and_ticket_status_changes_notify(
    pg: Conn, listener: psycopg.Connection[tuple[Any, ...]]
) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg)
    order_id = delivered_order(pg, customer, [item(product, 2)])
    return_id = int(one(pg, "SELECT app.request_return(%s, 1, 1, 'damaged')", (order_id,)))
    ticket = int(one(pg, "SELECT app.open_ticket(%s, 'return', 'low', 'web', 'x')", (customer,)))
    pg.commit()
    listener.execute("LISTEN cdms_return_status")
    listener.execute("LISTEN cdms_ticket_status")

    pg.execute("SELECT app.approve_return(%s)", (return_id,))
    pg.execute("SELECT app.set_ticket_status(%s, 'in_progress')", (ticket,))
    pg.commit()
    payloads = [json.loads(n.payload) for n in listener.notifies(timeout=5.0, stop_after=2)]
    assert {
        "return_id": return_id,
        "order_id": order_id,
        "customer_id": customer,
        "from": "requested",
        "to": "approved",
    } in payloads
    assert {"ticket_id": ticket, "customer_id": customer, "from": "open", "to": "in_progress"} in (
        payloads
    )


def test_the_first_history_row_of_a_bulk_insert_uses_ordered_at(pg: Conn) -> None:
    """Rows loaded with past dates keep a coherent history (seed, imports)."""
    customer = new_customer(pg)
    pg.execute("SET LOCAL cdms.actor = 'seed'")
    ids = [
        r[0]
        for r in pg.execute(
            "INSERT INTO app.orders (customer_id, channel, payment_method, ordered_at)"
            " SELECT %s, 'store', 'cash_on_delivery',"
            "        timestamptz '2024-01-01' + g * interval '1 day'"
            " FROM generate_series(1, 3) AS g RETURNING id",
            (customer,),
        )
    ]
    history = pg.execute(
        "SELECT h.from_status, h.to_status, h.changed_at = o.ordered_at, h.changed_by"
        " FROM app.order_status_history h JOIN app.orders o ON o.id = h.order_id"
        " WHERE h.order_id = ANY(%s) ORDER BY h.order_id",
        (ids,),
    ).fetchall()
    assert history == [(None, "pending", True, "seed")] * 3
    assert row(pg, "SELECT count(*) AS n FROM app.orders WHERE id = ANY(%s)", (ids,))["n"] == 3
    pg.rollback()


def test_a_status_time_supplied_by_the_writer_is_the_history_time(pg: Conn) -> None:
    customer = new_customer(pg)
    order_id = _bare_order(pg, customer)
    pg.execute(
        "UPDATE app.orders SET status = 'paid', paid_at = ordered_at + interval '1 hour'"
        " WHERE id = %s",
        (order_id,),
    )
    changed_at, paid_at = pg.execute(
        "SELECT h.changed_at, o.paid_at FROM app.order_status_history h"
        " JOIN app.orders o ON o.id = h.order_id"
        " WHERE h.order_id = %s AND h.to_status = 'paid'",
        (order_id,),
    ).fetchone() or (None, None)
    assert changed_at == paid_at is not None
    assert one(pg, "SELECT paid_at - ordered_at FROM app.orders WHERE id = %s", (order_id,)) == (
        timedelta(hours=1)
    )
    pg.rollback()
