"""Rollups answer exactly what the facts answer, and only when they can; a property test
draws random covered queries and compares both paths."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from semantic.model import Granularity
from semantic.query import (
    Change,
    Compare,
    Condition,
    CubeQuery,
    Junction,
    Op,
    OrderItem,
    Rolling,
    ToDate,
)
from tests.semantic.conftest import d, m, mem, run

SALES_MEASURES = [
    "revenue",
    "grossRevenue",
    "discount",
    "cost",
    "margin",
    "quantity",
    "lineCount",
    "marginRate",
]
# the two sales rollups: what each covers (dimensions, time buckets, range bounds)
MONTHLY = {
    "dims": ["sales.status", "sales.channel", "products.category", "customers.country"],
    "grans": ["month", "quarter", "year"],
    "starts": ["01-01", "03-01", "04-01"],
    "ends": ["06-30", "09-30", "12-31"],
}
DAILY = {
    "dims": ["sales.status", "sales.channel", "products.category"],
    "grans": ["day", "week", "month", "quarter", "year"],
    "starts": ["01-01", "03-01", "04-15"],
    "ends": ["06-30", "09-10", "12-31"],
}
VALUES = {
    "sales.status": ["delivered", "cancelled", "returned", "shipped"],
    "sales.channel": ["web", "mobile", "store", "phone", "marketplace"],
    "products.category": ["Electronics", "Books", "Apparel", "Furniture"],
    "customers.country": ["Germany", "France", "United States", "Spain"],
}


def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.keys() != y.keys():
            return False
        for k in x:
            u, v = x[k], y[k]
            if isinstance(u, float) or isinstance(v, float):
                if u is None or v is None or not math.isclose(u, v, rel_tol=1e-12, abs_tol=1e-9):
                    return False
            elif u != v:
                return False
    return True


def both(wh: Engine, q: CubeQuery) -> tuple[Any, Any]:
    return run(wh, q), run(wh, q, use_rollups=False)


def test_rollup_answers_exactly_when_it_can(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.revenue"), m("sales.marginRate")),
        dimensions=(d("sales.orderedAt", "quarter"), d("products.category")),
        filters=(
            Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2024-01-01", "2025-06-30")),
        ),
    )
    fast, slow = both(wh, q)
    assert fast.rollups == ("sales.monthlyByCategory",) and slow.rollups == ()
    assert "dw_rollup.sales_monthly_by_category" in fast.sql and "dw_rollup" not in slow.sql
    assert same(list(fast.rows), list(slow.rows)) and len(fast.rows) > 20


def test_finer_needs_pick_the_finer_rollup_or_the_facts(wh: Engine) -> None:
    def used(**kw: Any) -> tuple[str, ...]:
        base: dict[str, Any] = {
            "measures": (m("sales.revenue"),),
            "dimensions": (d("sales.orderedAt", "month"),),
        }
        q = CubeQuery(**(base | kw))
        fast, slow = both(wh, q)
        assert same(list(fast.rows), list(slow.rows))
        return fast.rollups

    assert used() == ("sales.monthlyByCategory",)
    assert used(dimensions=(d("sales.orderedAt", "week"),)) == ("sales.daily",)
    mid_month = Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-01-10", "2025-02-20"))
    assert used(filters=(mid_month,)) == ("sales.daily",)
    instant = Condition(mem("sales.orderedAt"), Op.AFTER_DATE, ("2025-01-10T12:00:00",))
    assert used(filters=(instant,)) == ()
    assert used(measures=(m("sales.orderCount"),)) == ()  # count_distinct: facts only
    assert used(segments=(mem("sales.completed"),)) == ()
    assert used(timezone="Asia/Tokyo") == ()  # rollups are bucketed in UTC
    assert used(dimensions=(d("sales.orderedAt", "value"),), limit=50) == ()
    assert used(dimensions=(d("customers.city"),)) == ()  # not in any rollup


def test_stale_rollups_are_not_used(wh: Engine) -> None:
    from semantic.service import execute

    q = CubeQuery(measures=(m("sales.revenue"),), dimensions=(d("products.category"),))
    with wh.connect() as conn:
        assert execute(conn, q, use_cache=False).rollups
        conn.exec_driver_sql("UPDATE dw.etl_state SET version = version + 1")
        stale = execute(conn, q, use_cache=False)
        assert stale.rollups == ()
        conn.rollback()


def test_avg_measures_come_back_exact_from_rollups(wh: Engine) -> None:
    q = CubeQuery(
        measures=(
            m("orders.averageItems"),
            m("orders.cancellationRate"),
            m("orders.averageHoursToDeliver"),
        ),
        dimensions=(d("orders.orderedAt", "month"), d("customers.segment")),
        subtotals=True,
    )
    fast, slow = both(wh, q)
    assert fast.rollups == ("orders.monthlyByCustomer",)
    assert same(list(fast.rows), list(slow.rows)) and fast.totals == slow.totals


@st.composite
def covered_queries(draw: st.DrawFn) -> CubeQuery:
    rollup = draw(st.sampled_from([MONTHLY, DAILY]))
    measures = draw(st.lists(st.sampled_from(SALES_MEASURES), min_size=1, max_size=3, unique=True))
    dims = draw(st.lists(st.sampled_from(rollup["dims"]), max_size=2, unique=True))
    gran = draw(st.none() | st.sampled_from(rollup["grans"]))
    fields = [d(x) for x in dims] + ([d("sales.orderedAt", gran)] if gran else [])
    filters: list[Any] = []
    for member in draw(st.lists(st.sampled_from(rollup["dims"]), max_size=2, unique=True)):
        op = draw(st.sampled_from([Op.EQUALS, Op.NOT_EQUALS, Op.IN, Op.NOT_IN]))
        pool = VALUES[member]
        values = draw(
            st.lists(
                st.sampled_from(pool),
                min_size=1,
                max_size=1 if op in (Op.EQUALS, Op.NOT_EQUALS) else 3,
                unique=True,
            )
        )
        filters.append(Condition(mem(member), op, tuple(values)))
    if draw(st.booleans()):
        year = draw(st.sampled_from(["2024", "2025"]))
        lo = draw(st.sampled_from(rollup["starts"]))
        hi = draw(st.sampled_from(rollup["ends"]))
        filters.append(
            Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, (f"{year}-{lo}", f"{year}-{hi}"))
        )
    if len(filters) > 1 and draw(st.booleans()):
        filters = [Junction("or", tuple(filters))]
    if draw(st.booleans()):
        filters.append(Condition(mem(f"sales.{measures[0]}"), Op.GT, (draw(st.integers(0, 5000)),)))
    order = (
        (OrderItem(mem(f"sales.{measures[0]}"), descending=True),) if draw(st.booleans()) else ()
    )
    fields_m = [m(f"sales.{x}") for x in measures]
    if gran in ("month", "quarter", "year") and draw(st.booleans()):
        # a time-intelligence field: its other time ranges come from the same rollup
        base = draw(st.sampled_from(["revenue", "lineCount", "marginRate"]))
        mods = draw(
            st.sampled_from(
                [
                    {"compare": Compare.PRIOR_PERIOD, "change": Change.PERCENT_CHANGE},
                    {"compare": Compare.PRIOR_YEAR, "change": Change.DIFFERENCE},
                    {"to_date": ToDate.YEAR},
                    {"rolling": Rolling(2, Granularity(gran))},
                    {"rolling": Rolling(3, Granularity.YEAR, leading=True)},
                ]
            )
        )
        fields_m.append(m(f"sales.{base}", "ti", **mods))
    return CubeQuery(
        measures=tuple(fields_m),
        dimensions=tuple(fields),
        filters=tuple(filters),
        order=order,
        subtotals=draw(st.booleans()),
        limit=draw(st.sampled_from([10_000, 7])),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=covered_queries())
def test_property_rollup_path_equals_raw_path(wh: Engine, q: CubeQuery) -> None:
    fast, slow = both(wh, q)
    assert fast.rollups, "every drawn query is covered by a rollup"
    assert not slow.rollups
    assert same(list(fast.rows), list(slow.rows)), (fast.sql, fast.rows[:3], slow.rows[:3])
    assert fast.totals == slow.totals


def test_explain_reports_compression_and_hits_across_rebuilds(
    fresh_database: Callable[[], str],
) -> None:
    from db.engine import make_engine
    from semantic.rollup_report import explain
    from semantic.rollups import build_all
    from semantic.service import execute
    from semantic.validate import default_model
    from tests.semantic.conftest import load_warehouse, sql

    url = fresh_database()
    load_warehouse(url, 40, 300, 3)
    engine = make_engine(url)
    model = default_model()
    q = CubeQuery(measures=(m("sales.revenue"),), dimensions=(d("products.category"),))

    def read_twice() -> None:
        with engine.connect() as conn:
            for _ in range(2):
                assert execute(conn, q, use_cache=False).rollups == ("sales.monthlyByCategory",)

    read_twice()
    stats = {s.name: s for s in explain(engine, model)}
    lines = sql(url, "SELECT count(*) FROM dw.fact_sales")[0][0]
    monthly = stats["sales.monthlyByCategory"]
    analyzed = sql(
        url,
        "SELECT reltuples::bigint FROM pg_class"
        " WHERE oid = 'dw_rollup.sales_monthly_by_category'::regclass",
    )[0][0]
    assert monthly.source_rows == lines and monthly.rows == analyzed
    assert math.isclose(monthly.compression, lines / monthly.rows)
    assert monthly.hits == 2 and stats["sales.daily"].hits == 0
    assert "no query has read it" in stats["sales.daily"].verdict
    build_all(engine, model, force=True)  # a rebuild keeps the count
    read_twice()
    assert {s.name: s.hits for s in explain(engine, model)}["sales.monthlyByCategory"] == 4
    # a rollup declared otherwise than it was built is neither used nor kept
    sql(url, "UPDATE dw_rollup.build SET definition = 'older' WHERE name = 'sales.daily'")
    sql(url, "CREATE TABLE dw_rollup.sales_retired (x int)")
    week = CubeQuery(measures=(m("sales.revenue"),), dimensions=(d("sales.orderedAt", "week"),))
    with engine.connect() as conn:
        assert execute(conn, week, use_cache=False).rollups == ()
    assert [b.name for b in build_all(engine, model)] == ["sales.daily"]
    with engine.connect() as conn:
        assert execute(conn, week, use_cache=False).rollups == ("sales.daily",)
    assert sql(url, "SELECT to_regclass('dw_rollup.sales_retired') IS NULL") == [(True,)]
    engine.dispose()
