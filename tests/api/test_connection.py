"""api/connection.py against uvicorn's own protocol machinery, in process: the hooks it
overrides and the attributes it uses are uvicorn's internals, so an upgrade of uvicorn that
moves them must fail here (tests/security/test_serve_transport.py runs a real server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from api.connection import BoundedWebSocketProtocol, HeadLimits, LimitedHttpToolsProtocol


class _Transport(asyncio.Transport):
    """A socket's transport that keeps what is written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.protocol: asyncio.BaseProtocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _connect(
    loop: asyncio.AbstractEventLoop, limits: HeadLimits
) -> tuple[LimitedHttpToolsProtocol, _Transport]:
    config = Config(app=_app, log_level="warning", lifespan="off")
    make = LimitedHttpToolsProtocol.factory(limits)
    protocol = make(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = _Transport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return protocol, transport


def test_it_uses_what_uvicorns_protocol_has(loop: asyncio.AbstractEventLoop) -> None:
    protocol, transport = _connect(loop, HeadLimits())
    assert protocol.transport is transport and protocol.loop is loop
    assert protocol.cycle is None and protocol.server_state.default_headers is not None
    assert protocol.logger.name == "uvicorn.error"
    protocol.connection_lost(None)


def test_it_overrides_hooks_uvicorns_protocol_has() -> None:
    for name in (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_headers_complete",
        "on_message_complete",
        "on_response_complete",
        "shutdown",
        "send_400_response",
    ):
        assert callable(getattr(HttpToolsProtocol, name, None)), name


def test_a_head_over_the_limit_is_a_431_in_any_chunks(loop: asyncio.AbstractEventLoop) -> None:
    protocol, transport = _connect(loop, HeadLimits(max_head_bytes=1_024))
    protocol.data_received(b"GET / HTTP/1.1\r\nX-Big: ")
    for _ in range(5):
        protocol.data_received(b"a" * 300)
    status, _, rest = transport.written.partition(b"\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["errors"][0]["extensions"]["code"] == "REQUEST_HEADER_FIELDS_TOO_LARGE"
    assert transport.closed
    protocol.connection_lost(None)


def test_a_request_the_parser_refuses_is_a_json_400(loop: asyncio.AbstractEventLoop) -> None:
    protocol, transport = _connect(loop, HeadLimits())
    protocol.data_received(
        b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    status, _, rest = transport.written.partition(b"\r\n")
    assert status == b"HTTP/1.1 400 Bad Request"
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert transport.closed
    answered = transport.written
    protocol.data_received(b"GET / HTTP/1.1\r\n\r\n")  # nothing more is parsed
    loop.run_until_complete(asyncio.sleep(0.05))
    assert transport.written == answered
    protocol.connection_lost(None)


def test_a_bad_request_pipelined_after_a_good_one_is_answered_after_it(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The hostile review: the 400 was written at once, before the answer of a request
    sent before it on the connection, so a client read "400, nothing ran" for a request
    that had run. Answers go in order: the earlier request's, then the 400, then close."""
    protocol, transport = _connect(loop, HeadLimits())
    protocol.data_received(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nBad Header\r\n\r\n")
    assert transport.written == b""  # the first request's answer is not written yet
    loop.run_until_complete(asyncio.sleep(0.05))
    first, _, rest = transport.written.partition(b"\r\n")
    assert first == b"HTTP/1.1 200 OK", transport.written
    assert rest.count(b"HTTP/1.1 400 Bad Request\r\n") == 1, transport.written
    assert transport.written.index(b"ok") < transport.written.index(b"HTTP/1.1 400")
    assert transport.closed
    protocol.connection_lost(None)


def test_a_broken_body_queued_behind_a_request_waits_for_its_answer(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The second hostile review: a chunked body broken behind a request still running
    closed the connection at once, so that request ran (a customer created) and its answer
    was lost, with a traceback per connection in the log. The broken request never runs;
    the one before it is answered, then the 400, then the connection closes."""
    protocol, transport = _connect(loop, HeadLimits())
    protocol.data_received(
        b"GET /a HTTP/1.1\r\n\r\n"
        b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n"
    )
    assert transport.written == b"" and not transport.closed
    loop.run_until_complete(asyncio.sleep(0.05))
    answers = transport.written.split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200", b"400"], transport.written
    assert transport.closed
    protocol.connection_lost(None)


def test_a_broken_body_closes_the_connection_without_another_answer(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """A chunked body that breaks off: its request cannot run (it never had its body) and
    may be answered already; a 400 after that answer was a second, unasked-for one."""
    protocol, transport = _connect(loop, HeadLimits())
    protocol.data_received(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    loop.run_until_complete(asyncio.sleep(0.05))  # answered without reading the body
    answered = transport.written
    assert answered.startswith(b"HTTP/1.1 200 ")
    protocol.data_received(b"zz\r\nnot a chunk\r\n")
    loop.run_until_complete(asyncio.sleep(0.05))
    assert transport.written == answered and transport.closed
    protocol.connection_lost(None)


def _head(written: bytes) -> list[bytes]:
    return written.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")[1:]


def test_its_own_refusals_are_never_sniffed(loop: asyncio.AbstractEventLoop) -> None:
    """The 400 and the 431 this protocol writes itself say ``nosniff`` as the app's
    answers do (probe 8, finding 7), once."""
    for data in (
        b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 2_000,
    ):
        protocol, transport = _connect(loop, HeadLimits(max_head_bytes=1_024))
        protocol.data_received(data)
        assert transport.written.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 ")), data[:20]
        assert _head(transport.written).count(b"x-content-type-options: nosniff") == 1
        protocol.connection_lost(None)


def test_a_body_after_a_head_within_the_limit_is_not_counted(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The head ends within the chunk that passes the limit: the rest is the body."""
    protocol, transport = _connect(loop, HeadLimits(max_head_bytes=1_024))
    body = b"x" * 5_000
    protocol.data_received(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    loop.run_until_complete(asyncio.sleep(0.05))  # the app answers
    assert transport.written.startswith(b"HTTP/1.1 200 "), transport.written
    # a second request on the connection has a head of its own, counted from 0
    transport.written = b""
    protocol.data_received(b"GET / HTTP/1.1\r\nX-Pad: " + b"p" * 900 + b"\r\n\r\n")
    loop.run_until_complete(asyncio.sleep(0.05))
    assert transport.written.startswith(b"HTTP/1.1 200 "), transport.written
    protocol.connection_lost(None)


def test_a_head_not_complete_in_time_closes_the_connection(
    loop: asyncio.AbstractEventLoop,
) -> None:
    protocol, transport = _connect(loop, HeadLimits(head_timeout_s=0.05))
    protocol.data_received(b"GET / HTTP/1.1\r\n")
    loop.run_until_complete(asyncio.sleep(0.2))
    assert transport.closed and transport.written == b""
    protocol.connection_lost(None)


def test_bytes_between_requests_start_the_head_timeout(loop: asyncio.AbstractEventLoop) -> None:
    """After an answer, uvicorn's keep-alive timeout stops at the next byte, also a CRLF
    that begins no message: the head timeout starts there, or a client trickling CRLFs
    would hold the connection for good."""
    protocol, transport = _connect(loop, HeadLimits(head_timeout_s=0.05))
    protocol.data_received(b"GET / HTTP/1.1\r\n\r\n")
    loop.run_until_complete(asyncio.sleep(0.02))
    assert transport.written.startswith(b"HTTP/1.1 200 ") and not transport.closed
    protocol.data_received(b"\r\n")
    loop.run_until_complete(asyncio.sleep(0.2))
    assert transport.closed
    protocol.connection_lost(None)


def test_the_websocket_protocol_uses_what_uvicorns_has(loop: asyncio.AbstractEventLoop) -> None:
    config = Config(app=_app, log_level="warning", lifespan="off")
    config.load()
    protocol = BoundedWebSocketProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=loop
    )
    for name in ("send", "keepalive_timeout", "connection_lost"):
        assert callable(getattr(WebSocketsSansIOProtocol, name, None)), name
    assert isinstance(protocol.writable, asyncio.Event) and protocol.writable.is_set()
    assert protocol.close_sent is False and protocol.disconnected is False
    assert protocol.close_timer is None and protocol.close_timeout > 0
    assert protocol.loop is loop and protocol.logger.name == "uvicorn.error"
    transport = _Transport()
    protocol.connection_made(transport)
    assert protocol.transport is transport
    assert callable(transport.get_write_buffer_size) and callable(transport.abort)
