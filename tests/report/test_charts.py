"""Each report chart plots exactly what the GraphQL ``cube`` API answers.

The expected rows come from GraphQL queries written here, sent to the real app (demo-open)
over its HTTP interface; the chart's DataFrame and the values drawn on its axes must equal
them. No SQL: the report's contract is "the number on the chart is the number the API gives".
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from sqlalchemy.engine import Engine

from api.app import create_app
from api.report import draw, house_style
from api.report_charts import CHARTS, Period, chart, partial_months
from api.security import SecurityConfig
from ml.serving import close_store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

LAST_YEAR = date.today().year - 1
PERIODS = {
    "all": Period(),
    "last_year": Period(date(LAST_YEAR, 1, 1), date(LAST_YEAR, 12, 31)),
}


@pytest.fixture(scope="module")
def api(report_engine: Engine) -> Iterator[TestClient]:
    app = create_app(
        report_engine, security=SecurityConfig(demo_open=True, demo_hosts=("testserver",))
    )
    with TestClient(app) as client:
        yield client
    close_store(report_engine)


def gql(api: TestClient, query: str, **variables: Any) -> list[dict[str, Any]]:
    r = api.post("/graphql", json={"query": query, "variables": variables})
    body = r.json()
    assert r.status_code == 200 and not body.get("errors"), body
    rows: list[dict[str, Any]] = body["data"]["cube"]
    return rows


def when(p: Period, cube: str, member: str) -> dict[str, Any]:
    if p.start is None:
        return {}
    assert p.end is not None
    return {cube: {member: {"inDateRange": [p.start.isoformat(), p.end.isoformat()]}}}


def top5(api: TestClient, p: Period, member: str) -> list[str]:
    rows = gql(
        api,
        f"""query($w: CubeWhere) {{ cube(where: $w, limit: 5,
        orderBy: [{{sales: {{revenue: DESC}}}}, {{products: {{{member}: ASC}}}}]) {{
        products {{ {member} }} }} }}""",
        w=when(p, "sales", "orderedAt"),
    )
    return [r["products"][member] for r in rows]


def expected(api: TestClient, name: str, p: Period) -> list[tuple[Any, ...]]:
    """The rows of the chart ``name`` as the API answers them (same column order)."""
    s = when(p, "sales", "orderedAt")
    match name:
        case "monthly_sales":
            rows = gql(
                api,
                """query($w: CubeWhere) { cube(where: $w) { sales {
                revenue py: revenue(compare: PRIOR_YEAR) orderedAt { month } } } }""",
                w=s,
            )
            return [
                (r["sales"]["orderedAt"]["month"], r["sales"]["revenue"], r["sales"]["py"])
                for r in rows
            ]
        case "top_categories" | "top_products":
            member = "category" if name == "top_categories" else "name"
            names = top5(api, p, member)
            w = {**s, "products": {member: {"in": names}}}
            rows = gql(
                api,
                f"""query($w: CubeWhere) {{ cube(where: $w) {{
                sales {{ revenue orderedAt {{ month }} }} products {{ {member} }} }} }}""",
                w=w,
            )
            return [
                (r["sales"]["orderedAt"]["month"], r["products"][member], r["sales"]["revenue"])
                for r in rows
            ]
        case "returns_by_reason":
            rows = gql(
                api,
                """query($w: CubeWhere) { cube(where: $w) {
                returns { reason count quantity } } }""",
                w=when(p, "returns", "returnedAt"),
            )
            return [
                (r["returns"]["reason"], r["returns"]["count"], r["returns"]["quantity"])
                for r in rows
            ]
        case "returns_by_category":
            w = {**when(p, "returns", "returnedAt"), **s}
            rows = gql(
                api,
                """query($w: CubeWhere) { cube(where: $w) {
                products { category } returns { quantity returnRate } } }""",
                w=w,
            )
            return [
                (r["products"]["category"], r["returns"]["quantity"], r["returns"]["returnRate"])
                for r in rows
            ]
        case "complaints_rating":
            rows = gql(
                api,
                """query($w: CubeWhere) { cube(where: $w) { feedback {
                complaintCount averageRating createdAt { month } } } }""",
                w=when(p, "feedback", "createdAt"),
            )
            return [
                (
                    r["feedback"]["createdAt"]["month"],
                    r["feedback"]["complaintCount"],
                    r["feedback"]["averageRating"],
                )
                for r in rows
            ]
        case "order_status":
            rows = gql(
                api,
                """query($w: CubeWhere) { cube(where: $w) {
                orders { status count } } }""",
                w=when(p, "orders", "orderedAt"),
            )
            return [(r["orders"]["status"], r["orders"]["count"]) for r in rows]
        case "sales_by_segment":
            rows = gql(
                api,
                """query($w: CubeWhere) { cube(where: $w) {
                customers { segment } sales { revenue orderCount averageOrderValue } } }""",
                w=s,
            )
            return [
                (
                    r["customers"]["segment"],
                    r["sales"]["revenue"],
                    r["sales"]["orderCount"],
                    r["sales"]["averageOrderValue"],
                )
                for r in rows
            ]
        case "demographics_age_gender":
            rows = gql(
                api,
                """query($w: CubeWhere) { cube(where: $w) {
                customers { ageBand gender } sales { customerCount } } }""",
                w=s,
            )
            return [
                (r["customers"]["ageBand"], r["customers"]["gender"], r["sales"]["customerCount"])
                for r in rows
            ]
        case "customers_by_country":
            rows = gql(
                api,
                """query($w: CubeWhere) { cube(where: $w) {
                customers { country } sales { customerCount revenue } } }""",
                w=s,
            )
            return [
                (r["customers"]["country"], r["sales"]["customerCount"], r["sales"]["revenue"])
                for r in rows
            ]
    raise AssertionError(f"no expectation for chart {name}")


def norm(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, int | float | np.number):
            return round(float(v), 6)
        return v

    return sorted((tuple(one(v) for v in r) for r in rows), key=repr)


def frame_rows(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in df.astype(object).itertuples(index=False)]


@pytest.mark.parametrize("period", PERIODS, ids=list(PERIODS))
@pytest.mark.parametrize("name", [c.name for c in CHARTS])
def test_chart_data_equals_the_cube_api_answer(
    report_engine: Engine, api: TestClient, name: str, period: str
) -> None:
    p = PERIODS[period]
    with report_engine.connect() as conn:
        df = chart(name).data(conn, p)
    want = expected(api, name, p)
    assert len(want) >= 2, "the shop should give every chart something to draw"
    assert norm(frame_rows(df)) == norm(want)


def plotted(ax: Axes, name: str, df: pd.DataFrame) -> tuple[list[float], list[float]]:
    """(values drawn on the axes, values of the DataFrame they should show), sorted."""
    bars = [p for p in ax.patches if hasattr(p, "get_height")]
    heights = [float(b.get_height()) for b in bars]  # type: ignore[attr-defined]
    widths = [float(b.get_width()) for b in bars]  # type: ignore[attr-defined]
    match name:
        case "monthly_sales":
            return heights, [*df["prior_year"].fillna(0), *df["revenue"]]
        case "top_categories":
            ys = [float(y) for line in ax.lines for y in line.get_ydata()]  # type: ignore[union-attr]
            return ys, list(df["revenue"])
        case "top_products":  # one bar per product: its total over the period
            return widths, list(df.groupby("name")["revenue"].sum())
        case "returns_by_reason":
            return widths, list(df["requests"])
        case "returns_by_category":
            return widths, list(df["return_rate"].fillna(0) * 100)
        case "complaints_rating":
            return heights, list(df["complaints"])
        case "order_status":
            return widths, list(df["orders"])
        case "sales_by_segment":
            return heights, list(df["revenue"])
        case "demographics_age_gender":
            cells = ax.collections[0].get_array()
            assert cells is not None
            return [float(v) for v in np.ravel(cells) if v], list(df["customers"])
        case "customers_by_country":
            return widths, list(df["revenue"])
    raise AssertionError(name)


@pytest.mark.parametrize("name", [c.name for c in CHARTS])
def test_the_axes_show_the_frame(report_engine: Engine, name: str) -> None:
    c = chart(name)
    with report_engine.connect() as conn:
        df = c.data(conn, Period())
    with house_style():
        fig = draw(c, df)
    ax = fig.axes[0]
    got, want = plotted(ax, name, df)
    assert sorted(round(v, 4) for v in got if not np.isnan(v)) == sorted(
        round(float(v), 4) for v in want
    )
    assert ax.get_title() == c.title
    assert ax.get_xlabel() and ax.get_ylabel()
    assert c.finding(df) and "nan" not in c.finding(df).lower()


def test_open_ended_periods_include_their_boundary_day(report_engine: Engine) -> None:
    c = chart("order_status")
    start, end = date(LAST_YEAR, 3, 1), date(LAST_YEAR, 9, 30)
    with report_engine.connect() as conn:
        from_only = c.data(conn, Period(start, None))
        to_only = c.data(conn, Period(None, end))
        closed_from = c.data(conn, Period(start, date(2999, 12, 31)))
        closed_to = c.data(conn, Period(date(1900, 1, 1), end))
        everything = c.data(conn, Period())
    assert frame_rows(from_only) == frame_rows(closed_from)
    assert frame_rows(to_only) == frame_rows(closed_to)
    assert from_only["orders"].sum() + to_only["orders"].sum() > everything["orders"].sum()


def test_percent_ticks_say_what_they_mark() -> None:
    """Each tick label of the return-rate axis is its position, not a rounding of it (rates
    up to 18% put ticks every 2.5%: once labelled "2%, 5%, 8%, 12%, 18%")."""
    c = chart("returns_by_category")
    df = pd.DataFrame(
        {
            "category": ["a", "b", "c", "d", "e"],
            "units_returned": [1, 2, 3, 4, 5],
            "return_rate": [0.18, 0.12, 0.08, 0.05, 0.02],
        }
    )
    with house_style():
        fig = draw(c, df)
    ax = fig.axes[0]
    fig.canvas.draw()
    for tick, label in zip(ax.get_xticks(), ax.get_xticklabels(), strict=True):
        text = label.get_text().replace("\N{MINUS SIGN}", "-").rstrip("%")
        if text:
            assert float(text) == pytest.approx(tick, abs=1e-9), (tick, label.get_text())


def test_monthly_colours_are_the_dashboards(report_engine: Engine) -> None:
    from matplotlib.colors import to_hex

    from api.report_charts import PALETTE

    c = chart("monthly_sales")
    with report_engine.connect() as conn:
        df = c.data(conn, Period())
    with house_style():
        fig = draw(c, df)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    colours = {
        lab: to_hex(h.patches[0].get_facecolor()) for h, lab in zip(handles, labels, strict=True)
    }
    assert colours == {
        "prior year": PALETTE["series"]["priorYear"],
        "this period": PALETTE["series"]["revenue"],
    }


def test_partial_months_are_the_running_one_and_those_the_period_cuts() -> None:
    months = ["2025-02", "2025-03", "2025-04", "2025-05", "2025-06"]
    today = date(2025, 6, 12)
    assert partial_months(months, Period(), today) == {"2025-06"}
    cut = Period(date(2025, 3, 15), date(2025, 5, 10))
    assert partial_months(months, cut, today) == {"2025-03", "2025-05", "2025-06"}
    whole = Period(date(2025, 2, 1), date(2025, 5, 31))
    assert partial_months(months, whole, date(2026, 1, 1)) == set()


def test_monthly_bars_of_partial_months_are_marked(report_engine: Engine) -> None:
    c = chart("monthly_sales")
    with report_engine.connect() as conn:
        df = c.data(conn, Period(date(2025, 3, 15), date(2025, 5, 10)))
    assert [m[:7] for m in df["month"]] == ["2025-03", "2025-04", "2025-05"]
    assert df.attrs["partial"] == ["2025-03", "2025-05"]
    with house_style():
        fig = draw(c, df)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["2025-03*", "2025-04", "2025-05*"]
    this_period = ax.containers[1]
    assert [bar.get_hatch() for bar in this_period] == ["//", None, "//"]
    assert "partial month" in ax.get_xlabel()


def _legend(ax: Axes) -> dict[str, Any]:
    """The legend's entries: label -> the hatch its key is drawn with."""
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    return {t: h.get_hatch() for t, h in zip(texts, legend.legend_handles, strict=True)}


