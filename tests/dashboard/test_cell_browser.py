"""Clicking a chart cell opens the orders behind it (``cube { drill { orders } }``): their
count is the cell's, under the dashboard's filters, and each row links to its order."""

from __future__ import annotations

from typing import Any

import pytest

from tests.dashboard.conftest import Page, cube_http

pytestmark = pytest.mark.browser


def _click(dash: Page, selector: str) -> None:
    target = dash.page.locator(selector)
    target.scroll_into_view_if_needed()
    box: Any = target.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    dash.page.mouse.move(x, y)
    dash.page.wait_for_timeout(300)  # plotly computes hover (what a click picks) throttled
    dash.page.mouse.click(x, y)


def _wait_cell(dash: Page) -> int:
    dash.page.locator("#cell[data-total]").wait_for(timeout=30_000)
    return int(dash.page.get_attribute("#cell", "data-total") or -1)


def test_a_segment_bar_opens_its_orders(dash: Page) -> None:
    dash.open()
    labels = [
        t
        for t in dash.page.locator("#c-segment .xaxislayer-above .xtick text").all_text_contents()
        if t
    ]
    _click(dash, "#c-segment .trace.bars .point >> nth=0")
    total = _wait_cell(dash)
    frm, to = dash.page.input_value("#f-from"), dash.page.input_value("#f-to")
    want = cube_http(
        dash.base,
        """query($w: CubeWhere) { cube(where: $w) { sales { orderCount } } }""",
        {
            "w": {
                "sales": {"orderedAt": {"inDateRange": [frm, to]}},
                "customers": {"segment": {"equals": labels[0]}},
            }
        },
    )["cube"][0]["sales"]["orderCount"]
    assert total == want > 0
    assert f"customers.segment = {labels[0]}" in dash.page.inner_text("#cell h2")
    links = dash.page.locator("#cell a[data-order]")
    assert links.count() == min(20, want)
    order = links.first.get_attribute("data-order")
    links.first.click()
    dash.page.locator("#order h2").wait_for(timeout=30_000)
    assert f"Order #{order}" in dash.page.inner_text("#order h2")
    assert dash.errors == []


def test_an_order_status_slice_opens_its_orders(dash: Page) -> None:
    dash.open()
    _click(dash, "#c-status .slice >> nth=0 >> text.slicetext")
    total = _wait_cell(dash)
    assert dash.page.get_attribute("#cell", "data-cube") == "orders"
    status = dash.page.inner_text("#cell h2").rsplit("= ", 1)[1]
    frm, to = dash.page.input_value("#f-from"), dash.page.input_value("#f-to")
    want = cube_http(
        dash.base,
        """query($w: CubeWhere) { cube(where: $w) { orders { count } } }""",
        {
            "w": {
                "orders": {
                    "orderedAt": {"inDateRange": [frm, to]},
                    "status": {"equals": status},
                }
            }
        },
    )["cube"][0]["orders"]["count"]
    assert total == want > 0
    statuses = dash.page.locator("#cell td:nth-child(3)").all_text_contents()
    assert statuses and set(statuses) == {status}
    assert dash.errors == []
