"""The dashboard's files: served without a token, from package data, nothing else."""

from __future__ import annotations

import warnings

import pytest
from sqlalchemy.engine import Engine

from api.app import create_app
from api.dashboard import PLOTLY_JS
from api.security import SecurityConfig

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture
def closed(engine: Engine) -> TestClient:
    """The app with authentication on (no demo-open)."""
    return TestClient(create_app(engine, security=SecurityConfig(demo_open=False)))


def test_page_and_assets_are_served_without_a_token_but_data_is_not(closed: TestClient) -> None:
    page = closed.get("/dashboard/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for src in (
        "/dashboard/static/app.js",
        "/dashboard/static/plotly.min.js",
        "/dashboard/static/style.css",
    ):
        assert f'"{src}"' in page.text or src.endswith(("cube.js", "charts.js"))
    js = closed.get("/dashboard/static/plotly.min.js")
    assert js.status_code == 200 and js.content == PLOTLY_JS.read_bytes()
    assert "javascript" in js.headers["content-type"]
    app_js = closed.get("/dashboard/static/app.js")
    assert app_js.status_code == 200 and "cube(" in app_js.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN, no external origin
    assert closed.post("/graphql", json={"query": "{ cubeMeta { name } }"}).status_code == 401


def test_redirect_unknown_files_and_methods(closed: TestClient) -> None:
    r = closed.get("/dashboard", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/dashboard/"
    for path in (
        "/dashboard/static/../__init__.py",
        "/dashboard/static/nope.js",
        "/dashboard/x",
        "/dashboard/static/",
    ):
        missing = closed.get(path)
        assert missing.status_code == 404, path
        assert missing.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert closed.post("/dashboard/").status_code == 405
