"""Cube queries against the seeded warehouse, each compared with hand-written SQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from semantic.query import Condition, CubeQuery, Junction, Op, OrderItem
from tests.semantic.conftest import d, m, mem, num, run, sql

FROM = """FROM dw.fact_sales s JOIN dw.dim_product p ON p.product_key = s.product_key
          JOIN dw.dim_customer c ON c.customer_key = s.customer_key"""


def rows(result: Any, *keys: str) -> list[tuple[Any, ...]]:
    return [
        tuple(num(r[k]) if isinstance(r[k], int | float) else r[k] for k in keys)
        for r in result.rows
    ]


def hand(wh: Engine, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    out = []
    for r in sql(wh, query, params):
        out.append(
            tuple(
                v.isoformat()
                if hasattr(v, "isoformat")
                else num(v)
                if not isinstance(v, str)
                else v
                for v in r
            )
        )
    return out


def test_the_issue_example_matches_hand_written_sql(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.revenue"), m("sales.orderCount")),
        dimensions=(d("sales.orderedAt", "month"), d("customers.segment")),
        filters=(
            Condition(mem("sales.status"), Op.NOT_IN, ("cancelled",)),
            Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-01-01", "2025-12-31")),
            Condition(mem("customers.country"), Op.IN, ("Germany", "France")),
        ),
        order=(OrderItem(mem("sales.revenue"), descending=True),),
        limit=100,
    )
    got = run(wh, q)
    want = hand(
        wh,
        f"""
        SELECT date_trunc('month', s.ordered_at AT TIME ZONE 'UTC'), c.segment,
               sum(s.net), count(DISTINCT s.order_id) {FROM}
        WHERE s.status <> 'cancelled' AND c.country IN ('Germany', 'France')
          AND s.ordered_at >= '2025-01-01T00:00Z' AND s.ordered_at < '2026-01-01T00:00Z'
        GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2""",
    )
    assert len(want) > 10
    keys = ("sales.orderedAt.month", "customers.segment", "sales.revenue", "sales.orderCount")
    assert rows(got, *keys) == want
    assert got.version >= 1 and got.freshness is not None


OPS: list[tuple[Condition, str]] = [
    (Condition(mem("sales.status"), Op.EQUALS, ("delivered",)), "s.status = 'delivered'"),
    (Condition(mem("sales.status"), Op.NOT_EQUALS, ("delivered",)), "s.status <> 'delivered'"),
    (Condition(mem("sales.status"), Op.IN, ("paid", "shipped")), "s.status IN ('paid','shipped')"),
    (
        Condition(mem("sales.status"), Op.NOT_IN, ("paid", "delivered")),
        "s.status NOT IN ('paid','delivered')",
    ),
    (
        Condition(mem("sales.status"), Op.CONTAINS, ("ELIV", "ancel")),
        "(s.status ILIKE '%eliv%' OR s.status ILIKE '%ancel%')",
    ),
    (Condition(mem("products.listPrice"), Op.GT, (100,)), "p.list_price > 100"),
    (Condition(mem("products.listPrice"), Op.GTE, (99.99,)), "p.list_price >= 99.99"),
    (Condition(mem("products.listPrice"), Op.LT, (20.5,)), "p.list_price < 20.5"),
    (Condition(mem("products.listPrice"), Op.LTE, (20,)), "p.list_price <= 20"),
    (Condition(mem("products.listPrice"), Op.IN, (9.99, 19.99)), "p.list_price IN (9.99, 19.99)"),
    (Condition(mem("customers.gender"), Op.SET, (True,)), "c.gender IS NOT NULL"),
    (Condition(mem("products.isActive"), Op.EQUALS, (False,)), "NOT p.is_active"),
    (Condition(mem("products.isActive"), Op.NOT_EQUALS, (True,)), "NOT p.is_active"),
    (
        Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-03-01", "2025-03-31")),
        "s.ordered_at >= '2025-03-01Z' AND s.ordered_at < '2025-04-01Z'",
    ),
    (
        # (a week: the seeded history ends today, ~2.7 orders a day, and an 18-hour window
        # was empty on some days; the hours cut off at both ends hold ~3 orders)
        Condition(
            mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-03-01T12:00:00", "2025-03-08T06:30:00")
        ),
        "s.ordered_at >= '2025-03-01T12:00Z' AND s.ordered_at <= '2025-03-08T06:30Z'",
    ),
    (
        Condition(mem("sales.orderedAt"), Op.NOT_IN_DATE_RANGE, ("2024-01-01", "2025-12-31")),
        "NOT (s.ordered_at >= '2024-01-01Z' AND s.ordered_at < '2026-01-01Z')",
    ),
    (
        Condition(mem("sales.orderedAt"), Op.BEFORE_DATE, ("2024-06-01",)),
        "s.ordered_at < '2024-06-01Z'",
    ),
    (
        Condition(mem("sales.orderedAt"), Op.AFTER_DATE, ("2026-01-01",)),
        "s.ordered_at >= '2026-01-02Z'",
    ),
    (Condition(mem("sales.orderedAt"), Op.SET, (True,)), "s.ordered_at IS NOT NULL"),
]


@pytest.mark.parametrize(
    ("cond", "where"), OPS, ids=lambda x: getattr(x, "op", None) and x.op.value
)
def test_every_filter_operator_matches_sql(wh: Engine, cond: Condition, where: str) -> None:
    q = CubeQuery(
        measures=(m("sales.revenue"), m("sales.lineCount")),
        dimensions=(d("sales.channel"),),
        filters=(cond,),
    )
    want = hand(
        wh, f"SELECT s.channel, sum(s.net), count(*) {FROM} WHERE {where} GROUP BY 1 ORDER BY 1"
    )
    assert want, "the filter should select some rows of the test data"
    assert rows(run(wh, q), "sales.channel", "sales.revenue", "sales.lineCount") == want


def test_set_false_keeps_rows_without_the_member(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("orders.count"),),
        dimensions=(d("orders.status"),),
        filters=(Condition(mem("orders.hoursToDeliver"), Op.SET, (False,)),),
    )
    want = hand(
        wh,
        """SELECT status, count(*) FROM dw.fact_orders
        WHERE hours_to_deliver IS NULL GROUP BY 1 ORDER BY 1""",
    )
    assert want
    assert rows(run(wh, q), "orders.status", "orders.count") == want


def test_nested_and_or_and_filters_on_unselected_members(wh: Engine) -> None:
    flt = Junction(
        "or",
        (
            Condition(mem("sales.status"), Op.EQUALS, ("cancelled",)),
            Junction(
                "and",
                (
                    Condition(mem("sales.channel"), Op.EQUALS, ("web",)),
                    Condition(mem("customers.country"), Op.EQUALS, ("Germany",)),
                ),
            ),
        ),
    )
    q = CubeQuery(
        measures=(m("sales.quantity"),),
        dimensions=(d("products.category"),),
        filters=(flt, Condition(mem("sales.paymentMethod"), Op.NOT_EQUALS, ("card",))),
    )
    want = hand(
        wh,
        f"""SELECT p.category, sum(s.quantity) {FROM}
        WHERE (s.status = 'cancelled' OR (s.channel = 'web' AND c.country = 'Germany'))
          AND s.payment_method <> 'card' GROUP BY 1 ORDER BY 1""",
    )
    assert want
    assert rows(run(wh, q), "products.category", "sales.quantity") == want


def test_measure_filter_applies_to_the_aggregate(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.lineCount"),),
        dimensions=(d("products.brand"),),
        filters=(Condition(mem("sales.revenue"), Op.GT, (20000,)),),
    )
    want = hand(
        wh, f"SELECT p.brand, count(*) {FROM} GROUP BY 1 HAVING sum(s.net) > 20000 ORDER BY 1"
    )
    assert 0 < len(want) < len(hand(wh, f"SELECT DISTINCT p.brand {FROM}"))
    assert rows(run(wh, q), "products.brand", "sales.lineCount") == want


@pytest.mark.parametrize("tz", ["UTC", "Asia/Tokyo", "America/Los_Angeles"])
def test_timezone_decides_buckets_and_date_ranges(wh: Engine, tz: str) -> None:
    q = CubeQuery(
        measures=(m("sales.lineCount"),),
        dimensions=(d("sales.orderedAt", "day"),),
        filters=(
            Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-03-01", "2025-03-10")),
        ),
        timezone=tz,
    )
    want = hand(
        wh,
        """SELECT date_trunc('day', ordered_at AT TIME ZONE %(tz)s), count(*)
        FROM dw.fact_sales WHERE ordered_at >= '2025-03-01'::timestamp AT TIME ZONE %(tz)s
          AND ordered_at < '2025-03-11'::timestamp AT TIME ZONE %(tz)s GROUP BY 1 ORDER BY 1""",
        {"tz": tz},
    )
    got = rows(run(wh, q), "sales.orderedAt.day", "sales.lineCount")
    assert got == want and len(got) >= 5


def test_timezones_really_differ(wh: Engine) -> None:
    def by_day(tz: str) -> list[tuple[Any, ...]]:
        q = CubeQuery(
            measures=(m("sales.lineCount"),),
            dimensions=(d("sales.orderedAt", "day"),),
            filters=(
                Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-03-01", "2025-03-31")),
            ),
            timezone=tz,
        )
        return rows(run(wh, q), "sales.orderedAt.day", "sales.lineCount")

    assert by_day("UTC") != by_day("Pacific/Kiritimati")


@pytest.mark.parametrize("gran", ["week", "month", "quarter", "year"])
def test_granularities(wh: Engine, gran: str) -> None:
    q = CubeQuery(
        measures=(m("orders.count"), m("orders.averageItems")),
        dimensions=(d("orders.orderedAt", gran),),
    )
    want = hand(
        wh,
        f"""SELECT date_trunc('{gran}', ordered_at AT TIME ZONE 'UTC'), count(*),
        avg(item_count) FROM dw.fact_orders GROUP BY 1 ORDER BY 1""",
    )
    got = rows(run(wh, q), f"orders.orderedAt.{gran}", "orders.count", "orders.averageItems")
    assert got == want


def test_value_granularity_is_the_local_timestamp(wh: Engine) -> None:
    q = CubeQuery(
        dimensions=(d("support.openedAt", "value"), d("support.priority")),
        timezone="Europe/Berlin",
        limit=5,
    )
    want = hand(
        wh,
        """SELECT DISTINCT opened_at AT TIME ZONE 'Europe/Berlin', priority
        FROM dw.fact_support ORDER BY 1, 2 LIMIT 5""",
    )
    assert rows(run(wh, q), "support.openedAt.value", "support.priority") == want


def test_segments_apply(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.revenue"),),
        dimensions=(d("sales.status"),),
        segments=(mem("sales.completed"), mem("customers.current")),
    )
    want = hand(
        wh,
        f"""SELECT s.status, sum(s.net) {FROM} WHERE c.is_current
        AND s.status IN ('paid', 'shipped', 'delivered') GROUP BY 1 ORDER BY 1""",
    )
    assert rows(run(wh, q), "sales.status", "sales.revenue") == want


def test_order_limit_offset(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.revenue"),),
        dimensions=(d("customers.country"),),
        order=(OrderItem(mem("sales.revenue"), descending=True),),
        limit=3,
        offset=2,
    )
    want = hand(
        wh,
        f"""SELECT c.country, sum(s.net) {FROM} GROUP BY 1
        ORDER BY 2 DESC, 1 LIMIT 3 OFFSET 2""",
    )
    assert rows(run(wh, q), "customers.country", "sales.revenue") == want


def test_number_measures_and_other_cubes(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.averageOrderValue"), m("sales.marginRate"), m("sales.customerCount")),
        dimensions=(d("customers.ageBand"),),
    )
    want = hand(
        wh,
        f"""SELECT c.age_band, sum(s.net) / NULLIF(count(DISTINCT s.order_id), 0),
        sum(s.margin) / NULLIF(sum(s.net), 0), count(DISTINCT s.customer_id) {FROM}
        GROUP BY 1 ORDER BY 1""",
    )
    got = rows(
        run(wh, q),
        "customers.ageBand",
        "sales.averageOrderValue",
        "sales.marginRate",
        "sales.customerCount",
    )
    assert got == want
    q = CubeQuery(
        measures=(
            m("support.resolutionRate"),
            m("support.averageSatisfaction"),
            m("feedback.complaintRate"),
        ),
        dimensions=(d("customers.segment"),),
    )
    want = hand(
        wh,
        """SELECT s.segment, s.rate, s.sat, f.rate FROM
        (SELECT c.segment, count(*) FILTER (WHERE t.is_resolved)::numeric / count(*) AS rate,
                avg(t.satisfaction) AS sat
         FROM dw.fact_support t JOIN dw.dim_customer c USING (customer_key) GROUP BY 1) s
        FULL JOIN (SELECT c.segment, count(*) FILTER (WHERE is_complaint)::numeric / count(*) rate
         FROM dw.fact_feedback f JOIN dw.dim_customer c USING (customer_key) GROUP BY 1) f
        USING (segment) ORDER BY 1""",
    )
    got = rows(
        run(wh, q),
        "customers.segment",
        "support.resolutionRate",
        "support.averageSatisfaction",
        "feedback.complaintRate",
    )
    assert got == want


def test_dimension_only_and_dimension_cube_measures(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("customers.count"),),
        dimensions=(d("customers.segment"),),
        segments=(mem("customers.current"),),
    )
    want = hand(
        wh,
        """SELECT segment, count(DISTINCT customer_id) FROM dw.dim_customer
        WHERE is_current GROUP BY 1 ORDER BY 1""",
    )
    assert rows(run(wh, q), "customers.segment", "customers.count") == want
    q = CubeQuery(dimensions=(d("products.category"), d("sales.channel")))
    want = hand(wh, f"SELECT DISTINCT p.category, s.channel {FROM} ORDER BY 1, 2")
    assert rows(run(wh, q), "products.category", "sales.channel") == want


def plan_of(wh: Engine, res: Any) -> str:
    """The plan of the statement an answer ran, sequential scans disabled (on this small
    warehouse PostgreSQL would scan anyway): what an index makes possible."""
    import psycopg

    from db.config import to_libpq_url

    url = wh.url.render_as_string(hide_password=False)
    with psycopg.connect(to_libpq_url(url)) as conn:
        conn.execute("SET enable_seqscan = off")
        return "\n".join(r[0] for r in conn.execute("EXPLAIN " + res.sql, res.params))


def test_a_time_range_reads_the_event_time_index(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.revenue"),),
        dimensions=(d("sales.channel"),),
        filters=(
            Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-03-01", "2025-03-07")),
        ),
        segments=(mem("sales.completed"),),  # the facts answer (no rollup)
    )
    plan = plan_of(wh, run(wh, q))
    assert "fact_sales_ordered_at_idx" in plan and "Index Cond: ((ordered_at >=" in plan, plan


def test_an_id_filter_is_an_index_lookup(wh: Engine) -> None:
    """GraphQL numbers are floats: ``orderId: {equals: 42.0}`` must bind as an integer, or
    PostgreSQL compares the bigint key as numeric and cannot use the primary key."""

    order_id = sql(wh, "SELECT min(order_id) FROM dw.fact_orders")[0][0]
    q = CubeQuery(
        measures=(m("orders.count"),),
        filters=(Condition(mem("orders.orderId"), Op.EQUALS, (float(order_id),)),),
    )
    res = run(wh, q)
    assert res.rows[0]["orders.count"] == 1
    plan = plan_of(wh, res)
    assert "Index Cond: (order_id = " in plan, plan
