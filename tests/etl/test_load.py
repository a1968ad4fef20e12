"""Full and repeated loads: the warehouse reconciles with app, and a rerun is a no-op."""

from __future__ import annotations

from decimal import Decimal

from etl import pipeline
from etl.checks import run_checks
from etl.pipeline import PIPELINE
from etl.runner import etl_engine
from tests.etl.conftest import dw_checksums, one, sql, step_counts


def test_full_load_reconciles_with_app(shop: str) -> None:
    result = pipeline.run(shop)

    assert [s.step for s in result.steps] == [s.name for s in PIPELINE]
    assert result.checks and all(c.ok for c in result.checks), [
        c.describe() for c in result.checks if not c.ok
    ]
    app_sold = one(
        shop,
        "SELECT sum(i.line_total) FROM app.order_items i JOIN app.orders o ON o.id = i.order_id"
        " WHERE o.status IN ('paid', 'shipped', 'delivered')",
    )
    dw_sold = one(
        shop,
        "SELECT sum(net) FROM dw.fact_sales WHERE status IN ('paid', 'shipped', 'delivered')",
    )
    assert isinstance(app_sold, Decimal) and app_sold > 0
    assert dw_sold == app_sold
    for app_table, dw_table in [
        ("app.order_items", "dw.fact_sales"),
        ("app.orders", "dw.fact_orders"),
        ("app.returns", "dw.fact_returns"),
        ("app.feedback", "dw.fact_feedback"),
        ("app.support_tickets", "dw.fact_support"),
        ("app.customers", "dw.dim_customer"),
        ("app.products", "dw.dim_product"),
    ]:
        n = one(shop, f"SELECT count(*) FROM {app_table}")
        assert n > 0, app_table
        assert one(shop, f"SELECT count(*) FROM {dw_table}") == n, dw_table
    # fact measures are derived as documented
    assert one(shop, "SELECT count(*) FROM dw.fact_sales WHERE margin <> net - cost") == 0
    assert (
        one(
            shop,
            "SELECT count(*) FROM dw.fact_orders f JOIN app.orders o ON o.id = f.order_id"
            " WHERE f.net <> o.total_amount OR f.item_count <> o.item_count",
        )
        == 0
    )
    run = sql(shop, "SELECT status, mode, finished_at IS NOT NULL FROM dw.etl_run")
    assert run == [("succeeded", "incremental", True)]
    counts = step_counts(shop, result.run_id)
    assert counts["fact_sales"][1] == one(shop, "SELECT count(*) FROM app.order_items")
    # dim_date spans the data plus a year, one row a day
    lo, hi, n = one(shop, "SELECT min(date), max(date), count(*) FROM dw.dim_date")
    first_order = one(shop, "SELECT min(ordered_at AT TIME ZONE 'UTC')::date FROM app.orders")
    last_event = one(
        shop,
        "SELECT max(d)::date FROM (SELECT max(ordered_at AT TIME ZONE 'UTC') d FROM app.orders"
        " UNION ALL SELECT max(opened_at AT TIME ZONE 'UTC') FROM app.support_tickets"
        " UNION ALL SELECT max(created_at AT TIME ZONE 'UTC') FROM app.feedback"
        " UNION ALL SELECT max(requested_at AT TIME ZONE 'UTC') FROM app.returns) x",
    )
    assert lo <= first_order
    assert hi == one(shop, "SELECT (%s::date + interval '1 year')::date", (last_event,))
    assert n == (hi - lo).days + 1


def test_second_run_changes_nothing(loaded_shop: str) -> None:
    before = dw_checksums(loaded_shop)
    version = one(loaded_shop, "SELECT version FROM dw.etl_state")

    again = pipeline.run(loaded_shop)

    counts = step_counts(loaded_shop, again.run_id)
    assert set(counts) == {s.name for s in PIPELINE}
    for step, (_read, inserted, updated, deleted) in counts.items():
        assert (inserted, updated, deleted) == (0, 0, 0), step
    assert not again.changed
    assert dw_checksums(loaded_shop) == before
    assert one(loaded_shop, "SELECT version FROM dw.etl_state") == version


_DW_CATALOG = (  # the warehouse's and the feature tables' (ml) indexes and constraints
    "SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname IN ('dw', 'ml')"
    " UNION ALL SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint"
    " WHERE connamespace IN ('dw'::regnamespace, 'ml'::regnamespace) ORDER BY 1, 2, 3"
)


def test_full_rebuild_equals_incremental_load(loaded_shop: str) -> None:
    incremental = dw_checksums(loaded_shop)
    catalog = sql(loaded_shop, _DW_CATALOG)

    result = pipeline.run(loaded_shop, full=True)

    assert sql(loaded_shop, _DW_CATALOG) == catalog  # indexes and FKs are back
    names = {r[1] for r in catalog}
    assert {"order_features_order_id_fkey", "ticket_features_ticket_id_fkey"} <= names

    assert result.mode == "full"
    assert dw_checksums(loaded_shop) == incremental
    assert all(c.ok for c in run_checks(etl_engine(loaded_shop)))
    watermarks = sql(loaded_shop, "SELECT DISTINCT high_water, run_id FROM dw.etl_watermark")
    assert watermarks == [(result.horizon, result.run_id)]


def test_a_reseed_truncating_app_is_reloaded_whole(loaded_shop: str) -> None:
    from db.seed import seed

    seed(loaded_shop, 30, 180, 99, reset=True)  # TRUNCATE + COPY with old updated_at values

    result = pipeline.run(loaded_shop)

    assert result.mode == "full"  # customer/product ids now name other entities
    assert one(loaded_shop, "SELECT count(*) FROM dw.fact_orders") == 180
    reloaded = dw_checksums(loaded_shop)
    pipeline.run(loaded_shop, full=True)
    facts = {k: v for k, v in dw_checksums(loaded_shop).items() if k.startswith("fact_")}
    assert facts == {k: v for k, v in reloaded.items() if k.startswith("fact_")}
