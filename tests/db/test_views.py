"""app.customer_summary and app.product_performance: their definitions, and that a filter
on the id is pushed down to the indexed child tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


def test_customer_summary_and_product_performance_by_their_definitions(pg: Conn) -> None:
    customer, idle = new_customer(pg), new_customer(pg)
    shirt, _ = new_product(pg, price="10.00", stock=50)
    cap, _ = new_product(pg, price="5.00", stock=50)

    delivered = delivered_order(pg, customer, [item(shirt, 2), item(cap, 1, "1.00")])  # 24.00
    paid = place_order(pg, customer, [item(shirt, 1)])  # 10.00
    set_order_status(pg, paid, "paid")
    cancelled = place_order(pg, customer, [item(cap, 1)])
    set_order_status(pg, cancelled, "cancelled")
    place_order(pg, customer, [item(shirt, 1)])  # pending: counted as an order, not revenue

    refund = one(pg, "SELECT app.request_return(%s, 1, 1, 'damaged')", (delivered,))
    pg.execute("SELECT app.approve_return(%s)", (refund,))  # refunds 10.00
    pg.execute("SELECT app.request_return(%s, 2, 1, 'too_small')", (delivered,))  # undecided

    for rating, kind, product in (
        (4, "review", shirt),
        (2, "complaint", shirt),
        (5, "review", None),
    ):
        pg.execute(
            "INSERT INTO app.feedback (customer_id, product_id, rating, kind)"
            " VALUES (%s, %s, %s, %s)",
            (customer, product, rating, kind),
        )
    tickets = [
        one(pg, "SELECT app.open_ticket(%s, 'other', 'low', 'web', 'hi')", (customer,))
        for _ in range(3)
    ]
    pg.execute("SELECT app.set_ticket_status(%s, 'in_progress')", (tickets[1],))
    pg.execute("SELECT app.set_ticket_status(%s, 'resolved')", (tickets[2],))
    pg.commit()

    summary = row(pg, "SELECT * FROM app.customer_summary WHERE customer_id = %s", (customer,))
    first, last = pg.execute(
        "SELECT min(ordered_at), max(ordered_at) FROM app.orders"
        " WHERE customer_id = %s AND status <> 'cancelled'",
        (customer,),
    ).fetchone() or (None, None)
    assert summary == {
        "customer_id": customer,
        "order_count": 3,  # delivered, paid, pending
        "lifetime_value": Decimal("24.00"),  # 24.00 + 10.00 - 10.00 refunded
        "average_order_value": Decimal("12.00"),  # over the 2 revenue orders
        "first_order_at": first,
        "last_order_at": last,
        "return_rate": Decimal("0.3333"),  # 1 approved unit of 3 delivered
        "average_rating": Decimal("3.67"),
        "open_ticket_count": 2,
    }
    assert row(pg, "SELECT * FROM app.customer_summary WHERE customer_id = %s", (idle,)) == {
        "customer_id": idle,
        "order_count": 0,
        "lifetime_value": Decimal("0.00"),
        "average_order_value": None,
        "first_order_at": None,
        "last_order_at": None,
        "return_rate": None,
        "average_rating": None,
        "open_ticket_count": 0,
    }

    performance = {
        r["product_id"]: r
        for r in pg.cursor(row_factory=psycopg.rows.dict_row).execute(
            "SELECT * FROM app.product_performance WHERE product_id = ANY(%s)", ([shirt, cap],)
        )
    }
    shirt_row = performance[shirt]
    assert (shirt_row["units_sold"], shirt_row["revenue"]) == (3, Decimal("20.00"))  # 30 - 10
    assert (shirt_row["returned_units"], shirt_row["return_rate"]) == (1, Decimal("0.3333"))
    assert (shirt_row["average_rating"], shirt_row["feedback_count"]) == (Decimal("3.00"), 2)
    assert shirt_row["complaint_count"] == 1
    cap_row = performance[cap]
    assert (cap_row["units_sold"], cap_row["revenue"], cap_row["returned_units"]) == (
        1,
        Decimal("4.00"),
        0,
    )
    assert (cap_row["return_rate"], cap_row["average_rating"], cap_row["feedback_count"]) == (
        Decimal("0.0000"),
        None,
        0,
    )


# ---- filtered by id: pushed down, and equal to a plain GROUP BY over everything --------

_DATA = """
INSERT INTO app.customers (email, first_name, last_name, country, region, city)
SELECT 'v' || g || '@example.com', 'F', 'L', 'X', 'Y', 'Z' FROM generate_series(1, 300) g;
INSERT INTO app.products (sku, name, category, subcategory, brand, unit_price, cost, stock)
SELECT 'V-' || g, 'p', 'c', 's', 'b', (g % 17 + 1) * 1.25, 1, 1000 FROM generate_series(1, 60) g;
INSERT INTO app.orders (customer_id, channel, payment_method)
SELECT 1 + (g * 7919) % 300, 'web', 'card' FROM generate_series(1, 3000) g;
INSERT INTO app.order_items (order_id, line_no, product_id, quantity, unit_price, discount)
SELECT o.id, l, 1 + (o.id * 31 + l * 7) % 60, 1 + (o.id + l) % 3, 2.50, (o.id % 3) * 0.10
  FROM app.orders o CROSS JOIN generate_series(1, 2) l;
