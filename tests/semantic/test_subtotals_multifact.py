"""Subtotals (ROLLUP with a per-row marker, count_distinct exact) and multi-fact queries
(each fact aggregated alone, then joined on the shared dimensions: no fan-out)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from semantic.query import Condition, CubeQuery, Op, OrderItem
from tests.semantic.conftest import d, m, mem, num, run, sql


def test_subtotal_rows_say_what_they_total_and_stay_exact(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.revenue"), m("sales.customerCount")),
        dimensions=(d("products.category"), d("sales.channel")),
        subtotals=True,
    )
    res = run(wh, q)
    detail = [r for r, t in zip(res.rows, res.totals, strict=True) if not t]
    by_cat = {
        r["products.category"]: r
        for r, t in zip(res.rows, res.totals, strict=True)
        if t == ("sales.channel",)
    }
    grand = [
        r
        for r, t in zip(res.rows, res.totals, strict=True)
        if t == ("products.category", "sales.channel")
    ]
    want = {
        c: (num(rev), n)
        for c, rev, n in sql(
            wh,
            """
        SELECT p.category, sum(s.net), count(DISTINCT s.customer_id) FROM dw.fact_sales s
        JOIN dw.dim_product p USING (product_key) GROUP BY 1""",
        )
    }
    assert {
        c: (num(r["sales.revenue"]), r["sales.customerCount"]) for c, r in by_cat.items()
    } == want
    (total,) = grand
    customers = sql(wh, "SELECT count(DISTINCT customer_id) FROM dw.fact_sales")[0][0]
    assert total["sales.customerCount"] == customers
    summed = sum(r["sales.customerCount"] for r in detail)
    assert summed > customers  # a sum of distinct counts would be wrong: the total is exact
    assert total["products.category"] is None and total["sales.channel"] is None
    # each category's subtotal comes right after its detail rows
    cats = [r["products.category"] for r in res.rows[:-1]]
    assert cats == sorted(cats)


def test_multi_fact_matches_separately_aggregated_sql(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.revenue"), m("returns.refundAmount"), m("returns.returnRate")),
        dimensions=(d("sales.orderedAt", "month"), d("products.category")),
        filters=(
            Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-01-01", "2025-12-31")),
        ),
    )
    got = [
        (
            r["sales.orderedAt.month"],
            r["products.category"],
            num(r["sales.revenue"]),
            num(r["returns.refundAmount"]),
            num(r["returns.returnRate"]),
        )
        for r in run(wh, q).rows
    ]
    want = [
        (m_.isoformat(), c, num(rev), num(ref), num(rate))
        for m_, c, rev, ref, rate in sql(
            wh,
            """
        WITH s AS (SELECT date_trunc('month', s.ordered_at AT TIME ZONE 'UTC') AS m, p.category,
                          sum(s.net) AS revenue, sum(s.quantity) AS qty
                   FROM dw.fact_sales s JOIN dw.dim_product p USING (product_key)
                   WHERE s.ordered_at >= '2025-01-01Z' AND s.ordered_at < '2026-01-01Z'
                   GROUP BY 1, 2),
             r AS (SELECT date_trunc('month', r.requested_at AT TIME ZONE 'UTC') AS m, p.category,
                          sum(r.refund_amount) AS refund, sum(r.quantity) AS qty
                   FROM dw.fact_returns r JOIN dw.dim_product p USING (product_key)
                   WHERE r.requested_at >= '2025-01-01Z' AND r.requested_at < '2026-01-01Z'
                   GROUP BY 1, 2)
        SELECT m, category, s.revenue, r.refund, r.qty::numeric / NULLIF(s.qty, 0)
        FROM s FULL JOIN r USING (m, category) ORDER BY 1, 2""",
        )
    ]
    assert len(want) > 50
    assert got == want
    # the naive join of the two facts fans out and overstates revenue
    naive = sql(
        wh,
        """SELECT sum(s.net) FROM dw.fact_sales s
        JOIN dw.fact_returns r ON r.order_id = s.order_id
        WHERE s.ordered_at >= '2025-01-01Z' AND s.ordered_at < '2026-01-01Z'""",
    )[0][0]
    single = sql(
        wh,
        """SELECT sum(s.net) FROM dw.fact_sales s WHERE s.ordered_at >= '2025-01-01Z'
        AND s.ordered_at < '2026-01-01Z' AND EXISTS (SELECT 1 FROM dw.fact_returns r
        WHERE r.order_id = s.order_id)""",
    )[0][0]
    assert naive != single


def test_multi_fact_subtotals_and_dimension_cube_counts(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("customers.count"), m("support.ticketCount"), m("orders.count")),
        dimensions=(d("customers.segment"),),
        subtotals=True,
    )
    res = run(wh, q)
    total = res.rows[-1]
    assert res.totals[-1] == ("customers.segment",)
    assert (
        total["customers.count"]
        == sql(wh, "SELECT count(DISTINCT customer_id) FROM dw.dim_customer")[0][0]
    )
    assert total["support.ticketCount"] == sql(wh, "SELECT count(*) FROM dw.fact_support")[0][0]
    assert total["orders.count"] == sql(wh, "SELECT count(*) FROM dw.fact_orders")[0][0]
    seg = {r["customers.segment"]: r["orders.count"] for r in res.rows[:-1]}
    assert seg == dict(
        sql(
            wh,
            """SELECT c.segment, count(*) FROM dw.fact_orders o
        JOIN dw.dim_customer c USING (customer_key) GROUP BY 1""",
        )
    )


def test_subtotals_sort_within_their_group_and_after_its_detail_rows(wh: Engine) -> None:
    """Ordered by a measure: the groups of the first dimension by their subtotal, the rows
    inside each group by their own value, every subtotal right after its detail rows and
    the grand total last (as a pivot table sorts by value)."""
    q = CubeQuery(
        measures=(m("sales.revenue"),),
        dimensions=(d("products.category"), d("sales.channel")),
        order=(OrderItem(mem("sales.revenue"), descending=True),),
        subtotals=True,
    )
    res = run(wh, q)
    by_cat = dict(
        sql(
            wh,
            """SELECT p.category, sum(s.net) FROM dw.fact_sales s
            JOIN dw.dim_product p USING (product_key) GROUP BY 1""",
        )
    )
    detail = {
        (c, ch): v
        for c, ch, v in sql(
            wh,
            """SELECT p.category, s.channel, sum(s.net) FROM dw.fact_sales s
            JOIN dw.dim_product p USING (product_key) GROUP BY 1, 2""",
        )
    }
    want: list[tuple[object, ...]] = []
    for cat in sorted(by_cat, key=lambda c: (-by_cat[c], c)):
        rows = sorted((k for k in detail if k[0] == cat), key=lambda k: (-detail[k], k[1]))
        want += [(cat, ch, num(detail[(cat, ch)]), ()) for _, ch in rows]
        want.append((cat, None, num(by_cat[cat]), ("sales.channel",)))
    want.append((None, None, num(sum(by_cat.values())), ("products.category", "sales.channel")))
    got = [
        (r["products.category"], r["sales.channel"], num(r["sales.revenue"]), t)
        for r, t in zip(res.rows, res.totals, strict=True)
    ]
    assert got == want
