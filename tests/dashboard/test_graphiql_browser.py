"""GraphiQL in headless Chromium against the real server: offline (every other origin cut),
with auth on and a token typed into the page (HTTP and the subscription WebSocket), and
the cube builder."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.security import SecurityConfig
from tests.dashboard.conftest import serving

pytestmark = pytest.mark.browser

DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "graphiql.png"
TABS = ["NestedCustomer", "CubeTimeIntelligence", "Predictions", "PlaceOrder", "OrderStatusChanged"]


class GraphiQLPage:
    """A page on /graphql that records errors and every request's origin and headers."""

    def __init__(self, ctx: Any, base: str) -> None:
        self.base = base
        self.origin = urlsplit(base).netloc
        self.page = ctx.new_page()
        self.errors: list[str] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.foreign: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append((r.url, r.headers)))

        def only_this_server(route: Any) -> None:
            if urlsplit(route.request.url).netloc == self.origin:
                route.continue_()
            else:  # the network is cut: anything else would have to come from a CDN
                self.foreign.append(route.request.url)
                route.abort("internetdisconnected")

        ctx.route("**/*", only_this_server)

    def open(self) -> None:
        self.page.goto(f"{self.base}/graphql")
        self.page.locator(".graphiql-container").wait_for(timeout=30_000)

    def tab(self, name: str) -> None:
        self.page.locator(".graphiql-tab-button", has_text=name).click()
        # GraphiQL reads the operation name from the editor after a short debounce
        self.page.wait_for_timeout(600)

    def editor(self, which: str) -> Any:
        # CodeMirror 5 instances of GraphiQL's query / variables / response editors
        sel = {
            "query": ".graphiql-query-editor .CodeMirror",
            "variables": ".graphiql-editor-tool .CodeMirror",
            "response": ".graphiql-response .CodeMirror",
        }[which]
        return self.page.locator(sel).first

    def text(self, which: str) -> str:
        return str(self.editor(which).evaluate("e => e.CodeMirror.getValue()"))

    def set_text(self, which: str, value: str) -> None:
        self.editor(which).evaluate("(e, v) => e.CodeMirror.setValue(v)", value)

    def run(self) -> None:
        self.page.locator(".graphiql-execute-button").click()

    def response(self, contains: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text("response")
            if contains in text:
                return text
            self.page.wait_for_timeout(100)
        raise AssertionError(f"no {contains!r} in the response: {self.text('response')}")


def test_renders_and_runs_a_query_with_the_network_cut(
    browser: Any, server: str, tmp_path: Path
) -> None:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        g = GraphiQLPage(ctx, server)
        g.open()
        tabs = g.page.locator(".graphiql-tab-button").all_text_contents()
        assert [t.strip() for t in tabs] == TABS
        g.tab("CubeTimeIntelligence")
        g.run()
        body = g.response('"priorYear"')
        assert '"errors"' not in body
        # the schema came through introspection: the docs explorer knows the cube field
        g.page.locator('button[aria-label="Show Documentation Explorer"]').click()
        g.page.get_by_text("cubeMeta").first.wait_for(timeout=10_000)
        assert g.foreign == [] and g.errors == []
        assert all(urlsplit(url).netloc == g.origin for url, _ in g.requests)
        g.page.screenshot(path=str(tmp_path / "graphiql.png"))
        if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
            shutil.copyfile(tmp_path / "graphiql.png", DOCS_SHOT)
    finally:
        ctx.close()


def _pending_order(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT id, customer_id FROM app.orders WHERE status = 'pending'"
                " ORDER BY id DESC LIMIT 1"
            )
        ).one()
    return int(row[0]), int(row[1])


def test_with_auth_on_the_token_field_authorizes_http_and_the_websocket(
    browser: Any, dashboard_engine: Engine
) -> None:
    from api.apikeys import create_key

    _, secret = create_key(dashboard_engine, "admin", None, "graphiql browser test")
    order, customer = _pending_order(dashboard_engine)
    with serving(dashboard_engine, SecurityConfig(demo_open=False), ws="auto") as base:
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            g = GraphiQLPage(ctx, base)
            g.open()  # the page itself needs no token
            status = g.page.locator("#token-status")
            g.page.wait_for_function("() => document.querySelector('#token-status').textContent")
            assert "asks for a token" in status.inner_text()
            g.errors.clear()  # Chromium logs the refused introspection (401)
            g.page.fill("#token", secret)
            g.page.click("#token-use")
            g.tab("NestedCustomer")
            g.run()
            g.response('"firstName"')
            posts = [h for url, h in g.requests if url == f"{base}/graphql"]
            assert posts and posts[-1].get("authorization") == f"Bearer {secret}"

            # the subscription tab over the WebSocket: the token rides in connection_init
            g.tab("OrderStatusChanged")
            g.set_text("variables", f'{{"customer": "{customer}"}}')
            g.run()
            g.page.wait_for_timeout(1500)  # subscribed (graphql-ws opens lazily)
            r = httpx.post(
                f"{base}/graphql",
                headers={"Authorization": f"Bearer {secret}"},
                json={
                    "query": "mutation($o: ID!) { setOrderStatus(orderId: $o, status: PAID)"
                    " { id status } }",
                    "variables": {"o": str(order)},
                },
                timeout=30,
            )
            assert r.status_code == 200 and "errors" not in r.json(), r.text
            event = g.response('"toStatus"')
            assert '"PAID"' in event and f'"{order}"' in event
            g.page.reload()  # kept in this browser (the dashboard's key)
            g.page.locator(".graphiql-container").wait_for(timeout=30_000)
            assert g.page.input_value("#token") == secret
            assert g.errors == [] and g.foreign == []
        finally:
            ctx.close()


