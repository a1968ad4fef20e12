"""A customer or product changed after a run's horizon (an open transaction holds it back)
whose older orders the run loads: the run loads its dimension row, a full run too, and the
warehouse equals what a full run without the open transaction builds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from db.config import to_libpq_url
from etl import pipeline
from etl.errors import MissingDimensionError
from etl.load import _missing_error
from etl.steps import STEPS
from tests.etl.conftest import dw_checksums, one, sql, step_counts


@contextmanager
def _open_transaction(url: str) -> Iterator[None]:
    """A session idle in a transaction (a BI reader, a slow writer): the horizon of every run
    meanwhile is its start."""
    with psycopg.connect(to_libpq_url(url)) as conn:
        conn.execute("SELECT txid_current()")
        try:
            yield
        finally:
            conn.rollback()


def _place(url: str, customer: int, product: int) -> int:
    items = json.dumps([{"product_id": product, "quantity": 1}])
    order = one(url, "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')", (customer, items))
    assert isinstance(order, int)
    return order


def _assert_a_later_full_run_agrees(url: str, before: dict[str, str]) -> None:
    """The transaction gone: an incremental run changes no dimension or fact (it sees the
    rows after the horizon again and finds them loaded), and a full run builds the same."""
    later = pipeline.run(url)
    counts = step_counts(url, later.run_id)
    for step in ("dim_customer", "dim_product", "fact_sales", "fact_orders"):
        assert counts[step][1:] == (0, 0, 0), (step, counts[step])
    assert dw_checksums(url) == before
    pipeline.run(url, full=True)
    assert dw_checksums(url) == before


def test_a_full_run_loads_the_dimension_rows_changed_after_its_horizon(loaded_shop: str) -> None:
    """The finding: a product sold (its stock, so its updated_at, moves) and a customer
    moved (a tracked attribute) after the oldest open transaction began; their older orders
    are loaded, so must their dimension rows be."""
    url = loaded_shop
    product = one(url, "SELECT min(id) FROM app.products WHERE active AND stock > 5")
    customer = one(url, "SELECT min(customer_id) FROM dw.fact_orders")
    with _open_transaction(url):
        order = _place(url, customer, product)
        sql(url, "UPDATE app.customers SET country = 'Kenya' WHERE id = %s", (customer,))

        result = pipeline.run(url, full=True)

        assert all(c.ok for c in result.checks)
        assert (
            one(
                url,
                "SELECT count(*) FROM dw.dim_product WHERE product_id = %s AND is_current",
                (product,),
            )
            == 1
        )
        assert (
            one(
                url,
                "SELECT country FROM dw.dim_customer WHERE customer_id = %s AND is_current",
                (customer,),
            )
            == "Kenya"
        )
        # (the full load reads the facts whole: the order after the horizon too)
        assert one(url, "SELECT count(*) FROM dw.fact_orders WHERE order_id = %s", (order,)) == 1
        with_open = dw_checksums(url)
    _assert_a_later_full_run_agrees(url, with_open)


def test_an_incremental_run_loads_new_entities_changed_after_its_horizon(
    loaded_shop: str,
) -> None:
    """The same in an incremental run: a new customer orders a new product, both are edited
    after the horizon; the order is in the run's window, the entities' updated_at is not."""
    url = loaded_shop
    customer = one(
        url,
        "INSERT INTO app.customers (email, first_name, last_name, country, region, city)"
        " VALUES ('late@b.example', 'Ada', 'Late', 'Germany', 'Berlin', 'Berlin') RETURNING id",
    )
    product = one(
        url,
        "INSERT INTO app.products (sku, name, category, subcategory, brand, unit_price, cost,"
        " stock) VALUES ('LATE-1', 'Late', 'c', 's', 'b', 10, 5, 100) RETURNING id",
    )
    order = _place(url, customer, product)
    with _open_transaction(url):
        sql(url, "UPDATE app.customers SET first_name = 'Later' WHERE id = %s", (customer,))
        sql(url, "UPDATE app.products SET name = 'Later' WHERE id = %s", (product,))

        result = pipeline.run(url)

        assert all(c.ok for c in result.checks)
        row: Any = one(
            url,
            "SELECT c.full_name, p.name FROM dw.fact_sales AS f"
            " JOIN dw.dim_customer AS c USING (customer_key)"
            " JOIN dw.dim_product AS p USING (product_key) WHERE f.order_id = %s",
            (order,),
        )
        assert row == ("Later Late", "Later")
        with_open = dw_checksums(url)
    _assert_a_later_full_run_agrees(url, with_open)


def test_the_advice_of_a_missing_dimension_fits_the_run() -> None:
    """A full run that failed does not advise a full run."""
    sales = next(s for s in STEPS if s.name == "fact_sales")
    incremental = _missing_error(sales, {"product_id": [12]}, full=False)
    full = _missing_error(sales, {"product_id": [12]}, full=True)
    assert isinstance(full, MissingDimensionError)
    assert "--full" in incremental.message
    assert "--full" not in full.message
    assert "product_id 12 not in dw.dim_product" in full.message
