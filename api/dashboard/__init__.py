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

from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/dashboard"
STATIC = Path(__file__).parent / "static"
PLOTLY_JS = STATIC / "vendor" / "plotly.min.js"

# the only files served: name under /dashboard/static/ -> (path, media type)
ASSETS: dict[str, tuple[Path, str]] = {
    "app.js": (STATIC / "app.js", "text/javascript"),
    "cube.js": (STATIC / "cube.js", "text/javascript"),
    "charts.js": (STATIC / "charts.js", "text/javascript"),
    "style.css": (STATIC / "style.css", "text/css"),
    "palette.json": (STATIC / "palette.json", "application/json"),
    "plotly.min.js": (PLOTLY_JS, "text/javascript"),
}
INDEX = STATIC / "index.html"
# no third-party origin at all: scripts, styles and data come from this server
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'"
)


def _not_found(path: str) -> JSONResponse:
    body = {
        "errors": [
            {"message": f"no such dashboard file: {path}", "extensions": {"code": "NOT_FOUND"}}
        ]
    }
    return JSONResponse(body, status_code=404)


def respond(path: str, method: str) -> Response:
    """The response for a path under ``/dashboard``."""
    if method not in {"GET", "HEAD"}:
        return Response("method not allowed", status_code=405, headers={"Allow": "GET, HEAD"})
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
    if path == PREFIX:
        return RedirectResponse(PREFIX + "/", status_code=308)
    if path == PREFIX + "/":
        return FileResponse(
            INDEX,
            media_type="text/html; charset=utf-8",
            headers=headers | {"Cache-Control": "no-cache"},
        )
    name = path.removeprefix(PREFIX + "/static/")
    if name in ASSETS and path.startswith(PREFIX + "/static/"):
        file, media = ASSETS[name]
        cache = "public, max-age=86400" if name == "plotly.min.js" else "no-cache"
        return FileResponse(file, media_type=media, headers=headers | {"Cache-Control": cache})
    return _not_found(path)


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