def test_the_monthly_legend_says_what_hatching_shows(report_engine: Engine) -> None:
    """Probe p21 F4: the "this period" key copied the first bar, hatched when the period
    starts inside a month, as if every bar of the period were partial. The key is plain
    and a hatched key says "partial month", whichever end of the range is cut."""
    c = chart("monthly_sales")
    with report_engine.connect() as conn, house_style():
        for period, partial in (
            (Period(date(2025, 3, 15), date(2025, 5, 31)), ["2025-03"]),  # the first month
            (Period(date(2025, 3, 1), date(2025, 5, 10)), ["2025-05"]),  # the last month
            (Period(date(2025, 3, 1), date(2025, 5, 31)), []),
        ):
            df = c.data(conn, period)
            assert df.attrs["partial"] == partial
            keys = _legend(draw(c, df).axes[0])
            want = {"prior year": None, "this period": None}
            assert keys == (want | {"partial month": "//"} if partial else want), period


def test_every_chart_over_months_marks_partial_months(report_engine: Engine) -> None:
    """Issue 16: not only the revenue bars: complaints per month and the categories' monthly
    lines dropped in a month the period cuts (or the running one) just the same."""
    cut = Period(date(2025, 3, 15), date(2025, 5, 10))
    with report_engine.connect() as conn, house_style():
        feedback = chart("complaints_rating").data(conn, cut)
        assert feedback.attrs["partial"] == ["2025-03", "2025-05"]
        ax = draw(chart("complaints_rating"), feedback).axes[0]
        assert [bar.get_hatch() for bar in ax.containers[0]] == ["//", None, "//"]
        assert "partial month" in ax.get_xlabel()

        categories = chart("top_categories").data(conn, cut)
        assert categories.attrs["partial"] == ["2025-03", "2025-05"]
        ax = draw(chart("top_categories"), categories).axes[0]
        assert "partial month" in ax.get_xlabel()
        assert len([p for p in ax.patches if p.get_hatch() == "//"]) == 2  # one band each


