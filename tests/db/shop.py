"""Helpers for the app-logic tests: unique customers and products, calls that map errors.

The session database is shared by every test: each helper creates its own rows with
unique emails and SKUs, and tests only look at the rows they made.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from db.errors import CdmsError, from_db_error

Conn = psycopg.Connection[tuple[Any, ...]]


def new_customer(conn: Conn, **columns: Any) -> int:
    values: dict[str, Any] = {
        "email": f"t{secrets.token_hex(6)}@example.com",
        "first_name": "Test",
        "last_name": "Customer",
        "country": "Testland",
        "region": "North",
        "city": "Testville",
    }
    values.update(columns)
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    row = conn.execute(
        f"INSERT INTO app.customers ({names}) VALUES ({marks}) RETURNING id",
        list(values.values()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def new_product(
    conn: Conn, *, stock: int = 10, price: str = "10.00", active: bool = True
) -> tuple[int, str]:
    """A product with a unique SKU; returns (id, sku)."""
    sku = f"T-{secrets.token_hex(5).upper()}"
    row = conn.execute(
        "INSERT INTO app.products (sku, name, category, subcategory, brand, unit_price, cost,"
        " stock, active) VALUES (%s, %s, 'test', 'test', 'acme', %s, %s, %s, %s) RETURNING id",
        (sku, f"product {sku}", Decimal(price), Decimal(price) / 2, stock, active),
    ).fetchone()
    assert row is not None
    return int(row[0]), sku


def item(product_id: int, quantity: int, discount: str | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {"product_id": product_id, "quantity": quantity}
    if discount is not None:
        line["discount"] = discount
    return line


def place_order(
    conn: Conn,
    customer_id: int,
    items: Any,
    channel: str = "web",
    payment_method: str = "card",
) -> int:
    row = conn.execute(
        "SELECT app.place_order(%s, %s, %s, %s)",
        (customer_id, Jsonb(items), channel, payment_method),
    ).fetchone()
    assert row is not None
    return int(row[0])


def set_order_status(conn: Conn, order_id: int, status: str) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM app.set_order_status(%s, %s)", (order_id, status)
        ).fetchone()
    assert row is not None
    return row


def delivered_order(conn: Conn, customer_id: int, items: Any) -> int:
    """An order placed, paid, shipped and delivered."""
    order_id = place_order(conn, customer_id, items)
    for status in ("paid", "shipped", "delivered"):
        set_order_status(conn, order_id, status)
    return order_id


def one(conn: Conn, sql: str, params: Any = None) -> Any:
    """The single value of a one-row, one-column query."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def row(conn: Conn, sql: str, params: Any = None) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(sql, params).fetchone()
    assert found is not None
    return found


def stock(conn: Conn, product_id: int) -> int:
    return int(one(conn, "SELECT stock FROM app.products WHERE id = %s", (product_id,)))


def order_count(conn: Conn, customer_id: int) -> int:
    return int(one(conn, "SELECT count(*) FROM app.orders WHERE customer_id = %s", (customer_id,)))


@contextmanager
def refused(conn: Conn, error: type[CdmsError]) -> Iterator[pytest.ExceptionInfo[CdmsError]]:
    """Expect the block to fail with ``error`` once mapped by ``db.errors.from_db_error``.

    The failed transaction is rolled back, so the caller can then check that nothing
    changed.
    """
    with pytest.raises(error) as info:
        try:
            yield info
        except psycopg.Error as exc:
            conn.rollback()
            mapped = from_db_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
