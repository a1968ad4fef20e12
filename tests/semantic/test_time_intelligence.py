"""compare (PRIOR_PERIOD, PRIOR_YEAR), toDate, shareOfTotal and rank, against hand-written SQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from db.engine import make_engine
from db.errors import BadUserInputError
from db.seed import seed
from etl import pipeline, runner
from semantic.model import Granularity
from semantic.query import Change, Compare, Condition, CubeQuery, Op, Rolling, ToDate
from tests.semantic.conftest import d, m, mem, num, run, sql


def revenue_by_month(wh: Engine, lo: str, hi: str, by_category: bool = False) -> dict[Any, float]:
    rows = sql(
        wh,
        """SELECT to_char(date_trunc('month', s.ordered_at AT TIME ZONE 'UTC'),
                                      'YYYY-MM-DD"T"HH24:MI:SS'),
                             CASE WHEN %(c)s THEN p.category END, sum(s.net)
        FROM dw.fact_sales s JOIN dw.dim_product p USING (product_key)
        WHERE s.ordered_at >= %(lo)s::timestamptz AND s.ordered_at < %(hi)s::timestamptz
        GROUP BY 1, 2""",
        {"lo": lo, "hi": hi, "c": by_category},
    )
    return {(r[0], r[1]) if by_category else r[0]: float(r[2]) for r in rows}


def in_range(lo: str, hi: str) -> Condition:
    return Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, (lo, hi))


def test_prior_period_reaches_outside_the_filtered_range(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.revenue"), m("sales.revenue", "prev", compare=Compare.PRIOR_PERIOD)),
        dimensions=(d("sales.orderedAt", "month"),),
        filters=(in_range("2025-03-01", "2025-05-31"),),
    )
    got = {r["sales.orderedAt.month"]: (r["sales.revenue"], r["prev"]) for r in run(wh, q).rows}
    by_month = revenue_by_month(wh, "2025-02-01Z", "2025-06-01Z")
    assert list(got) == ["2025-03-01T00:00:00", "2025-04-01T00:00:00", "2025-05-01T00:00:00"]
    assert got["2025-03-01T00:00:00"][1] == by_month["2025-02-01T00:00:00"]  # February: outside
    assert got["2025-04-01T00:00:00"][1] == by_month["2025-03-01T00:00:00"]
    assert got["2025-05-01T00:00:00"][1] == by_month["2025-04-01T00:00:00"]


def test_prior_period_of_a_partial_range_is_like_for_like(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.revenue", "prev", compare=Compare.PRIOR_PERIOD),),
        dimensions=(d("sales.orderedAt", "month"),),
        filters=(in_range("2025-04-01", "2025-04-14"),),
    )
    (row,) = run(wh, q).rows
    want = sql(
        wh,
        """SELECT sum(net) FROM dw.fact_sales
        WHERE ordered_at >= '2025-03-01Z' AND ordered_at < '2025-03-15Z'""",
    )[0][0]
    assert row["prev"] == float(want)


def test_prior_year_per_category(wh: Engine) -> None:
    q = CubeQuery(
        measures=(m("sales.revenue", "py", compare=Compare.PRIOR_YEAR),),
        dimensions=(d("sales.orderedAt", "month"), d("products.category")),
        filters=(in_range("2025-01-01", "2025-06-30"),),
    )
    last_year = revenue_by_month(wh, "2024-01-01Z", "2024-07-01Z", by_category=True)
    got = run(wh, q).rows
    assert len(got) > 20
    for r in got:
        key = (r["sales.orderedAt.month"].replace("2025-", "2024-", 1), r["products.category"])
        assert r["py"] == last_year.get(key), key


def test_to_date_is_a_running_total_that_restarts(wh: Engine) -> None:
    q = CubeQuery(
        measures=(
            m("sales.revenue"),
            m("sales.revenue", "ytd", to_date=ToDate.YEAR),
            m("sales.revenue", "qtd", to_date=ToDate.QUARTER),
        ),
        dimensions=(d("sales.orderedAt", "month"),),
        filters=(in_range("2024-10-01", "2025-05-31"),),
    )
    got = run(wh, q).rows
    assert len(got) == 8
    by_month = revenue_by_month(wh, "2024-01-01Z", "2025-06-01Z")  # from the year's start
    ytd: dict[str, float] = defaultdict(float)
    qtd: dict[str, float] = defaultdict(float)
    shown = {r["sales.orderedAt.month"]: r for r in got}
    for month in sorted(by_month):
        ytd[month[:4]] += by_month[month]
        quarter = month[:4] + str((int(month[5:7]) - 1) // 3)
        qtd[quarter] += by_month[month]
        if month in shown:
            assert num(shown[month]["ytd"]) == num(ytd[month[:4]])
            assert num(shown[month]["qtd"]) == num(qtd[quarter])
    assert got[3]["ytd"] == got[3]["sales.revenue"]  # January restarts the year


def test_share_of_total_and_rank_within_each_bucket(wh: Engine) -> None:
    q = CubeQuery(
        measures=(
            m("sales.revenue"),
            m("sales.revenue", "share", share_of_total=True),
            m("sales.revenue", "rank", rank=True),
        ),
        dimensions=(d("sales.orderedAt", "quarter"), d("products.category")),
        filters=(in_range("2025-01-01", "2025-12-31"),),
    )
    got = run(wh, q).rows
    by_quarter: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in got:
        by_quarter[r["sales.orderedAt.quarter"]].append(r)
    assert len(by_quarter) == 4
    for rows in by_quarter.values():
        total = sum(r["sales.revenue"] for r in rows)
        assert abs(sum(r["share"] for r in rows) - 1) < 1e-9
        for r in rows:
            assert num(r["share"]) == num(r["sales.revenue"] / total)
        ordered = sorted(rows, key=lambda r: -r["sales.revenue"])
        assert [r["rank"] for r in ordered] == list(range(1, len(rows) + 1))
    q = CubeQuery(
        measures=(m("sales.revenue", "share", share_of_total=True),),
        dimensions=(d("sales.channel"),),
    )
    assert abs(sum(r["share"] for r in run(wh, q).rows) - 1) < 1e-9


def revenue_between(wh: Engine, lo: str, hi_exclusive: str) -> float:
    (value,) = sql(
        wh,
        "SELECT sum(net) FROM dw.fact_sales WHERE ordered_at >= %s::timestamptz"
        " AND ordered_at < %s::timestamptz",
        (lo, hi_exclusive),
    )[0]
    return float(value)


def one_prior(wh: Engine, compare: Compare, lo: str, hi: str) -> Any:
    q = CubeQuery(
        measures=(m("sales.revenue", "prior", compare=compare),),
        dimensions=(d("sales.orderedAt", "month"),),
        filters=(in_range(lo, hi),),
    )
    (row,) = run(wh, q).rows
    return row["prior"]


def test_prior_period_of_a_range_ending_near_a_month_end_keeps_every_day(wh: Engine) -> None:
    """1-28 March compares with all of February (28 days), 1-30 May with all of April:
    the exclusive end shifted back lands past the shorter month's end and must not clamp."""
    feb = revenue_between(wh, "2025-02-01Z", "2025-03-01Z")
    assert one_prior(wh, Compare.PRIOR_PERIOD, "2025-03-01", "2025-03-28") == feb
    april = revenue_between(wh, "2025-04-01Z", "2025-05-01Z")
    assert one_prior(wh, Compare.PRIOR_PERIOD, "2025-05-01", "2025-05-30") == april
    march = revenue_between(wh, "2025-03-01Z", "2025-04-01Z")
    assert one_prior(wh, Compare.PRIOR_PERIOD, "2025-04-01", "2025-04-30") == march


