"""GraphiQL: ``GET /graphql`` from a browser (``Accept: text/html``) serves the GraphiQL
page; its files are under ``/graphiql/static/``. Nothing comes from a CDN: React, GraphiQL
and the explorer plugin are vendored npm files (``api.vendor``), plotly.js is the
dashboard's copy.

The page holds no data, so it is served to anyone, before authentication (``GraphiQLPage``
sits in front of the security middleware, like the dashboard). Its token field's value goes
with every request the page sends: as ``Authorization: Bearer …`` over HTTP, and in the
WebSocket's ``connection_init`` payload (a browser cannot set headers on a WebSocket), which
api/ws.py reads. What a token may do (introspection included) is decided by the server as
for any other client.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.dashboard import PLOTLY_JS

ENDPOINT = "/graphql"
PREFIX = "/graphiql/static/"
STATIC = Path(__file__).parent / "static"
VENDOR = STATIC / "vendor"

# the only files served: name under /graphiql/static/ -> (path, media type)
ASSETS: dict[str, tuple[Path, str]] = {
    "app.js": (STATIC / "app.js", "text/javascript"),
    "cube-builder.js": (STATIC / "cube-builder.js", "text/javascript"),
    "examples.json": (STATIC / "examples.json", "application/json"),
    "style.css": (STATIC / "style.css", "text/css"),
    "vendor/react.production.min.js": (VENDOR / "react.production.min.js", "text/javascript"),
    "vendor/react-dom.production.min.js": (
        VENDOR / "react-dom.production.min.js",
        "text/javascript",
    ),
    "vendor/graphiql.min.js": (VENDOR / "graphiql.min.js", "text/javascript"),
    "vendor/graphiql.min.css": (VENDOR / "graphiql.min.css", "text/css"),
    "vendor/plugin-explorer.umd.js": (VENDOR / "plugin-explorer.umd.js", "text/javascript"),
    "vendor/plugin-explorer.css": (VENDOR / "plugin-explorer.css", "text/css"),
    "vendor/plotly.min.js": (PLOTLY_JS, "text/javascript"),
}
INDEX = STATIC / "index.html"
# this origin only; the WebSocket of subscriptions goes to the same host (ws: / wss:)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self' ws: wss:; font-src 'self' data:; "
    "worker-src 'self' blob:; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}


def wants_html(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"accept":
            return b"text/html" in value.lower()
    return False


def respond(path: str, method: str) -> Response:
    """The response for the page (``path`` = ``/graphql``) or a file under PREFIX."""
    if method not in {"GET", "HEAD"}:
        return Response("method not allowed", status_code=405, headers={"Allow": "GET, HEAD"})
    if path == ENDPOINT:
        return FileResponse(
            INDEX,
            media_type="text/html; charset=utf-8",
            headers=HEADERS | {"Cache-Control": "no-cache"},
        )
    name = path.removeprefix(PREFIX)
    if name in ASSETS:
        file, media = ASSETS[name]
        cache = "public, max-age=86400" if name.startswith("vendor/") else "no-cache"
        return FileResponse(file, media_type=media, headers=HEADERS | {"Cache-Control": cache})
    body = {
        "errors": [
            {"message": f"no such GraphiQL file: {path}", "extensions": {"code": "NOT_FOUND"}}
        ]
    }
    return JSONResponse(body, status_code=404)


class GraphiQLPage:
    """ASGI middleware: answers a browser's ``GET /graphql`` and ``/graphiql/...`` itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http":
            if path.startswith("/graphiql/") or path == "/graphiql":
                await respond(path, scope["method"])(scope, receive, send)
                return
            if path == ENDPOINT and scope["method"] in {"GET", "HEAD"} and wants_html(scope):
                await respond(path, scope["method"])(scope, receive, send)
                return
        await self.app(scope, receive, send)
