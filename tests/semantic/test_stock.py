"""The daily stock snapshot (dw.fact_stock_daily) and its semi-additive ``last`` measure:
stock on hand by month is the month's last day's, across products it adds up. Expected
values come from SQL over the operational tables (stock now minus later movements)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

from sqlalchemy.engine import Engine

from db.engine import make_engine
from etl import pipeline, runner
from semantic.query import Condition, CubeQuery, Op
from tests.semantic.conftest import d, load_warehouse, m, mem, run, sql

# the stock of each product at the end of UTC day %(day)s, from app alone
STOCK_AT = """
SELECT p.id, p.category, p.stock
       + coalesce((SELECT sum(i.quantity) FROM app.order_items i JOIN app.orders o
                   ON o.id = i.order_id WHERE i.product_id = p.id
                   AND o.ordered_at >= (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC'), 0)
       - coalesce((SELECT sum(i.quantity) FROM app.order_items i JOIN app.orders o
                   ON o.id = i.order_id WHERE i.product_id = p.id AND o.status = 'cancelled'
                   AND o.cancelled_at >= (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC'), 0)
       - coalesce((SELECT sum(r.quantity) FROM app.returns r JOIN app.order_items i
                   ON (i.order_id, i.line_no) = (r.order_id, r.line_no)
                   WHERE i.product_id = p.id AND r.status = 'approved'
                   AND r.decided_at >= (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC'), 0)
FROM app.products p
WHERE (p.created_at AT TIME ZONE 'UTC')::date <= %(day)s::date
"""


# the table's content with the surrogate product key as the version it names
CONTENT = """
SELECT md5(string_agg(concat_ws(',', t.snapshot_date, t.product_id, v.valid_from,
                                t.units_on_hand), ';' ORDER BY t.product_id, t.snapshot_date))
FROM dw.fact_stock_daily t JOIN dw.dim_product v USING (product_key)
"""


def stock_at(url: str | Engine, day: str) -> dict[int, tuple[str, int]]:
    return {pid: (cat, int(units)) for pid, cat, units in sql(url, STOCK_AT, {"day": day})}


def test_the_snapshot_is_stock_now_minus_later_movements(wh: Engine) -> None:
    for day in ("2024-06-30", "2025-12-31", "2026-03-15"):
        want = stock_at(wh, day)
        got = dict(
            sql(
                wh,
                "SELECT product_id, units_on_hand FROM dw.fact_stock_daily"
                " WHERE snapshot_date = %s",
                (day,),
            )
        )
        assert got == {pid: units for pid, (_, units) in want.items()}, day
    # one row a day per product, the last day being the run's (UTC) day: the stock now
    last = sql(wh, "SELECT max(snapshot_date) FROM dw.fact_stock_daily")[0][0]
    horizon = sql(wh, "SELECT (max(horizon) AT TIME ZONE 'UTC')::date FROM dw.etl_run")[0][0]
    assert last == horizon
    now = dict(sql(wh, "SELECT id, stock FROM app.products"))
    at_last = sql(
        wh,
        "SELECT product_id, units_on_hand FROM dw.fact_stock_daily WHERE snapshot_date = %s",
        (last,),
    )
    assert dict(at_last) == now
    gaps = sql(
        wh,
        "SELECT count(*) FROM (SELECT product_id, max(snapshot_date) - min(snapshot_date) + 1"
        " AS span, count(*) AS n FROM dw.fact_stock_daily GROUP BY 1) x WHERE span <> n",
    )
    assert gaps == [(0,)]


def test_stock_by_month_is_the_last_day_not_a_sum(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("stock.unitsOnHand"),),
        dimensions=(d("stock.snapshotDate", "month"),),
        filters=(
            Condition(mem("stock.snapshotDate"), Op.IN_DATE_RANGE, ("2025-01-01", "2025-03-20")),
        ),
    )
    got = {r["stock.snapshotDate.month"][:7]: r["stock.unitsOnHand"] for r in run(wh, q).rows}
    last_days = {"2025-01": "2025-01-31", "2025-02": "2025-02-28", "2025-03": "2025-03-20"}
    want = {k: sum(u for _, u in stock_at(wh, day).values()) for k, day in last_days.items()}
    assert got == want
    assert isinstance(got["2025-01"], int)
    summed_days = sql(
        wh,
        "SELECT sum(units_on_hand) FROM dw.fact_stock_daily"
        " WHERE snapshot_date BETWEEN '2025-01-01' AND '2025-01-31'",
    )[0][0]
    assert got["2025-01"] != summed_days  # not additive over time


def test_stock_by_category_adds_up_and_subtotals_take_the_last_day(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("stock.unitsOnHand"), m("stock.productsOutOfStock")),
        dimensions=(d("stock.snapshotDate", "quarter"), d("products.category")),
        filters=(
            Condition(mem("stock.snapshotDate"), Op.IN_DATE_RANGE, ("2025-04-01", "2025-09-30")),
        ),
        subtotals=True,
    )
    res = run(wh, q)
    ends = {"2025-04-01T00:00:00": "2025-06-30", "2025-07-01T00:00:00": "2025-09-30"}
    for r, totals in zip(res.rows, res.totals, strict=True):
        quarter, cat = r["stock.snapshotDate.quarter"], r["products.category"]
        # the grand total (no quarter): the last day of the range
        stock = stock_at(wh, ends[quarter] if quarter else "2025-09-30")
        rows = [u for c, u in stock.values() if cat is None or c == cat]
        assert r["stock.unitsOnHand"] == sum(rows), (quarter, cat, totals)
        assert r["stock.productsOutOfStock"] == sum(1 for u in rows if u <= 0), (quarter, cat)


def test_stock_without_a_time_dimension_is_the_last_day_of_the_range(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("stock.unitsOnHand"),),
        filters=(Condition(mem("stock.snapshotDate"), Op.BEFORE_DATE, ("2025-07-01",)),),
    )
    (row,) = run(wh, q).rows
    assert row["stock.unitsOnHand"] == sum(u for _, u in stock_at(wh, "2025-06-30").values())


def test_an_order_moves_todays_stock_and_incremental_equals_full(
    fresh_database: Callable[[], str],
) -> None:
    url = fresh_database()
    load_warehouse(url, 40, 300, 3)
    engine = make_engine(url)
    (product, stock) = sql(
        url, "SELECT id, stock FROM app.products WHERE active AND stock > 5 LIMIT 1"
    )[0]
    customer = sql(url, "SELECT min(id) FROM app.customers")[0][0]
    items = json.dumps([{"product_id": product, "quantity": 3}])
    (order,) = sql(url, "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')", (customer, items))[
        0
    ]
    try:
        pipeline.run(url)
        today = date.today().isoformat()
        units = sql(
            url,
            "SELECT units_on_hand FROM dw.fact_stock_daily WHERE product_id = %s"
            " AND snapshot_date = (SELECT max(snapshot_date) FROM dw.fact_stock_daily)",
            (product,),
        )[0][0]
        assert units == stock - 3
        sql(url, "SELECT app.set_order_status(%s, 'cancelled')", (order,))
        pipeline.run(url)
        assert stock_at(url, today)[product][1] == stock
        incremental = sql(url, CONTENT)
        pipeline.run(url, full=True)
        assert sql(url, CONTENT) == incremental
    finally:
        runner.dispose(url)
        engine.dispose()