@pytest.fixture(scope="module")
def leap_wh(clone_database: Callable[[str], str]) -> Iterator[Engine]:
    """A small warehouse whose history (July 2022 to June 2025) holds two Februaries
    before the leap day of 2024 and one after it."""
    url = clone_database("leap")
    seed(url, 80, 8000, 7, end=date(2025, 7, 1), years=3)
    pipeline.run(url)
    yield make_engine(url)
    runner.dispose(url)


def test_prior_year_around_the_29th_of_february(leap_wh: Engine) -> None:
    """1-28 Feb 2024 (a leap year) compares with all of Feb 2023 (the exclusive end, the
    29th, does not exist in 2023: it must not clamp back to the 28th); all of Feb 2025 with
    all of Feb 2024, its 29th included."""
    feb23 = revenue_between(leap_wh, "2023-02-01Z", "2023-03-01Z")
    assert feb23 != revenue_between(leap_wh, "2023-02-01Z", "2023-02-28Z")  # the 28th sold
    assert one_prior(leap_wh, Compare.PRIOR_YEAR, "2024-02-01", "2024-02-28") == feb23
    feb24 = revenue_between(leap_wh, "2024-02-01Z", "2024-03-01Z")
    assert one_prior(leap_wh, Compare.PRIOR_YEAR, "2025-02-01", "2025-02-28") == feb24
    first28 = revenue_between(leap_wh, "2024-02-01Z", "2024-02-29Z")
    assert first28 != feb24  # the 29th had sales: the comparison above really includes it


