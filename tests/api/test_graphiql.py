"""GraphiQL's page and files: served to anyone from package data, nothing from another
origin; the API behind it stays guarded."""

from __future__ import annotations

import json
import re
import warnings

import pytest
from sqlalchemy.engine import Engine

from api.app import create_app
from api.graphiql import ASSETS, STATIC
from api.security import SecurityConfig
from api.vendor import FILES, LICENCES, problems

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
def closed(engine: Engine) -> TestClient:
    """The app with authentication on (no demo-open), in production mode."""
    return TestClient(create_app(engine, security=SecurityConfig(production=True)))


def test_the_page_is_served_without_a_token_and_loads_only_local_files(
    closed: TestClient,
) -> None:
    page = closed.get("/graphql", headers=HTML)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp  # no other site frames it (clickjacking)
    # this origin only, the subscriptions' WebSocket too: no other host to send data to
    # (was `connect-src 'self' ws: wss:`, any host: probe 8, finding 7)
    assert "connect-src 'self';" in csp and "ws:" not in csp and "wss:" not in csp
    dashboard = closed.get("/dashboard/")
    assert "frame-ancestors 'none'" in dashboard.headers["content-security-policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/") or s.startswith("data:") for s in sources), sources
    for src in sources:
        if src.startswith("/graphiql/"):
            r = closed.get(src)
            assert r.status_code == 200, src
            assert r.headers["content-security-policy"] == csp
    # the API itself is still closed: without a token, POST and a non-browser GET are 401
    assert closed.post("/graphql", json={"query": "{ cubeMeta { name } }"}).status_code == 401
    assert closed.get("/graphql").status_code == 401
    assert closed.get("/graphql", headers={"Accept": "application/json"}).status_code == 401


def test_every_listed_file_exists_and_unknown_paths_are_404(closed: TestClient) -> None:
    for name, (path, media) in ASSETS.items():
        r = closed.get(f"/graphiql/static/{name}")
        assert r.status_code == 200 and r.content == path.read_bytes(), name
        assert r.headers["content-type"].startswith(media), name
    for path in (
        "/graphiql",
        "/graphiql/static/../__init__.py",
        "/graphiql/static/vendor/",
        "/graphiql/static/nope.js",
    ):
        r = closed.get(path)
        assert r.status_code == 404, path
        assert r.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert closed.post("/graphiql/static/app.js").status_code == 405
    posted = closed.post("/graphql", headers=HTML, json={"query": "{ __typename }"})
    assert posted.status_code == 401  # only GET serves the page


def test_vendored_files_are_the_pinned_npm_files_with_their_licences() -> None:
    assert problems() == []
    served = {path for path, _ in ASSETS.values()}
    for f in FILES:
        assert f.version and re.fullmatch(r"[0-9a-f]{64}", f.sha256), f
    # every vendored GraphiQL file is served, and each package has its licence
    assert {f.dest for f in FILES} - served <= {f.dest for f in FILES if "dashboard" in str(f.dest)}
    licensed = {lic.package for lic in LICENCES}
    assert {f.package for f in FILES} - licensed == {"@graphiql/plugin-explorer"}
    assert "graphiql" in licensed and "graphiql-explorer" in licensed  # the plugin's parts
    for lic in LICENCES:
        assert "Permission is hereby granted" in lic.dest.read_text(), lic.dest  # MIT


def test_examples_are_named_operations_of_each_kind() -> None:
    examples = json.loads((STATIC / "examples.json").read_text())
    kinds = [re.search(r"^(query|mutation|subscription) (\w+)", e["query"], re.M) for e in examples]
    assert all(kinds), examples
    found = {(k.group(1), k.group(2)) for k in kinds if k}
    assert {kind for kind, _ in found} == {"query", "mutation", "subscription"}
    text = "\n".join(e["query"] for e in examples)
    for needle in ("orders(", "compare: PRIOR_YEAR", "predictedStatus", "predictOrderStatus",
                   "placeOrder", "orderStatusChanged"):  # fmt: skip
        assert needle in text, needle