UPDATE app.orders SET status = 'paid' WHERE id % 10 <> 0;
UPDATE app.orders SET status = 'shipped' WHERE id % 10 BETWEEN 2 AND 8;
UPDATE app.orders SET status = 'delivered' WHERE id % 10 BETWEEN 3 AND 8;
UPDATE app.orders SET status = 'cancelled' WHERE id % 10 = 0;
INSERT INTO app.returns (order_id, line_no, reason, quantity)
SELECT id, 1, 'damaged', 1 FROM app.orders WHERE id % 10 = 3;
UPDATE app.returns SET status = 'approved', refund_amount = 1.00 WHERE id % 2 = 0;
INSERT INTO app.feedback (customer_id, product_id, rating, kind)
SELECT 1 + g % 300, 1 + g % 60, 1 + g % 5, CASE WHEN g % 4 = 0 THEN 'complaint' ELSE 'review' END
  FROM generate_series(1, 1000) g;
INSERT INTO app.support_tickets (customer_id, category, channel, subject, status)
SELECT 1 + (g * 7) % 300, 'other', 'web', 's', (ARRAY['open', 'in_progress', 'resolved'])[1 + g % 3]
  FROM generate_series(1, 600) g;
ANALYZE app.customers, app.products, app.orders, app.order_items, app.returns, app.feedback,
        app.support_tickets;
"""

# The same definitions written the obvious way: one GROUP BY per child table over all rows.
_CUSTOMER_REFERENCE = """
WITH o AS (
    SELECT customer_id,
           count(*) FILTER (WHERE status <> 'cancelled') AS order_count,
           count(*) FILTER (WHERE status IN ('paid','shipped','delivered','returned')) AS n,
           sum(total_amount) FILTER (WHERE status IN ('paid','shipped','delivered','returned'))
               AS revenue,
           sum(item_count) FILTER (WHERE status IN ('delivered','returned')) AS delivered,
           min(ordered_at) FILTER (WHERE status <> 'cancelled') AS first_at,
           max(ordered_at) FILTER (WHERE status <> 'cancelled') AS last_at
      FROM app.orders GROUP BY customer_id),
r AS (SELECT customer_id, sum(refund_amount) AS refunded, sum(quantity) AS units
        FROM app.returns WHERE status = 'approved' GROUP BY customer_id),
f AS (SELECT customer_id, round(avg(rating), 2) AS rating FROM app.feedback GROUP BY 1),
t AS (SELECT customer_id, count(*) AS open FROM app.support_tickets
       WHERE status IN ('open','in_progress') GROUP BY 1)
SELECT c.id, coalesce(o.order_count, 0),
       coalesce(o.revenue, 0) - coalesce(r.refunded, 0),
       round((coalesce(o.revenue, 0) - coalesce(r.refunded, 0)) / nullif(o.n, 0), 2),
       o.first_at, o.last_at,
       round(coalesce(r.units, 0)::numeric / nullif(o.delivered, 0), 4),
       f.rating, coalesce(t.open, 0)
  FROM app.customers c
  LEFT JOIN o ON o.customer_id = c.id LEFT JOIN r ON r.customer_id = c.id
  LEFT JOIN f ON f.customer_id = c.id LEFT JOIN t ON t.customer_id = c.id
 ORDER BY c.id
"""

_PRODUCT_REFERENCE = """
WITH s AS (
    SELECT i.product_id, sum(i.quantity) AS units, sum(i.line_total) AS gross
      FROM app.order_items i JOIN app.orders o ON o.id = i.order_id
     WHERE o.status IN ('paid','shipped','delivered','returned') GROUP BY 1),
r AS (
    SELECT i.product_id, sum(r.quantity) AS units, sum(r.refund_amount) AS refunded
      FROM app.returns r JOIN app.order_items i USING (order_id, line_no)
     WHERE r.status = 'approved' GROUP BY 1),
