"""The dashboard's readability and state, in headless Chromium: chronological time axes
after drilling, one colour per status and series, no overlapping or clipped text (also at
phone width), labelled slices, tooltips with units, the state in the URL, the at-risk
table under the filters with links to the order, a rate's change in percentage points."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.dashboard.conftest import Page, cube_http
from tests.dashboard.test_browser import _click_bar, bar_labels

pytestmark = pytest.mark.browser

PALETTE = json.loads(
    (Path(__file__).resolve().parents[2] / "api/dashboard/static/palette.json").read_text()
)
CHARTS = ["c-month", "c-segment", "c-status", "c-geo", "c-cat", "c-demo", "c-returns"]


def ready(dash: Page) -> int:
    return int(dash.page.get_attribute("body", "data-ready") or 0)


def tick_texts(dash: Page, chart: str, axis: str = "x") -> list[str]:
    return [t for t in dash.page.locator(f"#{chart} .{axis}tick text").all_text_contents() if t]


def drill_deep(dash: Page) -> None:
    """Top country → its top region, then the top category: few rows per month left."""
    for chart in ("c-geo", "c-geo", "c-cat"):
        labels = bar_labels(dash, chart)
        before = ready(dash)
        _click_bar(dash, chart, labels[-1])
        dash.wait_ready(before)


def test_time_axes_stay_chronological_after_drilling(dash: Page) -> None:
    dash.open()
    drill_deep(dash)
    assert "(by subcategory)" in dash.page.inner_text("#b-cat")
    for chart in ("c-month", "c-returns"):
        months = tick_texts(dash, chart)
        assert len(months) >= 2, (chart, months)
        assert months == sorted(months), (chart, months)
        # every trace's points left to right in calendar order too (no zig-zag)
        for trace in dash.page.locator(f"#{chart}").evaluate("e => e.data.map(t => t.x)"):
            assert list(trace) == sorted(trace), (chart, trace)
    assert dash.errors == []


def test_month_axes_are_chronological_whatever_order_the_rows_come_in(dash: Page) -> None:
    """The renderers themselves, fed rows out of order and months missing from one trace
    (what a drill-down into a small city returns): the axis still reads Jan, Feb, Mar, Apr."""
    dash.open()
    ticks = dash.page.evaluate(
        """async () => {
          const c = await import('/dashboard/static/charts.js');
          await c.returnsAndComplaints('c-returns',
            [{month: '2026-03-01', count: 2}, {month: '2026-01-01', count: 1}],
            [{month: '2026-04-01', count: 1}, {month: '2026-02-01', count: 4},
             {month: '2026-01-01', count: 3}]);
          await c.salesByMonth('c-month',
            [{month: '2026-02-01', revenue: 5, priorYear: 4},
             {month: '2026-01-01', revenue: 3, priorYear: 2}]);
          const t = (id) => [...document.querySelectorAll(`#${id} .xtick text`)]
            .map((e) => e.textContent);
          return [t('c-returns'), t('c-month')];
        }"""
    )
    assert ticks == [["2026-01", "2026-02", "2026-03", "2026-04"], ["2026-01", "2026-02"]]


def _status_colours(dash: Page) -> dict[str, str]:
    trace = dash.page.locator("#c-status").evaluate(
        "e => ({labels: e.data[0].labels, colors: e.data[0].marker.colors})"
    )
    return dict(zip(trace["labels"], trace["colors"], strict=True))


def _fills(dash: Page, chart: str) -> list[str]:
    return dash.page.locator(f"#{chart}").evaluate(
        "e => e.data.map(t => [t.name, t.marker.color || t.line.color])"
    )


def test_each_status_and_series_keeps_one_colour(dash: Page) -> None:
    dash.open()
    first = _status_colours(dash)
    assert first and all(PALETTE["status"][s] == c for s, c in first.items()), first
    before = ready(dash)
    dash.page.select_option("#f-segment", "home_office")
    dash.wait_ready(before)
    assert _status_colours(dash).items() <= {**first, **PALETTE["status"]}.items()
    # the drawn slices carry those colours (rgb in the SVG)
    fills = dash.page.locator("#c-status .slice path.surface").evaluate_all(
        "ps => ps.map(p => p.style.fill)"
    )
    assert len(fills) == len(_status_colours(dash))
    series = dict(_fills(dash, "c-month"))
    assert series == {
        "revenue": PALETTE["series"]["revenue"],
        "prior year": PALETTE["series"]["priorYear"],
    }
    assert dict(_fills(dash, "c-returns")) == {
        "return requests": PALETTE["series"]["returns"],
        "complaints": PALETTE["series"]["complaints"],
    }
    assert dash.errors == []


def _boxes(dash: Page, chart: str) -> list[tuple[str, dict[str, float]]]:
    return dash.page.locator(f"#{chart} .main-svg text").evaluate_all(
        """ts => ts.filter(t => t.textContent.trim() && t.getBBox().width > 0
                      && getComputedStyle(t).visibility !== 'hidden'
                      && getComputedStyle(t).opacity !== '0')
              .map(t => { const r = t.getBoundingClientRect();
                          return [t.textContent, {x: r.x, y: r.y, w: r.width, h: r.height}]; })"""
    )


def _overlap(a: dict[str, float], b: dict[str, float], slack: float = 1.0) -> bool:
    return (
        a["x"] + slack < b["x"] + b["w"]
        and b["x"] + slack < a["x"] + a["w"]
        and a["y"] + slack < b["y"] + b["h"]
        and b["y"] + slack < a["y"] + a["h"]
    )


def assert_text_fits(dash: Page) -> None:
    for chart in CHARTS:
        box = dash.page.locator(f"#{chart}").bounding_box()
        assert box is not None
        texts = _boxes(dash, chart)
        assert texts, chart
        for text, r in texts:
            inside = (
                r["x"] >= box["x"] - 1
                and r["y"] >= box["y"] - 1
                and r["x"] + r["w"] <= box["x"] + box["width"] + 1
                and r["y"] + r["h"] <= box["y"] + box["height"] + 1
            )
            assert inside, f"{chart}: {text!r} is clipped ({r} outside {box})"
        for i, (ta, ra) in enumerate(texts):
            for tb, rb in texts[i + 1 :]:
                assert not _overlap(ra, rb), f"{chart}: {ta!r} overlaps {tb!r}"


def test_no_text_overlaps_or_is_clipped(dash: Page) -> None:
    dash.open()
    assert_text_fits(dash)
    drill_deep(dash)
    assert_text_fits(dash)


def test_no_text_overlaps_or_is_clipped_at_phone_width(browser: Any, server: str) -> None:
    ctx = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        dash = Page(ctx.new_page(), server)
        dash.open()
        assert_text_fits(dash)
        assert dash.errors == []
    finally:
        ctx.close()


def test_every_status_slice_is_labelled(dash: Page) -> None:
    dash.open()
    labels = dash.page.locator("#c-status").evaluate("e => e.data[0].labels")
    texts = dash.page.locator("#c-status text.slicetext").all_text_contents()
    assert len(texts) == len(labels) and all(texts), texts
    for status in labels:  # small slices too: the label and its share
        assert any(t.startswith(status) and t.endswith("%") for t in texts), (status, texts)


def test_tooltips_name_the_month_and_carry_units(dash: Page) -> None:
    dash.open()
    bar = dash.page.locator("#c-month .trace.bars .point").last
    bar.scroll_into_view_if_needed()
    box: Any = bar.bounding_box()
    dash.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tip = dash.page.locator("#c-month .hovertext").first
    tip.wait_for(timeout=5000)
    text = " ".join(tip.locator("text").all_text_contents())
    assert re.search(r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4}", text), text
    assert "currency units" in text and re.search(r"\d,\d{3}", text), text


def test_filters_and_drills_round_trip_through_the_url(dash: Page, browser: Any) -> None:
    dash.open()
    before = ready(dash)
    dash.page.select_option("#f-segment", "corporate")
    dash.wait_ready(before)
    country = bar_labels(dash, "c-geo")[-1]
    before = ready(dash)
    _click_bar(dash, "c-geo", country)
    dash.wait_ready(before)
    revenue = dash.kpi("revenue")
    query = parse_qs(urlsplit(dash.page.url).query)
    assert query["segment"] == ["corporate"] and query["geo"] == [country]
    dash.page.reload()
    dash.wait_ready(0)
    assert dash.page.input_value("#f-segment") == "corporate"
    assert dash.page.input_value("#f-country") == country
    assert country in dash.page.inner_text("#b-geo") and "(by region)" in dash.page.inner_text(
        "#b-geo"
    )
    assert dash.kpi("revenue") == pytest.approx(revenue)
    shared = browser.new_context(viewport={"width": 1280, "height": 1000})
    try:  # a shared link: a fresh browser opens the same view
        other = Page(shared.new_page(), dash.base)
        other.page.goto(dash.page.url)
        other.wait_ready(0)
        assert other.kpi("revenue") == pytest.approx(revenue)
    finally:
        shared.close()
    assert dash.errors == []


def test_a_rates_change_is_in_percentage_points(dash: Page) -> None:
    dash.open()
    delta = dash.page.locator('.kpi[data-kpi="returnRate"] .delta')
    text = delta.inner_text()
    assert text.endswith(" pp vs prior period"), text
    change = float(delta.get_attribute("data-change") or "nan")
    now = dash.kpi("returnRate")
    frm, to = dash.page.input_value("#f-from"), dash.page.input_value("#f-to")
    prior = dash.page.evaluate(
        "([f, t]) => window.cdmsDashboard.kpiVariables({...window.cdmsDashboard.state,"
        " range: {from: f, to: t}}).rp",
        [frm, to],
    )
    want = cube_http(
        dash.base,
        "query($w: CubeWhere) { cube(where: $w) { returns { returnRate } } }",
        {"w": prior},
    )["cube"][0]["returns"]["returnRate"]
    assert change == pytest.approx(now - want)
    assert f"{abs(change) * 100:.1f} pp" in text
    assert "%" not in text  # not a relative change of a rate


def _ensure_model(dashboard_db: str, engine: Engine) -> None:
    with engine.connect() as conn:
        active = conn.execute(
            sa.text("SELECT count(*) FROM ml.model_version WHERE name = 'order_status' AND active")
        ).scalar()
    if not active:
        from api.cli.ml import train_models

        train_models(dashboard_db, ["order_status"])


def test_at_risk_orders_follow_the_filters_and_link_to_the_order(
    dash: Page, dashboard_db: str, dashboard_engine: Engine
) -> None:
    _ensure_model(dashboard_db, dashboard_engine)
    dash.open()
    dash.page.locator("#risk tbody tr").first.wait_for(timeout=30_000)
    before = ready(dash)
    dash.page.select_option("#f-segment", "corporate")
    dash.wait_ready(before)
    rows = dash.page.locator("#risk tbody tr")
    shown = [a.get_attribute("data-order") for a in dash.page.locator("#risk a[data-order]").all()]
    assert shown and len(shown) == rows.count()
    found = cube_http(
        dash.base,
        "query($ids: [ID!]) { orders(filter: {id: {in: $ids}}, first: 20) {"
        " edges { node { id status customer { segment } } } } }",
        {"ids": shown},
    )["orders"]["edges"]
    assert {e["node"]["customer"]["segment"] for e in found} == {"CORPORATE"}
    assert {e["node"]["status"] for e in found} <= {"PENDING", "PAID", "SHIPPED"}
    link = dash.page.locator("#risk a[data-order]").first
    order = link.get_attribute("data-order")
    assert f"order={order}" in (link.get_attribute("href") or "")
    link.click()
    panel = dash.page.locator("#order")
    panel.locator("h2").wait_for(timeout=10_000)
    assert f"Order #{order}" in panel.inner_text() and "History:" in panel.inner_text()
    assert parse_qs(urlsplit(dash.page.url).query)["order"] == [order]
    dash.page.reload()  # the order shown is part of the shared state
    dash.wait_ready(0)
    panel.locator("h2").wait_for(timeout=10_000)
    assert f"Order #{order}" in panel.inner_text()
    assert dash.errors == []


# names as a city, product, category or segment may hold them: Plotly reads its text as
# pseudo-HTML (a link, a style, bold), so they must reach it escaped (probe 8, finding 4)
HOSTILE = [
    '<a href="https://evil.example/">Berlin</a>',
    '<span style="font-size:60px">R&amp;D</span> & <b>co</b>',
]


def _no_markup(dash: Page, chart: str) -> None:
    """No element drawn from a label's markup: no link, no bold, no styled span."""
    found = dash.page.locator(f"#{chart}").evaluate(
        """e => [...e.querySelectorAll('a, b, tspan[style*="font-size:60px"]')]
                 .map(x => x.outerHTML)"""
    )
    assert found == [], (chart, found)


