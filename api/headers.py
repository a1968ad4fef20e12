"""``X-Content-Type-Options: nosniff`` on every HTTP answer of the app: a browser reads an
answer as the type it declares, never as a script or a page it guesses from the bytes (a
404 that quotes the path asked for, ``<script>`` and all, stays JSON).

:class:`NoSniff` is the app's outermost layer (``api.app.App``), outside Starlette's error
middleware: the health probes, the router's and the pages' 404 and 405, CORS preflights,
refusals, the pages' files and GraphQL answers alike, for the cost of one header tuple per
answer. The 400 and 431 api/connection.py writes itself, before any app, carry it too.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")


class NoSniff:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), NOSNIFF]
            await send(message)

        await self.app(scope, receive, sending)
