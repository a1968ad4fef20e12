"""Browser-test fixtures: a seeded, ETL-loaded database, the real app served by uvicorn on
a free port (demo-open), and Debian's Chromium driven by Playwright.

Chromium missing (``/usr/bin/chromium``, or ``CDMS_CHROMIUM``): every browser test is
SKIPPED with that reason; never passed silently. ``playwright install`` is never needed.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import Engine

from api.app import create_app
from api.security import SecurityConfig
from db.engine import make_engine
from etl import runner
from ml.serving import close_store
from tests.semantic.conftest import load_warehouse

CHROMIUM = os.environ.get("CDMS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SHOP = {"customers": 200, "orders": 2500, "seed": 11}


@pytest.fixture(scope="session")
def dashboard_db(clone_database: Callable[[str], str]) -> Iterator[str]:
    url = clone_database("dashboard")
    load_warehouse(url, SHOP["customers"], SHOP["orders"], SHOP["seed"])
    yield url
    runner.dispose(url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(engine: Engine, security: SecurityConfig, ws: str = "auto") -> Iterator[str]:
    """The real app served by uvicorn in a thread on a free port; its base URL
    (``ws="auto"``: with WebSockets, for subscriptions)."""
    app = create_app(engine, security=security)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=_free_port(),
        log_level="warning",
        ws=ws,
        lifespan="off",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def dashboard_engine(dashboard_db: str) -> Iterator[Engine]:
    engine = make_engine(dashboard_db)
    yield engine
    close_store(engine)  # the prediction resolvers' model listener (ml.serving)


@pytest.fixture(scope="session")
def server(dashboard_engine: Engine) -> Iterator[str]:
    """Base URL of the real app over the loaded warehouse, demo-open (no token), with
    WebSockets (the page subscribes to ``warehouseUpdated``)."""
    with serving(dashboard_engine, SecurityConfig(demo_open=True)) as base:
        yield base


def cube_http(base: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    """A GraphQL query over HTTP, as any API client sends it; fails on GraphQL errors."""
    r = httpx.post(
        f"{base}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    body = r.json()
    assert r.status_code == 200 and not body.get("errors"), body
    return body["data"]


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (.ci/run installs Debian's chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    # Module scope, not session: Playwright's sync API keeps an event loop marked as running
    # in the main thread while it is open, and later tests' asyncio.run() would then fail.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A Playwright page on the dashboard that records console errors and page errors."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("requestfailed", lambda r: self.errors.append(f"failed {r.url}"))

    def open(self) -> None:
        self.page.goto(f"{self.base}/dashboard/")
        self.wait_ready(0)

    def wait_ready(self, after: int) -> int:
        """Wait until a refresh newer than ``after`` has drawn everything; its number."""
        # polled from Python: the page's CSP forbids the string eval wait_for_function uses
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = int(self.page.get_attribute("body", "data-ready") or 0)
            if ready > after:
                return ready
            self.page.wait_for_timeout(50)
        status = self.page.inner_text("#status")
        raise AssertionError(f"dashboard not ready after refresh {after}: {status}")

    def kpi(self, key: str) -> float:
        raw = self.page.get_attribute(f'.kpi[data-kpi="{key}"]', "data-value")
        assert raw, f"KPI {key} has no value"
        return float(raw)


@pytest.fixture
def dash(browser: Any, server: str) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = ctx.new_page()
    yield Page(page, server)
    ctx.close()