def test_to_date_starts_at_the_period_start_whatever_the_filter(wh: Engine) -> None:
    """With March-May selected, March's year-to-date is January to March."""
    q = CubeQuery(
        measures=(
            m("sales.revenue"),
            m("sales.revenue", "ytd", to_date=ToDate.YEAR),
            m("sales.revenue", "qtd", to_date=ToDate.QUARTER),
        ),
        dimensions=(d("sales.orderedAt", "month"),),
        filters=(in_range("2025-03-01", "2025-05-31"),),
    )
    got = {r["sales.orderedAt.month"][:7]: r for r in run(wh, q).rows}
    assert list(got) == ["2025-03", "2025-04", "2025-05"]
    ytd_march = revenue_between(wh, "2025-01-01Z", "2025-04-01Z")
    assert num(got["2025-03"]["ytd"]) == num(ytd_march)
    assert num(got["2025-05"]["ytd"]) == num(revenue_between(wh, "2025-01-01Z", "2025-06-01Z"))
    assert num(got["2025-03"]["qtd"]) == num(revenue_between(wh, "2025-01-01Z", "2025-04-01Z"))
    assert num(got["2025-04"]["qtd"]) == num(got["2025-04"]["sales.revenue"])  # Q2 restarts
    # a range that starts mid-month: the to-date value still starts on 1 January, and the
    # month's own value is only the filtered days
    q = CubeQuery(
        measures=(m("sales.revenue"), m("sales.revenue", "ytd", to_date=ToDate.YEAR)),
        dimensions=(d("sales.orderedAt", "month"),),
        filters=(in_range("2025-03-10", "2025-03-20"),),
    )
    (row,) = run(wh, q).rows
    assert num(row["sales.revenue"]) == num(revenue_between(wh, "2025-03-10Z", "2025-03-21Z"))
    assert num(row["ytd"]) == num(revenue_between(wh, "2025-01-01Z", "2025-03-21Z"))


def test_rolling_a_ratio_rolls_its_parts_and_totals_of_time_have_none(wh: Engine) -> None:
    """A number measure over sums rolls each part (margin and revenue over the window, then
    divided); a subtotal row that totals time has no running or moving value."""
    q = CubeQuery(
        measures=(
            m("sales.marginRate"),
            m("sales.marginRate", "rolled", rolling=Rolling(2, Granularity.MONTH)),
            m("sales.revenue", "ytd", to_date=ToDate.YEAR),
        ),
        dimensions=(d("sales.orderedAt", "month"), d("sales.channel")),
        filters=(in_range("2025-02-01", "2025-04-30"),),
        subtotals=True,
    )
    res = run(wh, q)
    parts = {
        (mo, ch): (float(margin), float(net))
        for mo, ch, margin, net in sql(
            wh,
            """SELECT to_char(date_trunc('month', ordered_at AT TIME ZONE 'UTC'), 'YYYY-MM'),
                      channel, sum(margin), sum(net) FROM dw.fact_sales
               WHERE ordered_at >= '2025-01-01Z' AND ordered_at < '2025-05-01Z'
               GROUP BY 1, 2""",
        )
    }
    previous = {"2025-02": "2025-01", "2025-03": "2025-02", "2025-04": "2025-03"}
    checked = 0
    for r, totals in zip(res.rows, res.totals, strict=True):
        if "sales.orderedAt.month" in totals:
            assert r["rolled"] is None and r["ytd"] is None
            continue
        if totals:
            continue  # a month's subtotal over channels
        month, channel = r["sales.orderedAt.month"][:7], r["sales.channel"]
        window = [parts.get((x, channel), (0.0, 0.0)) for x in (previous[month], month)]
        margin, net = sum(p[0] for p in window), sum(p[1] for p in window)
        assert num(r["rolled"]) == num(margin / net), (month, channel)
        checked += 1
    assert checked >= 12


def test_bad_windows_are_bad_input(wh: Engine) -> None:
    def refused(**mods: Any) -> str:
        q = CubeQuery(
            measures=(m("sales.revenue", "x", **mods),),
            dimensions=(d("sales.orderedAt", "month"),),
        )
        with pytest.raises(BadUserInputError) as info:
            run(wh, q)
        return str(info.value.fields["field"])

    assert refused(rolling=Rolling(0, Granularity.MONTH)) == "sales.revenue"
    assert refused(rolling=Rolling(3, Granularity.WEEK)) == "sales.revenue"  # weeks split months
    assert refused(change=Change.DIFFERENCE) == "sales.revenue"  # as without compare
    q = CubeQuery(
        measures=(m("sales.orderCount", "x", rolling=Rolling(3, Granularity.MONTH)),),
        dimensions=(d("sales.orderedAt", "month"),),
    )
    with pytest.raises(BadUserInputError):
        run(wh, q)  # distinct counts do not add up over months