f AS (SELECT product_id, round(avg(rating), 2) AS rating, count(*) AS n,
             count(*) FILTER (WHERE kind = 'complaint') AS complaints
        FROM app.feedback GROUP BY 1)
SELECT p.id, p.sku, coalesce(s.units, 0), coalesce(s.gross, 0) - coalesce(r.refunded, 0),
       coalesce(r.units, 0), round(coalesce(r.units, 0)::numeric / nullif(s.units, 0), 4),
       f.rating, coalesce(f.n, 0), coalesce(f.complaints, 0)
  FROM app.products p
  LEFT JOIN s ON s.product_id = p.id LEFT JOIN r ON r.product_id = p.id
  LEFT JOIN f ON f.product_id = p.id
 ORDER BY p.id
"""


@pytest.fixture(scope="module")
def shop(clone_database: Callable[[str], str]) -> Iterator[Conn]:
    """A private database holding a few thousand rows, analysed."""
    url = clone_database("views")
    with psycopg.connect(to_libpq_url(url)) as conn:
        conn.execute(_DATA)
        conn.commit()
        yield conn


def test_the_views_agree_with_a_plain_group_by_for_every_customer_and_product(
    shop: Conn,
) -> None:
    reference = shop.execute(_CUSTOMER_REFERENCE).fetchall()
    view = shop.execute("SELECT * FROM app.customer_summary ORDER BY customer_id").fetchall()
    assert len(view) == 300
    assert view == reference
    assert any(r[6] for r in view) and any(r[7] for r in view) and any(r[8] for r in view)

    reference = shop.execute(_PRODUCT_REFERENCE).fetchall()
    view = shop.execute("SELECT * FROM app.product_performance ORDER BY product_id").fetchall()
    assert len(view) == 60
    assert view == reference
    assert any(r[4] for r in view) and any(r[8] for r in view)

    some = [5, 17, 42, 299]
    filtered = shop.execute(
        "SELECT * FROM app.customer_summary WHERE customer_id = ANY(%s) ORDER BY 1", (some,)
    ).fetchall()
    assert filtered == [r for r in shop.execute(_CUSTOMER_REFERENCE) if r[0] in some]


def _scans(plan: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(relation, node type, condition) of every scan in a JSON plan."""
    node_type = plan["Node Type"]
    if "Relation Name" in plan:
        condition = plan.get("Index Cond") or plan.get("Recheck Cond") or ""
        yield plan["Relation Name"], node_type, condition
    for child in plan.get("Plans", []):
        yield from _scans(child)


def _plan(conn: Conn, sql: str, ids: list[int]) -> list[tuple[str, str, str]]:
    # The tables are small enough for sequential scans to be cheapest; forbid them to see
    # which indexed access paths exist, and that each child is reached through the id.
    conn.execute("SET LOCAL enable_seqscan = off")
    (explained,) = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", (ids,)).fetchone() or (None,)
    conn.rollback()
    return list(_scans(explained[0]["Plan"]))


def test_customer_summary_filtered_by_id_reads_only_those_customers_rows(shop: Conn) -> None:
    scans = _plan(shop, "SELECT * FROM app.customer_summary WHERE customer_id = ANY(%s)", [3, 9])
    by_relation = {relation: (kind, cond) for relation, kind, cond in scans}
    assert set(by_relation) == {"customers", "orders", "returns", "feedback", "support_tickets"}
    assert all(kind != "Seq Scan" for kind, _ in by_relation.values()), scans
    assert "ANY" in by_relation["customers"][1]
    for child in ("orders", "returns", "feedback", "support_tickets"):
        assert "customer_id = c.id" in by_relation[child][1], scans


def test_product_performance_filtered_by_id_reads_only_those_products_rows(shop: Conn) -> None:
    scans = _plan(shop, "SELECT * FROM app.product_performance WHERE product_id = ANY(%s)", [4])
    by_relation = {relation: (kind, cond) for relation, kind, cond in scans}
    assert set(by_relation) == {"products", "order_items", "orders", "returns", "feedback"}
    assert all(kind != "Seq Scan" for kind, _ in by_relation.values()), scans
    assert "ANY" in by_relation["products"][1]
    assert "product_id = p.id" in by_relation["order_items"][1]
    assert "id = i.order_id" in by_relation["orders"][1]
    assert "order_id = i.order_id" in by_relation["returns"][1]
    assert "product_id = p.id" in by_relation["feedback"][1]
