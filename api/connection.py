"""The connections under the app: uvicorn's httptools protocol with a bound on the size of
a request's head (request line and headers) and on the time it takes to arrive, and its
WebSocket protocol that never waits for good on a client that reads nothing (the end).

httptools sets no limit on a head, and grows a header value (and uvicorn the URL) by
concatenation, in quadratic time: one client's 100 MB header held the event loop, and
every other client, for 12 s. h11 has a limit but serves our reads much slower, so the
limit is kept here, before the parser: past ``max_head_bytes`` the request is answered
``431 REQUEST_HEADER_FIELDS_TOO_LARGE`` (JSON, as every other refusal) and the connection
closed; its remaining bytes are never parsed. A connection whose head is not complete
``head_timeout_s`` after it opened (or after the next request's first byte, on a kept-alive
connection) is closed: slowloris held sockets open for good, as nothing timed a head out
(a body: api/http.py; the rest of a body the app answered without reading, here: the same
time from the answer).

The class hooks uvicorn's protocol where its parser calls back (``on_message_begin``,
``on_headers_complete``, ``on_message_complete``), where an answer is complete
(``on_response_complete``) and where data and the connection come and go; it uses the
protocol's ``transport``, ``loop``, ``logger``, ``cycle`` and ``server_state`` attributes.
Those are uvicorn's internals (checked against uvicorn 0.55): tests/api/test_connection.py
checks them, and tests/security/test_serve_transport.py the behaviour against a real
``cdms serve``, so an upgrade that moves them fails there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from api.errors import error_body
from api.headers import NOSNIFF


@dataclass(frozen=True)
class HeadLimits:
    max_head_bytes: int = 65_536  # CDMS_MAX_HEADER_BYTES
    head_timeout_s: float = 10.0  # CDMS_HEADER_TIMEOUT_SECONDS
    # an answer the client takes nothing of for this long: the connection is reset
    # (CDMS_SEND_TIMEOUT_SECONDS; nginx's send_timeout)
    send_timeout_s: float = 30.0
    # connections of one credential (the demo principal: of one client address) holding an
    # answer its client reads slowly or not at all, at once in a process: past them the next
    # is reset. A connection counts while its client took less than ``_BRISK`` bytes a
    # second of it over the last ``stall_s`` (a download at speed does not)
    max_stalled: int = 8
    stall_s: float = 2.0

    @property
    def look_s(self) -> float:
        """How often a paused connection is looked at (the send timeout, if shorter)."""
        return min(self.stall_s, self.send_timeout_s)


try:  # the kernel's unsent bytes of a socket (Linux, macOS); elsewhere the transport's only
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover (Windows)
    _OUTQ = None

# what a client must take between two looks to count as reading (a zero-window probe moves
# a byte or so now and then: a client that reads nothing is not "progressing")
_PROGRESS = 4096
# what a client must take a second not to count as slow: one trickling its answers in (4 KB
# a second over 30 connections of one key) kept them all in memory for half an hour; a
# phone on a poor network still takes this much, a LAN or the internet far more (64 KB
# reset 4 of 12 steady downloads of one key at 44 KB/s: the hostile review)
_BRISK = 32_768

# connections whose answer waits for its client, by credential (the protocols of a process)
_stalled: Counter[str] = Counter()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: HeadLimits = HeadLimits(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        # bytes of the current head received so far; None while a body is read (from the
        # end of a head to the end of its message)
        self.head_bytes: int | None = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.refused = False
        # requests of the connection handed to the app, and answered: a refusal waits until
        # the requests before it are answered (``deferred``: the refusal and how many)
        self.begun = 0
        self.answered = 0
        self.deferred: tuple[tuple[int, bytes, str, str], int] | None = None
        # while the transport is paused: a look every stall_s at what the client took
        self.watch_timer: asyncio.TimerHandle | None = None
        self.last_size = 0  # the buffer's size at the last look that found progress
        self.last_progress = 0.0
        self.look_size = 0  # the buffer's size at the last look
        self.stalled_key: str | None = None  # counted in _stalled while it takes nothing

    @classmethod
    def factory(cls, limits: HeadLimits) -> Any:
        """What ``uvicorn.run(http=...)`` takes: picklable, for the worker processes."""
        return functools.partial(cls, limits=limits)

    # --- the connection ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that sends nothing is timed out too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unstall()
        super().connection_lost(exc)

    # --- a client that reads slowly or not at all -----------------------------------------
    def pause_writing(self) -> None:
        """The answer fills the transport's buffer: from now on it is watched every
        ``stall_s``. A client that took less than ``_BRISK`` bytes a second of it since the
        last look counts against its credential's slow connections (past ``max_stalled``:
        reset); one that took nothing for the send timeout is reset (nginx's send_timeout,
        between two writes)."""
        super().pause_writing()
        if self.watch_timer is None:
            self.last_size = self.look_size = self._unsent()
            self.last_progress = self.loop.time()
            self._rewatch()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._unstall()

    def _rewatch(self) -> None:
        self.watch_timer = self.loop.call_later(self.limits.look_s, self._watch)

    def _watch(self) -> None:
        """(Also once the transport is closing: asyncio's close waits for the client to read
        what is buffered, so an answer written whole and never read stayed for good.)"""
        self.watch_timer = None
        size, now = self._unsent(), self.loop.time()
        taken, self.look_size = self.look_size - size, size
        if size <= self.last_size - _PROGRESS:  # the client took some
            self.last_size, self.last_progress = size, now
        elif now - self.last_progress >= self.limits.send_timeout_s:
            self._reset(f"nothing of its answer read in {self.limits.send_timeout_s:g}s")
            return
        if taken >= _BRISK * self.limits.look_s:
            self._uncount()  # a download at speed
        elif self.stalled_key is None:
            key = self._credential()
            if key is not None:
                if _stalled[key] >= self.limits.max_stalled:
                    self._reset(
                        f"over {self.limits.max_stalled} slowly read answers for one credential"
                    )
                    return
                _stalled[key] += 1
                self.stalled_key = key
        self._rewatch()

    def _unsent(self) -> int:
        """Bytes written and not yet taken by the client: the transport's buffer and the
        kernel's send queue (Linux: TIOCOUTQ). The transport's buffer alone moves in steps
        of half the kernel's buffer (megabytes): a slow reader looked stalled."""
        size = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if _OUTQ is not None and sock is not None:
            with contextlib.suppress(OSError, ValueError):
                size += struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0" * 4))[0]
        return size

    def _credential(self) -> str | None:
        """The key of the principal whose answer is being written (api/security.py left it
        in the scope), or None before it is known."""
        if self.cycle is None:
            return None
        principal = self.cycle.scope.get("state", {}).get("principal")
        if principal is None:
            return None
        from api.security import credential_key  # (the app's; this module loads first)

        return credential_key(principal, cast("Scope", self.cycle.scope))

    def _unstall(self) -> None:
        if self.watch_timer is not None:
            self.watch_timer.cancel()
            self.watch_timer = None
        self._uncount()

    def _uncount(self) -> None:
        if self.stalled_key is not None:
            _stalled.subtract({self.stalled_key: 1})
            if _stalled[self.stalled_key] <= 0:
                del _stalled[self.stalled_key]
            self.stalled_key = None

    def _reset(self, why: str) -> None:
        """Drop the connection and what it holds unsent (a reset, as nginx's
        ``reset_timedout_connection``: a close would wait for the client to read it), a
        connection already closing too."""
        self.logger.info("HTTP client reads too slowly (%s): connection reset.", why)
        _reset(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.head_bytes is None:  # a body: api/http.py bounds it
            # (a pipelined request's head that begins in this chunk is counted from the
            # next one: at most one read, 256 KiB, escapes the count)
            super().data_received(data)
            return
        self._arm()  # (any byte: a CRLF between requests begins no message)
        room = self.limits.max_head_bytes - self.head_bytes
        if len(data) <= room:
            self.head_bytes += len(data)
            super().data_received(data)
            return
        # feed what fits: if the head ends within it, the rest is the body (or the next
        # request); else the head is too large, and the parser never sees more of it
        self.head_bytes += room
        super().data_received(data[:room])
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # a bad request (400), or upgraded to a WebSocket
        if self.head_bytes is None:
            self.data_received(data[room:])
        else:
            self._refuse()

    # --- the parser's callbacks ----------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # (already armed for a connection's first request: from its opening)

    def on_headers_complete(self) -> None:
        self.head_bytes = None
        self._disarm()
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a request for the app (not a WebSocket's upgrade)
            self.begun += 1

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.head_bytes = 0
        self._disarm()  # (a body's rest, after its answer: see on_response_complete)

    def on_response_complete(self) -> None:
        self.answered += 1
        super().on_response_complete()
        if self.deferred is not None and not self.transport.is_closing():
            refusal, after = self.deferred
            if self.answered >= after:  # the last request before it is answered
                self.deferred = None
                self._send_refusal(*refusal)
            return
        if self.head_bytes is None and not self.transport.is_closing():
            # answered without reading the whole body (a 405, a 401): its rest is read
            # and dropped, and must come within the head's time, or a byte now and then
            # (each stops uvicorn's keep-alive timeout) holds the connection for good
            self._arm()

    # --- refusals ------------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse (a length and a chunked encoding both, a header
        without a colon, a NUL in the target): uvicorn answers in plain text; here JSON
        with a code, as every other refusal (uvicorn's ``msg`` is its own text).

        A body that breaks off (a bad chunk): its request never had its body, so it cannot
        have run. Queued behind an earlier request, it is taken off the queue and answered
        the 400 after that one's answer; being read by the app or already answered (a 401
        sent without reading it), the connection is closed, nothing more sent (a second
        answer a proxy could give to its next request)."""
        self.refused = True
        self._disarm()
        refusal = (400, b"Bad Request", "BAD_REQUEST", "the request is not valid HTTP/1.1")
        if self.head_bytes is None:
            if self.pipeline and self.pipeline[0][0] is self.cycle:
                self.pipeline.popleft()  # (the newest is on the left) it never runs
                self._refusal(*refusal, after=self.begun - 1)
            else:
                self.transport.close()
            return
        self._refusal(*refusal)

    def _refusal(
        self, status: int, reason: bytes, code: str, message: str, *, after: int | None = None
    ) -> None:
        """Answer a refusal once the ``after`` requests before it (all begun, by default)
        are answered, in order as HTTP/1.1 wants (written at once, it came before an earlier
        request's answer, and a client took it for that request's, which had run), then
        close."""
        after = self.begun if after is None else after
        if self.answered < after:
            self.deferred = ((status, reason, code, message), after)  # on_response_complete
            return
        self._send_refusal(status, reason, code, message)

    def _send_refusal(self, status: int, reason: bytes, code: str, message: str) -> None:
        body = json.dumps(error_body(code, message, data=True)).encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for name, value in [*self.server_state.default_headers, NOSNIFF]:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _refuse(self) -> None:
        self.refused = True
        self._disarm()
        limit = self.limits.max_head_bytes
        self.logger.warning("Request head over %d bytes: 431, connection closed.", limit)
        self._refusal(
            431,
            b"Request Header Fields Too Large",
            "REQUEST_HEADER_FIELDS_TOO_LARGE",
            f"request line and headers exceed {limit} bytes",
        )

    def _arm(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.limits.head_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        self.logger.info("Request head not received in %gs: closed.", self.limits.head_timeout_s)
        self.refused = True
        # uvicorn's graceful close: now, or once an earlier request's answer is written
        self.shutdown()


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (websockets' sans-I/O core), whose connection ends even
    when the client reads nothing.

    uvicorn writes a message only once the transport's buffer is below its high-water mark,
    so a client that reads nothing stalls every send, the close too; and asyncio's
    ``transport.close()`` waits for the buffer to drain, forever when nobody reads it, so a
    socket closed by the app (api/ws.py's send timeout, 4408) or by uvicorn's keep-alive
    ping timeout stayed open, holding what it had not sent. Here the close frame is written
    at once, behind what the client has not read yet, and a connection still holding unsent
    data ``close_timeout`` (10 s) after its close is reset; after a keep-alive ping
    timeout, at once. Uses the protocol's ``send``, ``writable``, ``close_sent``,
    ``close_timer``, ``close_timeout``, ``keepalive_timeout``, ``transport``, ``loop`` and
    ``logger`` (uvicorn 0.55; tests/api/test_connection.py)."""

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.close" and not self.writable.is_set():
            # the close is a few bytes: queue it behind what the client has not read
            self.writable.set()
            try:
                await super().send(message)
            finally:
                if not self.disconnected and not self.transport.is_closing():
                    self.writable.clear()  # the transport is still paused
        else:
            await super().send(message)
        if message["type"] == "websocket.close" and self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self._end)

    def keepalive_timeout(self) -> None:
        closing = self.close_sent or self.transport.is_closing()  # (then uvicorn does nothing)
        super().keepalive_timeout()
        if not closing:
            self._end()

    def _end(self) -> None:
        """Close the connection; abort it if the client has not read what it was sent."""
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if self.transport.get_write_buffer_size() > 0:
            self.logger.info("WebSocket client reads nothing: connection reset.")
            _reset(self.transport)
        else:
            self.transport.close()


def _reset(transport: asyncio.Transport) -> None:
    """Abort ``transport`` with a reset: a plain close leaves the kernel trying to deliver
    what the client does not read, for minutes (nginx's reset_timedout_connection)."""
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(AttributeError, OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
