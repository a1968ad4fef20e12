"""The dashboard in headless Chromium against the real server and a loaded warehouse."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.conftest import Page, cube_http

pytestmark = pytest.mark.browser

CHARTS = ["c-month", "c-segment", "c-status", "c-geo", "c-cat", "c-demo", "c-returns"]
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


def bar_labels(dash: Page, chart: str) -> list[str]:
    """The category labels of a horizontal bar chart (its y tick texts)."""
    texts = dash.page.locator(f"#{chart} .yaxislayer-above .ytick text").all_text_contents()
    return [t for t in texts if t]


def test_loads_without_console_errors_and_every_chart_renders(dash: Page, tmp_path: Path) -> None:
    dash.open()
    for chart in CHARTS:
        svg = dash.page.locator(f"#{chart} svg.main-svg").first
        assert svg.is_visible(), chart
        # data marks, not just axes: bars, pie slices or line points
        marks = dash.page.locator(
            f"#{chart} .trace .point, #{chart} .slice path, #{chart} .scatterlayer .trace path"
        )
        assert marks.count() > 0, f"{chart} has no data marks"
    assert len(dash.page.locator(".kpi").all()) == 6
    assert dash.page.inner_text("#status").startswith(dash.page.input_value("#f-from"))
    dash.page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    assert dash.errors == []


def test_kpis_equal_the_cube_api_answer(dash: Page) -> None:
    dash.open()
    frm, to = dash.page.input_value("#f-from"), dash.page.input_value("#f-to")
    data = cube_http(
        dash.base,
        """query($w: CubeWhere) { cube(where: $w) {
             sales { revenue orderCount averageOrderValue } } }""",
        {"w": {"sales": {"orderedAt": {"inDateRange": [frm, to]}}}},
    )
    sales = data["cube"][0]["sales"]
    assert sales["orderCount"] > 10  # the default range covers real data
    assert dash.kpi("revenue") == pytest.approx(sales["revenue"], abs=0.005)
    assert dash.kpi("orders") == sales["orderCount"]
    assert dash.kpi("aov") == pytest.approx(sales["averageOrderValue"], abs=0.005)
    # the change shown is against the same number of days just before
    rating = cube_http(
        dash.base,
        """query($w: CubeWhere) { cube(where: $w) { feedback { averageRating } } }""",
        {"w": {"feedback": {"createdAt": {"inDateRange": [frm, to]}}}},
    )["cube"][0]["feedback"]["averageRating"]
    assert dash.kpi("rating") == pytest.approx(rating)
    assert "vs prior period" in dash.page.inner_text('.kpi[data-kpi="revenue"] .delta')
    assert dash.errors == []


def test_a_filter_changes_the_numbers_to_the_filtered_cube_answer(dash: Page) -> None:
    dash.open()
    before = dash.kpi("revenue")
    ready = int(dash.page.get_attribute("body", "data-ready") or 0)
    segments = dash.page.locator("#f-segment option").all_text_contents()
    assert "corporate" in segments
    dash.page.select_option("#f-segment", "corporate")
    dash.wait_ready(ready)
    after = dash.kpi("revenue")
    assert after < before
    frm, to = dash.page.input_value("#f-from"), dash.page.input_value("#f-to")
    want = cube_http(
        dash.base,
        """query($w: CubeWhere) { cube(where: $w) { sales { revenue } } }""",
        {
            "w": {
                "sales": {"orderedAt": {"inDateRange": [frm, to]}},
                "customers": {"segment": {"equals": "corporate"}},
            }
        },
    )["cube"][0]["sales"]["revenue"]
    assert after == pytest.approx(want, abs=0.005)
    assert dash.errors == []


def _click_bar(dash: Page, chart: str, label: str) -> None:
    labels = bar_labels(dash, chart)
    bars = dash.page.locator(f"#{chart} .trace.bars .point")
    # bars are drawn bottom-up in the order of the (reversed) labels
    bar = bars.nth(labels.index(label))
    bar.scroll_into_view_if_needed()
    box: Any = bar.bounding_box()
    assert box is not None
    dash.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    dash.page.wait_for_timeout(300)  # plotly computes hover (what a click picks) throttled
    dash.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def test_drill_down_country_to_region_and_back(dash: Page) -> None:
    dash.open()
    countries = bar_labels(dash, "c-geo")
    top = countries[-1]  # largest revenue: the top bar
    ready = int(dash.page.get_attribute("body", "data-ready") or 0)
    _click_bar(dash, "c-geo", top)
    ready = dash.wait_ready(ready)
    crumbs = dash.page.inner_text("#b-geo")
    assert top in crumbs and "(by region)" in crumbs
    regions = bar_labels(dash, "c-geo")
    frm, to = dash.page.input_value("#f-from"), dash.page.input_value("#f-to")
    want = cube_http(
        dash.base,
        """query($w: CubeWhere) { cube(where: $w) { customers { region } } }""",
        {
            "w": {
                "sales": {"orderedAt": {"inDateRange": [frm, to]}},
                "customers": {"country": {"equals": top}},
            }
        },
    )["cube"]
    assert set(regions) <= {r["customers"]["region"] for r in want} and regions
    assert not set(regions) & set(countries)
    assert dash.page.input_value("#f-country") == top  # the filter follows the drill
    dash.page.click("#b-geo button")  # breadcrumb: all countries
    dash.wait_ready(ready)
    assert set(bar_labels(dash, "c-geo")) == set(countries)
    assert dash.errors == []


def test_drill_down_category_to_subcategory(dash: Page) -> None:
    dash.open()
    cats = bar_labels(dash, "c-cat")
    ready = int(dash.page.get_attribute("body", "data-ready") or 0)
    _click_bar(dash, "c-cat", cats[-1])
    dash.wait_ready(ready)
    assert "(by subcategory)" in dash.page.inner_text("#b-cat")
    subs = bar_labels(dash, "c-cat")
    assert subs and not set(subs) & set(cats)
    assert dash.errors == []


RISK = """{ orders(filter: {status: {in: [PENDING, PAID, SHIPPED]}},
    orderBy: [{orderedAt: DESC}], first: 100) {
  edges { node { id predictedStatus { probabilities { label probability } } } } } }"""


def test_at_risk_panel_without_a_model_then_with_one(
    dash: Page, dashboard_db: str, tmp_path: Path
) -> None:
    dash.open()
    msg = dash.page.locator('#risk .message[data-state="unavailable"]')
    msg.wait_for(timeout=30_000)
    assert "no active order-status model" in msg.inner_text()

    from api.cli.ml import train_models

    train_models(dashboard_db, ["order_status"])  # activates; servers swap on NOTIFY
    deadline = time.monotonic() + 30
    while True:
        data = cube_http(dash.base, RISK)  # fails on any GraphQL error
        if all(e["node"]["predictedStatus"] for e in data["orders"]["edges"][:5]):
            break
        assert time.monotonic() < deadline, "the server never picked up the new model"
        time.sleep(0.5)
    risk: dict[str, float] = {}
    for e in data["orders"]["edges"]:
        pred = e["node"]["predictedStatus"]
        if pred:  # null: an order the warehouse has not loaded yet
            p = {x["label"]: x["probability"] for x in pred["probabilities"]}
            risk[e["node"]["id"]] = max(p.get("cancelled", 0.0), p.get("returned", 0.0))
    want = sorted(risk, key=lambda k: -risk[k])[:10]

    dash.page.reload()
    dash.wait_ready(0)
    rows = dash.page.locator("#risk tbody tr")
    rows.first.wait_for(timeout=30_000)
    shown = [
        t.lstrip("#")
        for t in dash.page.locator("#risk tbody tr td:first-child").all_text_contents()
    ]
    assert len(shown) == min(10, len(risk))
    assert [round(risk[i], 6) for i in shown] == [round(risk[i], 6) for i in want]
    assert dash.errors == []


def test_phone_width_has_no_horizontal_overflow(browser: Any, server: str, tmp_path: Path) -> None:
    ctx = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        dash = Page(ctx.new_page(), server)
        dash.open()
        width = dash.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
        boxes = [dash.page.locator(f"#{c}").bounding_box() for c in ("c-month", "c-segment")]
        assert all(b is not None and b["width"] <= 375 for b in boxes)
        # one column: the second card sits below the first
        assert boxes[1] is not None and boxes[0] is not None and boxes[1]["y"] > boxes[0]["y"]
        dash.page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        assert dash.errors == []
    finally:
        ctx.close()


def test_with_auth_on_a_token_is_asked_once_and_kept(
    browser: Any, dashboard_engine: Any, tmp_path: Path
) -> None:
    from api.apikeys import create_key
    from api.security import SecurityConfig
    from tests.dashboard.conftest import serving

    _, secret = create_key(dashboard_engine, "analyst", None, "dashboard browser test")
    with serving(dashboard_engine, SecurityConfig(demo_open=False)) as base:
        ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
        try:
            dash = Page(ctx.new_page(), base)
            dash.page.goto(f"{base}/dashboard/")
            form = dash.page.locator("#token-form")
            form.wait_for(state="visible", timeout=30_000)
            assert "token" in dash.page.inner_text("#status")
            # the refused /graphql call is the only console error (Chromium logs 401s)
            assert dash.errors and all("401" in e for e in dash.errors)
            dash.errors.clear()
            dash.page.fill("#token", secret)
            dash.page.click("#token-form button")
            dash.wait_ready(0)
            assert form.is_hidden()
            frm, to = dash.page.input_value("#f-from"), dash.page.input_value("#f-to")
            r = httpx.post(
                f"{base}/graphql",
                headers={"Authorization": f"Bearer {secret}"},
                json={
                    "query": "query($w: CubeWhere) { cube(where: $w) { sales { orderCount } } }",
                    "variables": {"w": {"sales": {"orderedAt": {"inDateRange": [frm, to]}}}},
                },
                timeout=30,
            )
            assert dash.kpi("orders") == r.json()["data"]["cube"][0]["sales"]["orderCount"]
            dash.page.reload()  # kept in localStorage: no second prompt
            dash.wait_ready(0)
            assert form.is_hidden()
            assert dash.errors == []
        finally:
            ctx.close()


def test_segment_panel_shows_the_months_rfm_snapshot_and_migration(dash: Page) -> None:
    dash.open()
    month = dash.page.input_value("#f-to")[:7] + "-01"
    data = cube_http(
        dash.base,
        """query($r: CubeWhere, $m: CubeWhere) {
             s: cube(where: $r, timezone: "UTC") { rfm { segment customers } }
             m: cube(where: $m, timezone: "UTC", limit: 200) {
               segmentMigration { customers } } }""",
        {
            "r": {"rfm": {"month": {"inDateRange": [month, month]}}},
            "m": {"segmentMigration": {"month": {"inDateRange": [month, month]}}},
        },
    )
    want = {r["rfm"]["segment"]: r["rfm"]["customers"] for r in data["s"]}
    assert want, "the seeded shop has a snapshot for the range's last month"
    rows = dash.page.locator("#segments tbody tr")
    rows.first.wait_for(timeout=30_000)
    shown = {
        r.locator("th").inner_text(): int(r.locator("td").first.inner_text().replace(",", ""))
        for r in rows.all()
    }
    assert shown == want
    cells = dash.page.locator("#migration tbody td").all_text_contents()
    assert sum(int(c.replace(",", "")) for c in cells) == sum(
        r["segmentMigration"]["customers"] for r in data["m"]
    )
    assert dash.errors == []


def test_a_migration_cell_drills_down_to_its_customers(dash: Page) -> None:
    """Clicking a from x to cell of the migration matrix lists the customers who moved so
    that month: exactly the segmentMigration cell's customers."""
    dash.open()
    month = dash.page.input_value("#f-to")[:7] + "-01"
    cells = dash.page.locator("#migration tbody button[data-from]")
    cells.first.wait_for(timeout=30_000)
    target = cells.nth(cells.count() // 2)
    frm, to = target.get_attribute("data-from"), target.get_attribute("data-to")
    shown = int(target.inner_text().replace(",", ""))
    target.click()
    dash.page.locator("#migrants[data-total]").wait_for(timeout=30_000)
    want = cube_http(
        dash.base,
        """query($w: CubeWhere) { cube(where: $w, timezone: "UTC", limit: 1000) {
             segmentMigration { customerId } } }""",
        {
            "w": {
                "segmentMigration": {
                    "month": {"inDateRange": [month, month]},
                    "fromSegment": {"equals": frm},
                    "toSegment": {"equals": to},
                }
            }
        },
    )["cube"]
    ids = {str(r["segmentMigration"]["customerId"]) for r in want}
    assert int(dash.page.get_attribute("#migrants", "data-total") or -1) == len(ids) == shown
    links = dash.page.locator("#migrants a[data-customer]")
    assert {links.nth(i).get_attribute("data-customer") for i in range(links.count())} == ids
    assert f"from {frm} to {to}" in dash.page.inner_text("#migrants h2")
    assert dash.errors == []


def test_customers_at_risk_rank_spend_by_churn_probability(
    dash: Page, dashboard_db: str, tmp_path: Path
) -> None:
    from api.cli.ml import train_models

    train_models(dashboard_db, ["churn_risk"])  # activates; servers swap on NOTIFY
    deadline = time.monotonic() + 30
    while True:
        dash.open()
        rows = dash.page.locator("#at-risk tbody tr")
        if rows.count():
            break
        assert time.monotonic() < deadline, "the server never picked up the churn model"
        time.sleep(0.5)
    stakes = [
        float(t.replace(",", ""))
        for t in dash.page.locator("#at-risk tbody tr td:last-child").all_text_contents()
    ]
    assert 0 < len(stakes) <= 10 and stakes == sorted(stakes, reverse=True)
    link = dash.page.locator("#at-risk tbody tr th a").first
    assert (link.get_attribute("href") or "").startswith("/graphql?query=")
    # every panel filled (after the order-status test, its model too): the docs' picture
    dash.page.locator("#segments tbody tr").first.wait_for(timeout=30_000)
    dash.page.locator("#migration tbody button").first.wait_for(timeout=30_000)
    dash.page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":  # refresh docs/dashboard.md's picture
        shutil.copyfile(tmp_path / "dashboard.png", DOCS_SHOT)
    assert dash.errors == []


def test_a_new_warehouse_version_refreshes_the_page_and_its_data_as_of(
    dash: Page, dashboard_db: str
) -> None:
    from etl import pipeline
    from tests.etl.conftest import one, sql

    dash.open()
    asof = dash.page.locator("#asof")
    asof.wait_for(timeout=30_000)
    version = int(asof.get_attribute("data-version") or 0)
    assert version == one(dashboard_db, "SELECT version FROM dw.etl_state")
    assert asof.inner_text().startswith("data as of ")
    ready = int(dash.page.get_attribute("body", "data-ready") or 0)

    # a change that moves no figure on the page (an e-mail address): only the version
    sql(
        dashboard_db,
        "UPDATE app.customers SET email = 'moved.' || email WHERE id = "
        "(SELECT min(id) FROM app.customers)",
    )
    pipeline.run(dashboard_db)
    deadline = time.monotonic() + 30
    while int(asof.get_attribute("data-version") or 0) != version + 1:
        assert time.monotonic() < deadline, "the page never heard of the new version"
        dash.page.wait_for_timeout(100)
    dash.wait_ready(ready)  # refreshed without a reload
    assert dash.errors == []


def test_the_running_month_is_marked_partial(dash: Page) -> None:
    dash.open()
    tips = dash.page.evaluate("() => document.getElementById('c-month').data[0].customdata")
    running = time.strftime("%b %Y", time.gmtime())
    marked = [t for t in tips if t.endswith("(partial: only part of its days)")]
    if any(t.startswith(running) for t in tips):
        assert marked and marked[-1].startswith(running)
    start = dash.page.input_value("#f-from")  # a year back to tomorrow's date: mid-month
    first = time.strftime("%b %Y", time.strptime(start[:7], "%Y-%m"))
    if not start.endswith("-01") and tips and tips[0].startswith(first):
        assert tips[0] in marked
    assert len(marked) < len(tips)  # whole months are not marked
    shapes = dash.page.evaluate(
        "() => document.getElementById('c-month').data[0].marker.pattern.shape"
    )
    assert [bool(s) for s in shapes] == [t in marked for t in tips]
    # the returns and complaints chart marks the same months (bars hatched, markers hollow)
    returns, complaints = dash.page.evaluate(
        "() => document.getElementById('c-returns').data.map((t) => ({tips: t.customdata,"
        " shapes: (t.marker.pattern || {}).shape || null, symbols: t.marker.symbol || null}))"
    )
    partial = {t.removesuffix(" (partial: only part of its days)") for t in marked}
    for trace, mark in ((returns, "shapes"), (complaints, "symbols")):
        months = [t.removesuffix(" (partial: only part of its days)") for t in trace["tips"]]
        cut = [t.endswith("(partial: only part of its days)") for t in trace["tips"]]
        assert cut == [m in partial for m in months]
        assert [s in ("/", "circle-open") for s in trace[mark]] == cut