def test_labels_from_the_data_are_drawn_as_text_not_markup(dash: Page) -> None:
    """Every renderer shows a name letter for letter (the tick, the slice, the legend and
    the tooltip), never as a link or styled text; a click drills into the name as it is."""
    dash.open()
    dash.page.evaluate(
        """async (labels) => {
          const c = await import('/dashboard/static/charts.js');
          window.cdmsPicked = [];
          const pick = (v) => window.cdmsPicked.push(v);
          await c.drillBars('c-geo', labels.map((label, i) => ({label, revenue: 10 + i})),
                            'geo', pick, '#888');
          await c.salesBySegment('c-segment',
                                 labels.map((segment, i) => ({segment, revenue: 5 + i})), pick);
          await c.orderStatus('c-status', labels.map((status, i) => ({status, count: 3 + i})),
                              pick);
          await c.demographics('c-demo', labels.map((gender, i) =>
            ({gender, ageBand: labels[i], customers: 2 + i})));
        }""",
        HOSTILE,
    )
    assert bar_labels(dash, "c-geo") == HOSTILE[::-1]  # (drawn bottom-up)
    assert tick_texts(dash, "c-segment") == HOSTILE
    assert tick_texts(dash, "c-demo") == sorted(HOSTILE)
    legend = dash.page.locator("#c-demo .legendtext").all_text_contents()
    assert legend == sorted(HOSTILE), legend
    slices = dash.page.locator("#c-status text.slicetext").all_text_contents()
    assert len(slices) == len(HOSTILE), slices  # each: the name, then its share
    for name in HOSTILE:
        assert any(t.startswith(name) and t.endswith("%") for t in slices), (name, slices)
    for chart in ("c-geo", "c-segment", "c-status", "c-demo"):
        _no_markup(dash, chart)
    _click_bar(dash, "c-geo", HOSTILE[0])  # (its tooltip shows first)
    tip = " ".join(dash.page.locator("#c-geo .hovertext text").all_text_contents())
    assert HOSTILE[0] in tip, tip
    _no_markup(dash, "c-geo")
    dash.page.wait_for_timeout(300)
    assert dash.page.evaluate("window.cdmsPicked") == [HOSTILE[0]]
