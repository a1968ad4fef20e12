"""Every path and method outside what a route takes gets a coded JSON answer: an unknown
path is a 404 ``NOT_FOUND`` naming the path (at most 64 characters of it), a method a path
does not take a 405 ``METHOD_NOT_ALLOWED`` with ``Allow``. Starlette's router answered
``Not Found`` / ``Method Not Allowed`` in plain text, the pages' files a plain
``method not allowed``, and ``/graphql``'s own 405 had no ``Allow``: a client could not
tell them from a proxy's answer by a code."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.conftest import Parties, bearer, make_app, token

PATHS = [
    "/graphql",
    "/healthz",
    "/readyz",
    "/metrics",
    "/dashboard",
    "/dashboard/",
    "/dashboard/static/app.js",
    "/dashboard/nope",
    "/graphiql",
    "/graphiql/static/app.js",
    "/graphiql/nope",
    "/nope",
    "/",
    "/graphql/x",
]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
CODES = {
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    415: "UNSUPPORTED_MEDIA_TYPE",  # (POST /graphql without a JSON body)
}


@pytest.mark.parametrize("signed_in", [True, False], ids=["admin", "no token"])
def test_every_refused_path_or_method_is_coded_json(
    prod: Any, parties: Parties, signed_in: bool
) -> None:
    headers = bearer(token("admin")) if signed_in else {}
    seen: set[int] = set()
    for path in PATHS:
        for method in METHODS:
            resp = prod.request(method, path, headers=headers, follow_redirects=False)
            if resp.status_code < 400:
                continue
            seen.add(resp.status_code)
            where = (method, path, resp.status_code, resp.text[:80])
            assert resp.headers.get("content-type", "").startswith("application/json"), where
            if resp.status_code == 405:
                assert resp.headers.get("allow"), where
            if method == "HEAD":  # (no body to read)
                continue
            [error] = resp.json()["errors"]
            assert error["extensions"]["code"] == CODES[resp.status_code], where
    assert {404, 405} <= seen, seen


def test_the_codes_and_allow_headers(prod: Any) -> None:
    admin = bearer(token("admin"))
    for method, path, allow in [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/readyz", "GET, HEAD"),
        ("PUT", "/graphql", "POST"),
        ("GET", "/graphql", "POST"),  # (not a browser: a browser's GET is GraphiQL)
        ("PATCH", "/dashboard/", "GET, HEAD"),
        ("POST", "/graphiql/static/app.js", "GET, HEAD"),
    ]:
        resp = prod.request(method, path, headers=admin)
        assert resp.status_code == 405, (method, path, resp.text)
        assert resp.headers["allow"] == allow, (method, path)
        [error] = resp.json()["errors"]
        assert error["extensions"] == {"code": "METHOD_NOT_ALLOWED"}, (method, path, error)
    long = "/" + "y" * 60_000
    for path, named in [("/metrics", "'/metrics'"), (long, f"'/{'y' * 63}…' (60,001 characters)")]:
        resp = prod.get(path, headers=admin)
        assert resp.status_code == 404 and len(resp.text) < 1_000, resp.text[:200]
        [error] = resp.json()["errors"]
        assert error == {"message": f"no such path: {named}", "extensions": {"code": "NOT_FOUND"}}


def _says_nosniff(resp: Any, where: Any) -> None:
    assert resp.headers.get_list("x-content-type-options") == ["nosniff"], (where, resp.headers)


@pytest.mark.parametrize("signed_in", [True, False], ids=["admin", "no token"])
def test_every_answer_is_never_sniffed(prod: Any, parties: Parties, signed_in: bool) -> None:
    """Every answer of the app says ``X-Content-Type-Options: nosniff``, once: the health
    probes, the router's and the pages' 404 and 405 (which quote the path asked for, a
    ``<script>`` too), refusals, pages, files and GraphQL answers alike (probe 8, finding
    7: /healthz, /readyz and the 404s had none)."""
    headers = bearer(token("admin")) if signed_in else {}
    for path in [*PATHS, "/dashboard/static/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                 "/nope%3Cscript%3Ealert(1)%3C%2Fscript%3E"]:  # fmt: skip
        for method in METHODS:
            resp = prod.request(method, path, headers=headers, follow_redirects=False)
            _says_nosniff(resp, (method, path, resp.status_code))
    html = {**headers, "Accept": "text/html"}
    _says_nosniff(prod.get("/graphql", headers=html), "GraphiQL")
    answer = prod.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert answer.status_code == (200 if signed_in else 401), answer.text
    _says_nosniff(answer, "POST /graphql")


def test_cross_origin_answers_are_never_sniffed(sec_engine: Any, parties: Parties) -> None:
    """CORS preflights, answered by Starlette's CORS middleware itself, say it too."""
    origin = "https://shop.example"
    with make_app(sec_engine, cors_origins=(origin,)) as client:
        for asked in (origin, "https://evil.example"):  # allowed (200), refused (400)
            resp = client.options(
                "/graphql",
                headers={"Origin": asked, "Access-Control-Request-Method": "POST"},
            )
            _says_nosniff(resp, (asked, resp.status_code, resp.text))


def test_a_crash_is_never_sniffed_either(sec_engine: Any, sec_shop: Any) -> None:
    """Starlette's own 500 (an exception no handler takes) says it too: the header is put on
    outside Starlette's error middleware (api.headers.NoSniff around the whole app)."""
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from api.app import create_app
    from api.security import SecurityConfig

    def crash(request: Any) -> Any:
        raise RuntimeError("a bug")

    app = create_app(sec_engine, SecurityConfig(production=True))
    app.router.routes.insert(0, Route("/healthz", crash))
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.get("/healthz")
    assert resp.status_code == 500, resp.text
    _says_nosniff(resp, "500")