def test_the_monthly_finding_compares_like_for_like(report_engine: Engine, api: TestClient) -> None:
    """The latest year up to its last day of sales is compared with the same days a year
    earlier: with no end date, the month that has only begun was compared with the whole of
    that month a year earlier (two days of December against all of last December)."""
    c = chart("monthly_sales")
    with report_engine.connect() as conn:
        df = c.data(conn, Period())
    last_day = gql(
        api,
        """{ cube(orderBy: [{sales: {orderedAt: DESC}}], limit: 1) {
             sales { orderedAt { day } } } }""",
    )[0]["sales"]["orderedAt"]["day"][:10]
    year = int(last_day[:4])

    def revenue(start: str, stop: str) -> float:
        rows = gql(
            api,
            "query($w: CubeWhere) { cube(where: $w) { sales { revenue } } }",
            w={"sales": {"orderedAt": {"inDateRange": [start, stop]}}},
        )
        return float(rows[0]["sales"]["revenue"])

    now = revenue(f"{year}-01-01", last_day)
    before = revenue(f"{year - 1}-01-01", f"{year - 1}{last_day[4:]}")
    finding = c.finding(df)
    assert f"Revenue from {year}-01-01 to {last_day} was {now:,.0f}" in finding, finding
    assert f"{(now - before) / before * 100:+.1f}% against the same days of {year - 1}" in finding
    assert f"(01-01 to {last_day[5:]})" in finding


def test_status_bars_have_the_dashboards_status_colours(report_engine: Engine) -> None:
    from matplotlib.colors import to_hex

    from api.report_charts import PALETTE

    c = chart("order_status")
    with report_engine.connect() as conn:
        df = c.data(conn, Period())
    with house_style():
        fig = draw(c, df)
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    bars = sorted(ax.patches, key=lambda b: b.get_y())  # type: ignore[attr-defined]
    colours = {lab: to_hex(b.get_facecolor()) for lab, b in zip(labels, bars, strict=True)}
    assert len(colours) >= 3
    assert colours == {s: PALETTE["status"][s] for s in labels}