def test_cube_builder_builds_runs_and_charts_a_query(browser: Any, server: str) -> None:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        g = GraphiQLPage(ctx, server)
        g.open()
        g.page.locator('button[aria-label="Show Cube builder"]').click()
        g.page.check('input[data-member="sales.revenue"]')
        g.page.select_option("#cb-time", "sales.orderedAt")
        g.page.select_option("#cb-granularity", "month")
        query = g.page.inner_text("#cube-builder-query")
        assert "sales { revenue orderedAt { month } }" in query
        assert "orderBy: [{sales: {orderedAt: ASC}}]" in query
        g.page.click("#cb-run")
        chart = g.page.locator("#cube-builder-chart")
        chart.locator(".scatterlayer .trace .point").first.wait_for(timeout=30_000)
        months = [t for t in chart.locator(".xtick text").all_text_contents() if t]
        assert len(months) > 3 and months == sorted(months)
        assert int(g.page.inner_text("#cube-builder-count").split()[0]) >= len(months)
        g.page.click("#cb-open")  # into a new GraphiQL tab, ready to edit and run
        g.page.wait_for_timeout(300)
        assert "query CubeBuilder" in g.text("query")
        g.run()
        g.response('"revenue"')
        assert g.errors == [] and g.foreign == []
    finally:
        ctx.close()


def test_cube_builder_draws_labels_as_text_not_markup(browser: Any, server: str) -> None:
    """The cube builder's chart shows a city letter for letter, on the axis, in the legend
    and in the tooltip, never as a link or styled text (Plotly reads its text as
    pseudo-HTML: probe 8, finding 4). The answer is the server's, with the cities renamed
    on the way (a city holding markup is what an admin's edit or an import could leave)."""
    from tests.dashboard.test_charts_browser import HOSTILE

    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        g = GraphiQLPage(ctx, server)

        def rename_cities(route: Any) -> None:
            if "CubeBuilder" not in (route.request.post_data or ""):
                route.continue_()
                return
            answer = route.fetch()
            body = answer.json()
            rows = body["data"]["cube"]
            for i, row in enumerate(rows):
                row["customers"]["city"] = HOSTILE[i % len(HOSTILE)]
            route.fulfill(response=answer, json=body)

        g.page.route("**/graphql", rename_cities)
        g.open()
        g.page.locator('button[aria-label="Show Cube builder"]').click()
        g.page.check('input[data-member="sales.revenue"]')
        g.page.check('input[data-member="customers.city"]')
        g.page.fill('input[aria-label="limit"]', "2")
        chart = g.page.locator("#cube-builder-chart")
        for time_dimension in ("", "sales.orderedAt"):  # cities on the axis, in the legend
            g.page.select_option("#cb-time", time_dimension)
            g.page.click("#cb-run")
            chart.locator(".trace .point").first.wait_for(timeout=30_000)
            g.page.wait_for_timeout(300)
            texts = chart.locator(".xtick text, .legendtext").all_text_contents()
            assert set(HOSTILE) <= set(texts), texts
            point = chart.locator(".trace .point").first
            point.scroll_into_view_if_needed()
            box: Any = point.bounding_box()
            g.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            tip = chart.locator(".hovertext").first
            tip.wait_for(timeout=5_000)
            shown = " ".join(tip.locator("text").all_text_contents())
            assert any(h in shown for h in HOSTILE), shown
            markup = chart.evaluate(
                """e => [...e.querySelectorAll('a, b, tspan[style*="font-size:60px"]')]
                         .map(x => x.outerHTML)"""
            )
            assert markup == [], markup
        assert g.errors == [] and g.foreign == []
    finally:
        ctx.close()
