"""ml/sql/orders.sql (set-based: one timeline per customer, one GROUP BY for the baskets)
returns exactly the rows of its earlier per-order formulation (two LATERAL subqueries per
order), kept as the reference in tests/ml/sql/orders_lateral.sql: same rows, same order,
every column equal (floats bit for bit, NULLs where NULLs), for the scopes training and
serving use, on the test warehouse and on the same warehouse edited to hold the edge cases
(ties on timestamps, tied categories, an order without lines, a customer without returns,
an order exactly 30 days after another)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine

from ml.features import _SCOPES, WAREHOUSE, statement

REFERENCE = (Path(__file__).parent / "sql" / "orders_lateral.sql").read_text(encoding="utf-8")


def _bound(sql: str, scope: str) -> sa.TextClause:
    stmt = sa.text(sql)
    if scope == "ids":
        stmt = stmt.bindparams(sa.bindparam("ids", type_=ARRAY(sa.BigInteger())))
    return stmt


def assert_same_rows(conn: Connection, scope: str, params: dict[str, Any]) -> int:
    """Both queries over ``scope`` (the text ``ml.features`` runs, and the reference with the
    same scope): equal column names, equal row lists (in their ORDER BY order), and no row
    of one missing from the other as SQL compares them (EXCEPT ALL both ways)."""
    new = statement("orders.sql", scope).text
    old = REFERENCE.replace("{{scope}}", _SCOPES["orders.sql"][scope])
    old = old.replace("{{fact_orders}}", WAREHOUSE["fact_orders"])
    new_result = conn.execute(_bound(new, scope), params)
    old_result = conn.execute(_bound(old, scope), params)
    assert list(new_result.keys()) == list(old_result.keys())
    new_rows = [tuple(r) for r in new_result]
    old_rows = [tuple(r) for r in old_result]
    assert len(new_rows) == len(old_rows)
    for a, b in zip(new_rows, old_rows, strict=True):
        assert a == b
    for first, second in ((new, old), (old, new)):
        diff = f"SELECT count(*) FROM (({first}) EXCEPT ALL ({second})) AS d"
        assert conn.execute(_bound(diff, scope), params).scalar_one() == 0
    return len(new_rows)


@pytest.fixture
def conn(ml_engine: Engine) -> Iterator[Connection]:
    """A connection to the test warehouse whose changes are rolled back."""
    with ml_engine.connect() as conn:
        conn.begin()
        try:
            yield conn
        finally:
            conn.rollback()


def _scalar(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(sa.text(sql), params).scalar_one()


FAR_FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def test_same_rows_as_the_reference_on_the_test_warehouse(conn: Connection) -> None:
    n = _scalar(conn, "SELECT count(*) FROM dw.fact_orders")
    assert assert_same_rows(conn, "before", {"until": FAR_FUTURE}) == n > 1000
    middle = _scalar(
        conn, "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ordered_at) FROM dw.fact_orders"
    )
    assert 0 < assert_same_rows(conn, "before", {"until": middle}) < n
    ids = [
        int(i)
        for i in conn.execute(
            sa.text("SELECT order_id FROM dw.fact_orders ORDER BY md5(order_id::text) LIMIT 5")
        ).scalars()
    ]
    assert assert_same_rows(conn, "ids", {"ids": ids}) == 5
    assert assert_same_rows(conn, "ids", {"ids": [ids[0], -1]}) == 1  # an unknown id: absent
    assert assert_same_rows(conn, "ids", {"ids": []}) == 0


def test_same_rows_as_the_reference_on_ties_and_empty_cases(conn: Connection) -> None:
    # a customer with at least 3 orders and a return: their 2nd order is placed at the
    # very instant of their 1st (tie between orders), a return is requested at that
    # instant too (not "before" either order), their 3rd exactly 30 days after the 1st
    # (the settled window's bound)
    customer = _scalar(
        conn,
        """
        SELECT o.customer_id FROM dw.fact_orders AS o
        WHERE EXISTS (SELECT 1 FROM dw.fact_returns AS r WHERE r.customer_id = o.customer_id)
        GROUP BY o.customer_id HAVING count(*) >= 3 ORDER BY o.customer_id LIMIT 1
        """,
    )
    first, second, third = (
        int(i)
        for i in conn.execute(
            sa.text(
                "SELECT order_id FROM dw.fact_orders WHERE customer_id = :c"
                " ORDER BY ordered_at, order_id LIMIT 3"
            ),
            {"c": customer},
        ).scalars()
    )
    at = _scalar(conn, "SELECT ordered_at FROM dw.fact_orders WHERE order_id = :o", o=first)
    conn.execute(
        sa.text("UPDATE dw.fact_orders SET ordered_at = :at WHERE order_id = :o"),
        {"at": at, "o": second},
    )
    conn.execute(
        sa.text("UPDATE dw.fact_orders SET ordered_at = :at WHERE order_id = :o"),
        {"at": at + dt.timedelta(days=30), "o": third},
    )
    conn.execute(
        sa.text(
            "UPDATE dw.fact_returns SET requested_at = :at WHERE return_id ="
            " (SELECT min(return_id) FROM dw.fact_returns WHERE customer_id = :c)"
        ),
        {"at": at, "c": customer},
    )
    # an order without lines
    bare = _scalar(
        conn, "SELECT order_id FROM dw.fact_orders WHERE customer_id <> :c LIMIT 1", c=customer
    )
    conn.execute(sa.text("DELETE FROM dw.fact_sales WHERE order_id = :o"), {"o": bare})
    # an order whose two categories tie on units (each of its lines: 1 unit)
    tied = _scalar(
        conn,
        """
        SELECT fs.order_id FROM dw.fact_sales AS fs JOIN dw.dim_product AS p USING (product_key)
        WHERE fs.order_id NOT IN (:a, :b, :c, :d)
        GROUP BY fs.order_id HAVING count(DISTINCT p.category) = 2 AND count(*) = 2
        ORDER BY fs.order_id LIMIT 1
        """,
        a=first,
        b=second,
        c=third,
        d=bare,
    )
    conn.execute(sa.text("UPDATE dw.fact_sales SET quantity = 1 WHERE order_id = :o"), {"o": tied})
    # a customer without returns (any more)
    quiet = _scalar(
        conn,
        "SELECT customer_id FROM dw.fact_returns WHERE customer_id <> :c"
        " ORDER BY customer_id LIMIT 1",
        c=customer,
    )
    conn.execute(sa.text("DELETE FROM dw.fact_returns WHERE customer_id = :c"), {"c": quiet})
    quiet_orders = [
        int(i)
        for i in conn.execute(
            sa.text("SELECT order_id FROM dw.fact_orders WHERE customer_id = :c"), {"c": quiet}
        ).scalars()
    ]

    # the edits hold what they are meant to (else the comparison below proves less)
    assert _scalar(
        conn,
        "SELECT count(*) FROM dw.fact_returns WHERE customer_id = :c AND requested_at = :at",
        c=customer,
        at=at,
    )
    assert assert_same_rows(conn, "before", {"until": FAR_FUTURE}) > 1000
    edited = [first, second, third, bare, tied, *quiet_orders]
    assert assert_same_rows(conn, "ids", {"ids": edited}) == len(set(edited))
    for one in (second, bare, tied, quiet_orders[-1]):
        assert assert_same_rows(conn, "ids", {"ids": [one]}) == 1
    features = {
        int(m["key"]): m
        for m in conn.execute(statement("orders.sql", "ids"), {"ids": edited}).mappings()
    }
    assert features[bare]["category_count"] == 0.0
    assert features[bare]["main_category"] is None
    assert features[tied]["category_count"] == 2.0
    tied_categories = conn.execute(
        sa.text(
            "SELECT DISTINCT p.category FROM dw.fact_sales AS fs JOIN dw.dim_product AS p"
            " USING (product_key) WHERE fs.order_id = :o ORDER BY 1"
        ),
        {"o": tied},
    ).scalars()
    assert features[tied]["main_category"] == next(iter(tied_categories))
