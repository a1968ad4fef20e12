"""The JSON answers of requests no route takes, in the shape of every other error outside
``/graphql`` (``{"errors": [{"message", "extensions": {"code"}}]}``, no ``data``): an
unknown path is a 404 ``NOT_FOUND`` naming at most ``ECHO_MAX`` characters of it, a method
a path does not take a 405 ``METHOD_NOT_ALLOWED`` with ``Allow``.

Starlette's router raises those as ``HTTPException`` (:func:`http_exception` is the app's
one handler: it answered them in plain text); the dashboard's and GraphiQL's files, served
by middleware in front of the router, answer through :func:`route_error` too.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from db.errors import shown

CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


def error_body(code: str, message: str, *, data: bool = False) -> dict[str, Any]:
    """A refusal's body, ``{"errors": [{"message", "extensions": {"code"}}]}``; with
    ``data``, a GraphQL response's (``"data": null`` first): what ``/graphql`` and the
    connection under it refuse with."""
    errors = [{"message": message, "extensions": {"code": code}}]
    return {"data": None, "errors": errors} if data else {"errors": errors}


def route_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def method_not_allowed(allow: str) -> JSONResponse:
    """405 naming what the path takes (nothing of the request: a method is any token)."""
    return route_error(
        405, CODES[405], f"this path takes {allow} only", {"Allow": allow} if allow else None
    )


async def http_exception(request: Request, exc: Exception) -> JSONResponse:
    """The app's handler of Starlette's ``HTTPException`` (the router's 404 and 405)."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        return route_error(404, CODES[404], f"no such path: {shown(request.url.path)}")
    if status == 405:  # (the router joins a set: "HEAD, GET" or "GET, HEAD" by the run)
        methods = (exc.headers or {}).get("Allow", "").split(",")
        return method_not_allowed(", ".join(sorted(m.strip() for m in methods if m.strip())))
    try:  # (no route of ours raises another one; its standard name is its code)
        code = HTTPStatus(status).name
    except ValueError:
        code = "HTTP_ERROR"
    return route_error(status, code, exc.detail, dict(exc.headers or {}) or None)
