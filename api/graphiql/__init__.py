"""GraphiQL: ``GET /graphql`` from a browser (``Accept: text/html``) serves the GraphiQL
page; its files are under ``/graphiql/static/``. Nothing comes from a CDN: React, GraphiQL
and the explorer plugin are vendored npm files (``api.vendor``), plotly.js and
``plot-text.js`` (how a name from the data is given to Plotly) are the dashboard's.

The page holds no data, so it is served to anyone, before authentication (``GraphiQLPage``
sits in front of the security middleware, like the dashboard). Its token field's value goes
with every request the page sends: as ``Authorization: Bearer …`` over HTTP, and in the
WebSocket's ``connection_init`` payload (a browser cannot set headers on a WebSocket), which
api/ws.py reads. What a token may do (introspection included) is decided by the server as
for any other client.
"""

from __future__ import annotations

from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.dashboard import HTML, PLOT_TEXT_JS, PLOTLY_JS, serve_file

ENDPOINT = "/graphql"
PREFIX = "/graphiql/static/"
STATIC = Path(__file__).parent / "static"
VENDOR = STATIC / "vendor"

JS, CSS = "text/javascript", "text/css"
# the only files served: name under /graphiql/static/ -> (path, media type)
ASSETS: dict[str, tuple[Path, str]] = {
    "app.js": (STATIC / "app.js", JS),
    "cube-builder.js": (STATIC / "cube-builder.js", JS),
    "plot-text.js": (PLOT_TEXT_JS, JS),  # the dashboard's
    "examples.json": (STATIC / "examples.json", "application/json"),
    "style.css": (STATIC / "style.css", CSS),
    "vendor/react.production.min.js": (VENDOR / "react.production.min.js", JS),
    "vendor/react-dom.production.min.js": (VENDOR / "react-dom.production.min.js", JS),
    "vendor/graphiql.min.js": (VENDOR / "graphiql.min.js", JS),
    "vendor/graphiql.min.css": (VENDOR / "graphiql.min.css", CSS),
    "vendor/plugin-explorer.umd.js": (VENDOR / "plugin-explorer.umd.js", JS),
    "vendor/plugin-explorer.css": (VENDOR / "plugin-explorer.css", CSS),
    "vendor/plotly.min.js": (PLOTLY_JS, JS),
}
INDEX = STATIC / "index.html"
# this origin only: 'self' covers the subscriptions' WebSocket to this host (ws: for http,
# wss: for https; CSP Level 3, as the dashboard's own subscription). `ws: wss:` allowed any
# host: a way out for a page's data, were a script ever injected
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "worker-src 'self' blob:; frame-ancestors 'none'"
)


def wants_html(scope: Scope) -> bool:
    return "text/html" in Headers(scope=scope).get("accept", "").lower()


def respond(path: str, method: str) -> Response:
    """The response for the page (``path`` = ``/graphql``) or a file under PREFIX."""
    found = (INDEX, HTML) if path == ENDPOINT else ASSETS.get(path.removeprefix(PREFIX))
    return serve_file(method, path, found, CSP, path.startswith(PREFIX + "vendor/"), "GraphiQL")


class GraphiQLPage:
    """ASGI middleware: answers a browser's ``GET /graphql`` and ``/graphiql/...`` itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (
            path.startswith("/graphiql/")
            or path == "/graphiql"
            or (path == ENDPOINT and scope["method"] in {"GET", "HEAD"} and wants_html(scope))
        ):
            await respond(path, scope["method"])(scope, receive, send)
            return
        await self.app(scope, receive, send)
