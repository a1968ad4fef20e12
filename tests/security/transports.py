"""Run one GraphQL operation over each transport a client can use, and read the outcome
the same way: HTTP (single), HTTP batch, HTTP persisted query, WebSocket with
``graphql-transport-ws`` and WebSocket with the older ``graphql-ws`` subprotocol.

Used by the hostile-customer tests: the same operation must get the same verdict on every
path. A WebSocket answer is awaited for a bounded time (a refused subscription answers at
once; one that is accepted stays silent until an event), so an accepted subscription
shows up as ``Outcome(codes=[], silent=True)``, never as a hung test.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

TRANSPORTS = ("http", "batch", "persisted", "ws", "ws-legacy")
WS_PROTOCOL = {"ws": "graphql-transport-ws", "ws-legacy": "graphql-ws"}


@dataclass
class Outcome:
    status: int | None = None  # HTTP status; None over a WebSocket
    data: Any = None
    codes: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    silent: bool = False  # a WebSocket operation that answered nothing in time
    closed: int | None = None  # the close code, when the socket was closed on us


def _errors(errors: Any) -> tuple[list[str], list[str]]:
    if isinstance(errors, dict):
        errors = [errors]
    codes = [str((e.get("extensions") or {}).get("code")) for e in errors or []]
    return codes, [str(e.get("message")) for e in errors or []]


def _from_body(status: int, body: Any) -> Outcome:
    codes, messages = _errors(body.get("errors"))
    return Outcome(status=status, data=body.get("data"), codes=codes, messages=messages)


def register(engine: Engine, query: str) -> str:
    """Put ``query`` on the persisted-query allow-list; its sha256."""
    sha = hashlib.sha256(query.encode("utf-8")).hexdigest()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO app.persisted_queries (sha256, query) VALUES (:h, :q)"
                " ON CONFLICT DO NOTHING"
            ),
            {"h": sha, "q": query},
        )
    return sha


_readers: dict[int, queue.Queue[Any]] = {}
_readers_lock = threading.Lock()


def _inbox(ws: Any) -> queue.Queue[Any]:
    """The socket's messages, read by one thread per socket (a reader left waiting after
    a timeout must not swallow the next message)."""
    with _readers_lock:
        box = _readers.get(id(ws))
        if box is None:
            box = _readers[id(ws)] = queue.Queue()

            def pump(target: queue.Queue[Any] = box) -> None:
                while True:
                    try:
                        target.put(ws.receive_json())
                    except BaseException as exc:  # a close arrives as an exception
                        target.put(exc)
                        return

            threading.Thread(target=pump, daemon=True).start()
    return box


def receive(ws: Any, timeout: float = 5.0) -> dict[str, Any] | None:
    """The next JSON message of a test WebSocket, or None after ``timeout`` seconds."""
    try:
        got = _inbox(ws).get(timeout=timeout)
    except queue.Empty:
        return None
    if isinstance(got, BaseException):
        _inbox(ws).put(got)  # the socket stays closed for later reads
        raise got
    result: dict[str, Any] = got
    return result


def ws_init(ws: Any, protocol: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    ws.send_json({"type": "connection_init", **({"payload": payload} if payload else {})})
    while True:
        msg = receive(ws)
        assert msg is not None, "no connection_ack"
        if msg["type"] != "ka":  # graphql-ws keep-alives may come first
            return msg


def ws_send(ws: Any, protocol: str, op_id: str, payload: dict[str, Any]) -> None:
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    ws.send_json({"id": op_id, "type": kind, "payload": payload})


def ws_outcome(ws: Any, op_id: str, timeout: float = 3.0) -> Outcome:
    """The first answer to operation ``op_id``: an error, or a result (next/data)."""
    from starlette.websockets import WebSocketDisconnect

    while True:
        try:
            msg = receive(ws, timeout)
        except WebSocketDisconnect as exc:
            return Outcome(closed=exc.code)
        if msg is None:
            return Outcome(silent=True)
        if msg.get("id") != op_id:
            continue  # keep-alives, other operations
        kind = msg["type"]
        if kind == "error":
            codes, messages = _errors(msg.get("payload"))
            return Outcome(codes=codes, messages=messages)
        if kind in {"next", "data"}:
            payload = msg.get("payload") or {}
            codes, messages = _errors(payload.get("errors"))
            return Outcome(data=payload.get("data"), codes=codes, messages=messages)
        if kind == "complete":
            return Outcome()


Runner = Callable[..., Outcome]


def run_over(
    transport: str,
    client: Any,
    engine: Engine,
    headers: dict[str, str],
    query: str,
    variables: dict[str, Any] | None = None,
) -> Outcome:
    """``query`` over ``transport`` with the given request headers."""
    op: dict[str, Any] = {"query": query, "variables": variables or {}}

    def post(body: Any) -> Any:
        # encoded here: httpx refuses NaN and Infinity, which a hostile client sends
        content = json.dumps(body).encode()
        return client.post(
            "/graphql", content=content, headers={**headers, "Content-Type": "application/json"}
        )

    if transport == "http":
        resp = post(op)
        return _from_body(resp.status_code, resp.json())
    if transport == "batch":
        resp = post([{"query": "{ __typename }"}, op])
        body = resp.json()
        if isinstance(body, list):
            return _from_body(resp.status_code, body[1])
        return _from_body(resp.status_code, body)
    if transport == "persisted":
        sha = register(engine, query)
        payload = {
            "variables": variables or {},
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}},
        }
        resp = post(payload)
        return _from_body(resp.status_code, resp.json())
    protocol = WS_PROTOCOL[transport]
    from starlette.websockets import WebSocketDisconnect

    try:
        # (a copy: Starlette's test client writes the subprotocol into the dict it is given,
        # so a dict used again would offer the first socket's subprotocol to the next one)
        with client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=dict(headers)
        ) as ws:
            ack = ws_init(ws, protocol)
            if ack["type"] != "connection_ack":
                codes, messages = _errors(ack.get("payload"))
                return Outcome(codes=codes, messages=messages)
            ws_send(ws, protocol, "1", op)
            return ws_outcome(ws, "1")
    except WebSocketDisconnect as exc:
        return Outcome(closed=exc.code)


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final WebSocket frame as a client sends it (masked, RFC 6455), for the tests that
    write to a raw socket: a client that never reads, or frames sent in one write."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
