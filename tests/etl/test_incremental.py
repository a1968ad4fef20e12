"""Changes in app flow into dw on the next run: statuses, returns, SCD2 moves, deletes."""

from __future__ import annotations

import json

from etl import pipeline
from tests.etl.conftest import dw_checksums, one, sql, step_counts


def _place_order(url: str, customer_id: int | None = None, lines: int = 1) -> int:
    customer = customer_id or one(url, "SELECT min(id) FROM app.customers")
    products = sql(
        url, "SELECT id FROM app.products WHERE active AND stock > 5 ORDER BY id LIMIT %s", (lines,)
    )
    items = [{"product_id": p, "quantity": 1} for (p,) in products]
    order_id = one(
        url,
        "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')",
        (customer, json.dumps(items)),
    )
    assert isinstance(order_id, int)
    return order_id


def test_a_status_change_updates_the_order_and_its_lines_only(loaded_shop: str) -> None:
    order_id = _place_order(loaded_shop, lines=3)
    sql(loaded_shop, "SELECT app.set_order_status(%s, 'paid')", (order_id,))
    pipeline.run(loaded_shop)
    lines = 3
    sql(loaded_shop, "SELECT app.set_order_status(%s, 'shipped')", (order_id,))

    result = pipeline.run(loaded_shop)

    assert one(
        loaded_shop,
        "SELECT status, hours_to_ship IS NOT NULL FROM dw.fact_orders WHERE order_id = %s",
        (order_id,),
    ) == ("shipped", True)
    assert sql(
        loaded_shop, "SELECT DISTINCT status FROM dw.fact_sales WHERE order_id = %s", (order_id,)
    ) == [("shipped",)]
    counts = step_counts(loaded_shop, result.run_id)
    assert counts["fact_orders"] == (1, 0, 1, 0)
    assert counts["fact_sales"] == (lines, 0, lines, 0)
    assert counts["fact_returns"][1:] == (0, 0, 0)
    assert all(c.ok for c in result.checks)


def test_a_new_return_then_its_approval_flow_through(loaded_shop: str) -> None:
    order_id, line_no, quantity = one(
        loaded_shop,
        "SELECT i.order_id, i.line_no, i.quantity FROM app.order_items i"
        " JOIN app.orders o ON o.id = i.order_id WHERE o.status = 'delivered'"
        " AND NOT EXISTS (SELECT 1 FROM app.returns r WHERE r.order_id = i.order_id)"
        " ORDER BY 1, 2 LIMIT 1",
    )
    return_id = one(
        loaded_shop,
        "SELECT app.request_return(%s, %s, 1, 'damaged')",
        (order_id, line_no),
    )

    first = pipeline.run(loaded_shop)

    row = one(
        loaded_shop,
        "SELECT status, quantity, refund_amount, reason FROM dw.fact_returns WHERE return_id = %s",
        (return_id,),
    )
    assert row == ("requested", 1, None, "damaged")
    assert step_counts(loaded_shop, first.run_id)["fact_returns"] == (1, 1, 0, 0)

    sql(loaded_shop, "SELECT app.approve_return(%s)", (return_id,))
    second = pipeline.run(loaded_shop)

    status, refund = one(
        loaded_shop,
        "SELECT status, refund_amount FROM dw.fact_returns WHERE return_id = %s",
        (return_id,),
    )
    assert status == "approved"
    assert refund == one(
        loaded_shop, "SELECT refund_amount FROM app.returns WHERE id = %s", (return_id,)
    )
    assert refund > 0
    assert step_counts(loaded_shop, second.run_id)["fact_returns"] == (1, 0, 1, 0)
    assert quantity >= 1
    assert all(c.ok for c in second.checks)


def test_a_customer_moving_country_opens_a_version_old_orders_keep_the_old_key(
    loaded_shop: str,
) -> None:
    customer_id, order_id = one(
        loaded_shop,
        "SELECT customer_id, min(id) FROM app.orders GROUP BY customer_id"
        " ORDER BY customer_id LIMIT 1",
    )
    old_key, old_country = one(
        loaded_shop,
        "SELECT customer_key, country FROM dw.dim_customer WHERE customer_id = %s",
        (customer_id,),
    )
    moved_at = one(
        loaded_shop,
        "UPDATE app.customers SET country = 'Iceland', region = 'Capital', city = 'Reykjavik'"
        " WHERE id = %s RETURNING updated_at",
        (customer_id,),
    )

    pipeline.run(loaded_shop)

    versions = sql(
        loaded_shop,
        "SELECT customer_key, country, nullif(valid_from, '-infinity'),"
        " nullif(valid_to, 'infinity'), is_current FROM dw.dim_customer"
        " WHERE customer_id = %s ORDER BY valid_from",
        (customer_id,),
    )
    assert len(versions) == 2
    (k1, c1, f1, t1, cur1), (k2, c2, f2, t2, cur2) = versions
    assert (k1, c1, f1, t1, cur1) == (old_key, old_country, None, moved_at, False)
    assert (c2, f2, t2, cur2) == ("Iceland", moved_at, None, True)
    # facts of orders placed before the move keep the version they were sold under
    assert sql(
        loaded_shop,
        "SELECT DISTINCT customer_key FROM dw.fact_orders WHERE customer_id = %s",
        (customer_id,),
    ) == [(old_key,)]

    # ... also when such an order is re-loaded after the move
    sql(loaded_shop, "UPDATE app.orders SET channel = 'phone' WHERE id = %s", (order_id,))
    new_order = _place_order(loaded_shop, customer_id)
    result = pipeline.run(loaded_shop)

    assert one(
        loaded_shop,
        "SELECT channel, customer_key FROM dw.fact_orders WHERE order_id = %s",
        (order_id,),
    ) == ("phone", old_key)
    assert (
        one(
            loaded_shop, "SELECT customer_key FROM dw.fact_orders WHERE order_id = %s", (new_order,)
        )
        == k2
    )
    assert sql(
        loaded_shop,
        "SELECT DISTINCT customer_key FROM dw.fact_sales WHERE order_id = %s",
        (new_order,),
    ) == [(k2,)]
    assert all(c.ok for c in result.checks), [c.describe() for c in result.checks if not c.ok]


