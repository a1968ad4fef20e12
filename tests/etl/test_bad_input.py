"""Source rows that break an assumption: extended, or refused with the offending ids."""

from __future__ import annotations

import datetime as dt

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
