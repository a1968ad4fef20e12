"""Source rows that break an assumption: extended, or refused with the offending ids."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest

from etl import pipeline
from etl.errors import MissingDimensionError
from tests.etl.conftest import dw_checksums, one, sql


def test_events_outside_dim_date_extend_it_contiguously(loaded_shop: str) -> None:
    lo, hi = one(loaded_shop, "SELECT min(date), max(date) FROM dw.dim_date")
    customer_id = one(loaded_shop, "SELECT min(id) FROM app.customers")
    feedback_id = one(
        loaded_shop,
        "INSERT INTO app.feedback (customer_id, rating, created_at)"
        " VALUES (%s, 4, '1999-06-15 12:00+00') RETURNING id",
        (customer_id,),
    )
    ticket_id = one(
        loaded_shop,
        "INSERT INTO app.support_tickets (customer_id, category, channel, subject, opened_at)"
        " VALUES (%s, 'other', 'email', 'from the future', %s) RETURNING id",
        (customer_id, dt.datetime(hi.year + 3, 2, 1, tzinfo=dt.UTC)),
    )

    result = pipeline.run(loaded_shop)

    new_lo, new_hi, n = one(loaded_shop, "SELECT min(date), max(date), count(*) FROM dw.dim_date")
    assert new_lo == dt.date(1999, 6, 15) < lo
    assert new_hi == dt.date(hi.year + 4, 2, 1)  # the latest event plus a year
    assert n == (new_hi - new_lo).days + 1
    assert (
        one(
            loaded_shop,
            "SELECT date_key FROM dw.fact_feedback WHERE feedback_id = %s",
            (feedback_id,),
        )
        == 19990615
    )
    assert (
        one(loaded_shop, "SELECT date_key FROM dw.fact_support WHERE ticket_id = %s", (ticket_id,))
        == (hi.year + 3) * 10000 + 201
    )
    assert all(c.ok for c in result.checks)


def test_a_line_naming_a_product_unknown_to_dim_product_fails_the_run_and_changes_nothing(
    loaded_shop: str,
) -> None:
    # A writer that breaks the contract: updated_at set in the past, so the product is
    # never in any change window, while an order for it is.
    product_id = one(
        loaded_shop,
        "INSERT INTO app.products (sku, name, category, subcategory, brand, unit_price, cost,"
        " stock, created_at, updated_at) VALUES ('GHOST-1', 'Ghost', 'Misc', 'Misc', 'None',"
        " 10, 4, 50, '2001-01-01', '2001-01-01') RETURNING id",
    )
    customer_id = one(loaded_shop, "SELECT min(id) FROM app.customers")
    order_id = one(
        loaded_shop,
        "INSERT INTO app.orders (customer_id, channel, payment_method) VALUES (%s, 'web', 'card')"
        " RETURNING id",
        (customer_id,),
    )
    sql(
        loaded_shop,
        "INSERT INTO app.order_items (order_id, line_no, product_id, quantity, unit_price)"
        " VALUES (%s, 1, %s, 1, 10)",
        (order_id, product_id),
    )
    before = dw_checksums(loaded_shop)

    with pytest.raises(MissingDimensionError) as info:
        pipeline.run(loaded_shop)

    err = info.value
    assert err.code == "MISSING_DIMENSION"
    assert f"product_id {product_id} not in dw.dim_product" in err.message
    assert err.fields["product_id"] == [product_id]
    assert dw_checksums(loaded_shop) == before
    assert (
        one(loaded_shop, "SELECT count(*) FROM dw.fact_orders WHERE order_id = %s", (order_id,))
        == 0
    )
    status, error = one(
        loaded_shop, "SELECT status, error FROM dw.etl_run ORDER BY run_id DESC LIMIT 1"
    )
    assert status == "failed" and f"product_id {product_id}" in error
    step_status, step_error = one(
        loaded_shop,
        "SELECT status, error FROM dw.etl_run_step WHERE step = 'fact_sales'"
        " ORDER BY run_id DESC LIMIT 1",
    )
    assert step_status == "failed" and "GHOST" not in step_error and str(product_id) in step_error
    # the fact watermark did not move: once the product reaches dim_product, the order loads
    sql(loaded_shop, "UPDATE app.products SET name = 'Ghost' WHERE id = %s", (product_id,))
    result = pipeline.run(loaded_shop)
    assert (
        one(loaded_shop, "SELECT count(*) FROM dw.fact_sales WHERE order_id = %s", (order_id,)) == 1
    )
    assert all(c.ok for c in result.checks)


def test_the_largest_values_the_shop_accepts_load(loaded_shop: str) -> None:
    """Values past what the warehouse holds stopped every later run (a stock of
    2,147,483,647: fact_stock_daily's integer levels; a customer's orders summing past
    numeric(14,2): the RFM snapshot). The shop refuses them now; at its bounds (a stock of
    a billion, prices and costs of a million, lines of 100,000 units, 1,001 orders of a
    billion by one customer) runs succeed, again as a no-op, and as a full rebuild."""
    url = loaded_shop
    with pytest.raises(psycopg.errors.CheckViolation, match="products_stock_check"):
        sql(url, "UPDATE app.products SET stock = 2147483647 WHERE id = (SELECT min(id)"
                 " FROM app.products)")  # fmt: skip
    dear, free = (r[0] for r in sql(url, "SELECT id FROM app.products ORDER BY id LIMIT 2"))
    sql(url, "UPDATE app.products SET unit_price = 1000000, cost = 1000000, stock = 1000000000,"
             " active = true WHERE id IN (%s, %s)", (dear, free))  # fmt: skip
    sql(url, "UPDATE app.products SET unit_price = 0 WHERE id = %s", (free,))
    customer = one(url, "SELECT min(id) FROM app.customers")
    sql(url, """
        DO $$
        DECLARE o bigint;
        BEGIN
            FOR i IN 1..1001 LOOP
                o := app.place_order(%(c)s, jsonb_build_array(jsonb_build_object(
                         'product_id', %(p)s, 'quantity', 1000)), 'web', 'card');
                PERFORM app.set_order_status(o, 'paid');
            END LOOP;
            PERFORM app.place_order(%(c)s, jsonb_build_array(jsonb_build_object(
                'product_id', %(f)s, 'quantity', 100000)), 'web', 'card');
        END
        $$""".replace("%(c)s", str(customer)).replace("%(p)s", str(dear))
             .replace("%(f)s", str(free)))  # fmt: skip

    pipeline.run(url)
    # (the customer's seeded orders come on top: the sums pass 10^12, numeric(14,2)'s end)
    monetary, month_revenue = one(
        url,
        "SELECT monetary, month_revenue FROM dw.fact_customer_rfm"
        " WHERE customer_id = %s ORDER BY month DESC LIMIT 1",
        (customer,),
    )
    assert monetary >= month_revenue >= Decimal("1001000000000.00")
    lifetime = one(
        url, "SELECT lifetime_value FROM app.customer_summary WHERE customer_id = %s", (customer,)
    )
    assert lifetime >= Decimal("1001000000000.00")
    last = one(
        url,
        "SELECT units_on_hand FROM dw.fact_stock_daily WHERE product_id = %s"
        " ORDER BY snapshot_date DESC LIMIT 1",
        (dear,),
    )
    assert last == 1_000_000_000 - 1001 * 1000
    line = sql(
        url,
        "SELECT cost, margin FROM dw.fact_sales WHERE product_id = %s AND quantity = 100000",
        (free,),
    )
    assert line == [(Decimal("100000000000.00"), Decimal("-100000000000.00"))]
    incremental = dw_checksums(url)
    pipeline.run(url)
    assert dw_checksums(url) == incremental
    # a full rebuild computes every sum afresh (the products' price history is lost to it:
    # their dimension and the sales facts' versions differ, as after any price change)
    pipeline.run(url, full=True)
    rebuilt = dw_checksums(url)
    same = {k for k in incremental if k not in ("dim_product", "fact_sales")}
    assert {k: rebuilt[k] for k in same} == {k: incremental[k] for k in same}
