"""Every path and method outside what a route takes gets a coded JSON answer: an unknown
path is a 404 ``NOT_FOUND`` naming the path (at most 64 characters of it), a method a path
does not take a 405 ``METHOD_NOT_ALLOWED`` with ``Allow``. Starlette's router answered
``Not Found`` / ``Method Not Allowed`` in plain text, the pages' files a plain
``method not allowed``, and ``/graphql``'s own 405 had no ``Allow``: a client could not
tell them from a proxy's answer by a code."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.conftest import Parties, bearer, token

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
