"""A bearer token in a WebSocket's ``connection_init`` payload, for browsers.

A browser cannot set headers on a WebSocket, so GraphQL clients send credentials in the
first message instead (graphql-ws ``connectionParams``: ``{"Authorization": "Bearer …"}``,
or ``{"headers": {"Authorization": …}}``). For a handshake that carries no
``Authorization`` header and offers a GraphQL subprotocol, this accepts the socket, reads
that first message, and hands the app the handshake with the payload's token as its
``Authorization`` header, then the message itself. Authentication is the app's as for any
other request: a refused token closes the socket with the app's code (4401); a client
that says nothing for ``INIT_TIMEOUT_S`` is closed with 4408, as graphql-ws does.

A handshake with an ``Authorization`` header, or without a GraphQL subprotocol, passes
through untouched.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROTOCOLS = ("graphql-transport-ws", "graphql-ws")
INIT_TIMEOUT_S = 10.0


def _has_authorization(scope: Scope) -> bool:
    return any(name.lower() == b"authorization" for name, _ in scope.get("headers", []))


def _lookup(mapping: Any, key: str) -> str | None:
    if not isinstance(mapping, dict):
        return None
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == key and isinstance(v, str):
            return v
    return None


def init_token(message: Message) -> str | None:
    """The ``Authorization`` value of a ``connection_init`` message, if it has one."""
    raw = message.get("text")
    if raw is None and message.get("bytes") is not None:
        raw = message["bytes"].decode("utf-8", errors="replace")
    try:
        body = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("type") != "connection_init":
        return None
    payload = body.get("payload")
    found = _lookup(payload, "authorization")
    if found is None and isinstance(payload, dict):
        found = _lookup(payload.get("headers"), "authorization")
    if found is None or not found.isascii() or not found.isprintable():
        return None  # not a header value: left unauthenticated, refused by the app
    return found


async def relay_init_token(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    offered = scope.get("subprotocols") or []
    protocol = next((p for p in offered if p in PROTOCOLS), None)
    if protocol is None or _has_authorization(scope):
        await app(scope, receive, send)
        return
    connect = await receive()
    if connect["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": protocol})
    first: Message | None = None
    with anyio.move_on_after(INIT_TIMEOUT_S):
        first = await receive()
    if first is None:
        await send({"type": "websocket.close", "code": 4408, "reason": "no connection_init"})
        return
    if first["type"] == "websocket.disconnect":
        return
    headers = list(scope.get("headers", []))
    token = init_token(first)
    if token is not None:
        headers.append((b"authorization", token.encode("ascii")))
    replay: list[Message] = [connect, first]

    async def inner_receive() -> Message:
        if replay:
            return replay.pop(0)
        return await receive()

    accepted = False

    async def inner_send(message: Message) -> None:
        nonlocal accepted
        if message["type"] == "websocket.accept" and not accepted:
            accepted = True  # the socket is open already
            return
        if message["type"] == "websocket.close" and not accepted:
            # refused before the app would have accepted: the socket is open, so close it
            # with the app's code (4401 unauthenticated, 4429 rate limited)
            await send({"type": "websocket.close", "code": message.get("code", 1008)})
            return
        if message["type"].startswith("websocket.http.response") and not accepted:
            if message["type"] == "websocket.http.response.start":  # a denial response
                await send({"type": "websocket.close", "code": 1008})
            return
        await send(message)

    await app({**scope, "headers": headers}, inner_receive, inner_send)