def test_a_product_price_change_versions_the_product_and_prices_new_sales_at_the_new_cost(
    loaded_shop: str,
) -> None:
    product_id = one(loaded_shop, "SELECT min(id) FROM app.products WHERE active AND stock > 1")
    customer_id = one(loaded_shop, "SELECT min(id) FROM app.customers")
    sql(
        loaded_shop,
        "UPDATE app.products SET unit_price = unit_price + 10, cost = cost + 4 WHERE id = %s",
        (product_id,),
    )
    sql(loaded_shop, "UPDATE app.products SET name = name || ' (v2)' WHERE id = %s", (product_id,))
    order_id = one(
        loaded_shop,
        "SELECT app.place_order(%s, %s::jsonb, 'store', 'cash_on_delivery')",
        (customer_id, json.dumps([{"product_id": product_id, "quantity": 2}])),
    )

    pipeline.run(loaded_shop)

    versions = sql(
        loaded_shop,
        "SELECT name, cost, is_current FROM dw.dim_product WHERE product_id = %s"
        " ORDER BY valid_from",
        (product_id,),
    )
    assert len(versions) == 2
    assert versions[0][0] == versions[1][0]  # the name is type 1: every version shows the new
    assert versions[1][1] == versions[0][1] + 4 and versions[1][2]
    cost = one(
        loaded_shop,
        "SELECT cost FROM dw.fact_sales WHERE order_id = %s AND product_id = %s",
        (order_id, product_id),
    )
    assert cost == 2 * versions[1][1]


def test_deleted_orders_and_lines_leave_the_warehouse(loaded_shop: str) -> None:
    order_id = one(
        loaded_shop,
        "SELECT min(o.id) FROM app.orders o WHERE o.status = 'cancelled'"
        " AND NOT EXISTS (SELECT 1 FROM app.feedback f WHERE f.order_id = o.id)"
        " AND NOT EXISTS (SELECT 1 FROM app.support_tickets t WHERE t.order_id = o.id)",
    )
    other, line_no = one(
        loaded_shop,
        "SELECT i.order_id, max(i.line_no) FROM app.order_items i"
        " WHERE i.order_id <> %s AND NOT EXISTS (SELECT 1 FROM app.returns r"
        " WHERE r.order_id = i.order_id) GROUP BY i.order_id HAVING count(*) > 1"
        " ORDER BY 1 LIMIT 1",
        (order_id,),
    )
    sql(loaded_shop, "DELETE FROM app.orders WHERE id = %s", (order_id,))
    sql(
        loaded_shop,
        "DELETE FROM app.order_items WHERE order_id = %s AND line_no = %s",
        (other, line_no),
    )

    result = pipeline.run(loaded_shop)

    assert (
        one(loaded_shop, "SELECT count(*) FROM dw.fact_orders WHERE order_id = %s", (order_id,))
        == 0
    )
    assert (
        one(loaded_shop, "SELECT count(*) FROM dw.fact_sales WHERE order_id = %s", (order_id,)) == 0
    )
    assert (
        one(
            loaded_shop,
            "SELECT count(*) FROM dw.fact_sales WHERE order_id = %s AND line_no = %s",
            (other, line_no),
        )
        == 0
    )
    assert one(
        loaded_shop, "SELECT line_count FROM dw.fact_orders WHERE order_id = %s", (other,)
    ) == one(loaded_shop, "SELECT count(*) FROM app.order_items WHERE order_id = %s", (other,))
    assert step_counts(loaded_shop, result.run_id)["fact_orders"][3] == 1
    assert all(c.ok for c in result.checks)
    incremental = dw_checksums(loaded_shop)
    pipeline.run(loaded_shop, full=True)
    assert dw_checksums(loaded_shop) == incremental


def test_an_edited_review_is_updated_in_the_warehouse(loaded_shop: str) -> None:
    """updateFeedback changes a rating or a comment in place: the next run updates that
    fact and no other."""
    feedback_id, rating = sql(
        loaded_shop, "SELECT id, rating FROM app.feedback ORDER BY id LIMIT 1"
    )[0]
    edited = 1 if rating != 1 else 5
    sql(loaded_shop, "UPDATE app.feedback SET rating = %s WHERE id = %s", (edited, feedback_id))

    result = pipeline.run(loaded_shop)

    stored = "SELECT rating FROM dw.fact_feedback WHERE feedback_id = %s"
    assert one(loaded_shop, stored, (feedback_id,)) == edited
    assert step_counts(loaded_shop, result.run_id)["fact_feedback"] == (1, 0, 1, 0)
