"""The dashboard: ``/dashboard`` serves a static page (HTML, ES modules, CSS) and plotly.js
(vendored from npm at a pinned version, ``api.vendor``) from package data: no CDN, no
build step.

The page holds no data: every number comes from GraphQL ``cube`` queries the browser sends
with the user's bearer token (or none in demo-open mode). So the assets are served before
authentication (``DashboardAssets`` is the outermost middleware); ``/graphql`` stays
guarded as before.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import method_not_allowed, route_error
from db.errors import shown

PREFIX = "/dashboard"
STATIC = Path(__file__).parent / "static"
PLOTLY_JS = STATIC / "vendor" / "plotly.min.js"
PLOT_TEXT_JS = STATIC / "plot-text.js"  # names from the data as Plotly text (escaped)

# the only files served: name under /dashboard/static/ -> (path, media type)
ASSETS: dict[str, tuple[Path, str]] = {
    "app.js": (STATIC / "app.js", "text/javascript"),
    "cube.js": (STATIC / "cube.js", "text/javascript"),
    "charts.js": (STATIC / "charts.js", "text/javascript"),
    "plot-text.js": (PLOT_TEXT_JS, "text/javascript"),
    "style.css": (STATIC / "style.css", "text/css"),
    "palette.json": (STATIC / "palette.json", "application/json"),
    "plotly.min.js": (PLOTLY_JS, "text/javascript"),
}
INDEX = STATIC / "index.html"
HTML = "text/html; charset=utf-8"
# no third-party origin at all: scripts, styles and data come from this server
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'"
)


def serve_file(
    method: str,
    path: str,
    found: tuple[Path, str] | None,
    csp: str,
    long_cache: bool,
    what: str,
) -> Response:
    """A page's static file (``found``: its path and media type; None: 404 NOT_FOUND,
    naming at most ``ECHO_MAX`` characters of the path asked for; another method than GET
    or HEAD: 405 METHOD_NOT_ALLOWED), for the dashboard and GraphiQL alike. Both in JSON, as
    :mod:`api.errors` answers the paths no route takes: what a browser asks of these files
    is never another method, and a missing file is asked for by a script, not read."""
    if method not in {"GET", "HEAD"}:
        return method_not_allowed("GET, HEAD")
    if found is None:
        return route_error(404, "NOT_FOUND", f"no such {what} file: {shown(path)}")
    file, media = found
    headers = {
        "Content-Security-Policy": csp,
        "Cache-Control": "public, max-age=86400" if long_cache else "no-cache",
    }
    return FileResponse(file, media_type=media, headers=headers)


def respond(path: str, method: str) -> Response:
    """The response for a path under ``/dashboard``."""
    if path == PREFIX and method in {"GET", "HEAD"}:
        return RedirectResponse(PREFIX + "/", status_code=308)
    name = path.removeprefix(PREFIX + "/static/")
    found = (INDEX, HTML) if path == PREFIX + "/" else ASSETS.get(name)
    return serve_file(method, path, found, CSP, name == "plotly.min.js", "dashboard")


class DashboardAssets:
    """ASGI middleware answering ``/dashboard`` and ``/dashboard/...`` itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await respond(path, scope["method"])(scope, receive, send)
            return
        await self.app(scope, receive, send)
