"""A WebSocket client that sends heavy operations and never reads its socket, against a real
``cdms serve`` (production mode): the server computes no answer it cannot send (operations
past the socket's unsent budget wait before they run), closes the socket with 4408 when a
message is not taken within ``CDMS_WS_SEND_TIMEOUT_SECONDS``, and drops the connection
when the client does not read the close either. Its memory stays bounded meanwhile.

Was: every operation ran and its answer (parsed into Python objects) waited in memory for
the client: 50 operations of a 191-byte query grew the server by 3 GB, and a socket whose
client read nothing stayed open for good (docs/security.md)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.connection import HeadLimits
from api.ws import SocketLimits
from db.engine import make_engine
from tests.security.conftest import token
from tests.security.test_serve_transport import Served, _serving
from tests.security.transports import frame

SEND_TIMEOUT_S = 3.0
PROTOCOLS = ("graphql-transport-ws", "graphql-ws")
# 20 pages of 500 products of four 200-character texts: ~8.7 MB an answer, cost 10,000
HEAVY = (
    "{ "
    + " ".join(
        f"p{i}: products(first: 500) {{ edges {{ node {{ name category subcategory brand }} }} }}"
        for i in range(20)
    )
    + " }"
)
HEAVY_OPS = 24  # unbounded, these held ~1 GB
WRITES = 5


def _heavy_shop(clone_database: Callable[[str], str], name: str) -> str:
    """A shop of 500 more products with four ~200-character texts each (HEAVY's pages)."""
    url = clone_database(name)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO app.products"
                " (sku, name, category, subcategory, brand, unit_price, cost, stock)"
                " SELECT 'SLOW-' || g, repeat('n', 195) || g, repeat('c', 200),"
                " repeat('s', 200), repeat('b', 200), 10, 5, 100"
                " FROM generate_series(1, 500) g"
            )
        )
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def served(
    clone_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, str]]:
    url = _heavy_shop(clone_database, "slow_readers")
    with _serving(
        url,
        tmp_path_factory.mktemp("slow_readers"),
        CDMS_WS_SEND_TIMEOUT_SECONDS=str(SEND_TIMEOUT_S),
        CDMS_SEND_TIMEOUT_SECONDS=str(SEND_TIMEOUT_S),
    ) as served:
        yield served, url


# --- a raw WebSocket client ------------------------------------------------------------


def _send(sock: socket.socket, message: dict[str, object]) -> None:
    sock.sendall(frame(json.dumps(message).encode()))


class _Reader:
    """The server's frames, read off ``sock`` (unmasked, unfragmented)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionResetError("closed by the server")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def frame(self) -> tuple[int, bytes]:
        first, second = self._take(2)
        n = second & 0x7F
        if n == 126:
            n = int.from_bytes(self._take(2), "big")
        elif n == 127:
            n = int.from_bytes(self._take(8), "big")
        return first & 0x0F, self._take(n)


def _open(served: Served, protocol: str, role: str, sub: str) -> tuple[socket.socket, _Reader]:
    """A socket that reads little (a 4 KB receive buffer), acknowledged."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", served.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    reader = _Reader(sock)
    tok = token(role, sub=sub)
    _send(sock, {"type": "connection_init", "payload": {"Authorization": f"Bearer {tok}"}})
    while True:
        opcode, payload = reader.frame()
        assert opcode == 1, (opcode, payload)
        if json.loads(payload)["type"] == "connection_ack":
            return sock, reader


def _ask_heavy_then_write(sock: socket.socket, protocol: str, brand: str) -> None:
    """HEAVY_OPS heavy reads, then WRITES small mutations, sent and never read."""
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    for i in range(HEAVY_OPS):
        _send(sock, {"id": f"h{i}", "type": kind, "payload": {"query": HEAVY}})
    for i in range(WRITES):
        write = f'mutation {{ updateProduct(id: {i + 1}, input: {{brand: "{brand}"}}) {{ id }} }}'
        _send(sock, {"id": f"w{i}", "type": kind, "payload": {"query": write}})


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def _tcp_state(sock: socket.socket) -> int:
    """The client socket's TCP state (Linux ``tcp_info.tcpi_state``: 1 established, 7 closed
    (reset), 8 close-wait (the server's FIN))."""
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0])


def _written(url: str, brand: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM app.products WHERE brand = :b"), {"b": brand}
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _log_says(served: Served, text: str, at_least: int) -> bool:
    return served.log.read_text(errors="replace").count(text) >= at_least


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_client_that_never_reads_is_cut_off_and_nothing_unsendable_runs(
    served: tuple[Served, str], protocol: str
) -> None:
    server, url = served
    # warm up: one heavy answer read whole, so what follows measures the stall only
    sock, reader = _open(server, protocol, "admin", f"warm-{protocol}")
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    _send(sock, {"id": "1", "type": kind, "payload": {"query": HEAVY}})
    while json.loads(reader.frame()[1])["type"] != "complete":
        pass
    sock.close()
    time.sleep(0.5)
    before = _rss_mb(server.proc.pid)

    brand = f"never-read-{protocol}"
    sock, _ = _open(server, protocol, "admin", f"stall-{protocol}")
    peak = before
    with contextlib.closing(sock):
        _ask_heavy_then_write(sock, protocol, brand)
        deadline = time.monotonic() + 90
        while _tcp_state(sock) == 1:  # established: the server still holds it
            peak = max(peak, _rss_mb(server.proc.pid))
            assert time.monotonic() < deadline, (
                "the server still holds a socket whose client read nothing (peak RSS"
                f" {peak:.0f} MB, from {before:.0f} MB)"
            )
            time.sleep(0.2)
    # no answer was computed that could not be sent: the writes, asked after more heavy
    # answers than the socket may hold unsent, never ran
    assert _written(url, brand) == 0
    # the answers a socket may hold unsent, and the one in the connection's buffer, each
    # with its transient copies (the driver's, the message's, its frame's: ~8)
    answer_mb = 9
    bound = (SocketLimits().max_unsent + 1) * answer_mb * 8
    assert peak - before < bound, f"RSS {before:.0f} -> {peak:.0f} MB (bound {bound} MB)"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_reader_too_slow_gets_what_was_queued_then_close_4408(
    served: tuple[Served, str], protocol: str
) -> None:
    server, url = served
    brand = f"slow-{protocol}"
    closes = server.log.read_text(errors="replace").count("(4408)")
    sock, reader = _open(server, protocol, "admin", f"slow-{protocol}")
    answers = 0
    with contextlib.closing(sock):
        _ask_heavy_then_write(sock, protocol, brand)
        deadline = time.monotonic() + 60
        while not _log_says(server, "(4408)", closes + 1):  # the server gave up on it
            assert time.monotonic() < deadline, "no send timeout after the client stopped reading"
            time.sleep(0.1)
        while True:
            opcode, payload = reader.frame()
            if opcode == 8:  # close
                code = struct.unpack("!H", payload[:2])[0]
                break
            message = json.loads(payload)
            assert message["type"] in ("next", "data", "complete", "ka"), payload[:300]
            assert not message.get("id", "").startswith("w"), "a write ran for a stalled socket"
            answers += message["type"] in ("next", "data")
    assert code == 4408
    # the heavy answers computed: those the socket may hold unsent, and the one being sent
    assert 1 <= answers <= SocketLimits().max_unsent + 1
    assert _written(url, brand) == 0


STALLED_SOCKETS = 20


@pytest.fixture(scope="module")
def served_patient(
    clone_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A server that waits a minute for a client to take a message (the default is 30 s)."""
    url = _heavy_shop(clone_database, "slow_readers_patient")
    with _serving(
        url, tmp_path_factory.mktemp("slow_patient"), CDMS_WS_SEND_TIMEOUT_SECONDS="60"
    ) as served:
        yield served


def test_one_credentials_stalled_sockets_hold_a_bounded_number_of_answers(
    served_patient: Served,
) -> None:
    """Twenty sockets of one credential that read nothing: the answers computed and not sent
    are bounded over all of them (``max_unsent_per_principal``), not per socket (each held
    4 answers plus the one being written: ~100 answers here, and 100 sockets a credential)."""
    server = served_patient
    sock, reader = _open(server, PROTOCOLS[0], "admin", "many-warm")
    _send(sock, {"id": "1", "type": "subscribe", "payload": {"query": HEAVY}})
    while json.loads(reader.frame()[1])["type"] != "complete":
        pass
    sock.close()
    time.sleep(0.5)
    before = _rss_mb(server.proc.pid)
    socks = [_open(server, PROTOCOLS[0], "admin", "many")[0] for _ in range(STALLED_SOCKETS)]
    try:
        for s in socks:
            for i in range(HEAVY_OPS):
                _send(s, {"id": f"h{i}", "type": "subscribe", "payload": {"query": HEAVY}})
        # until the server's memory stops growing: every answer it will hold is computed
        samples = [before]
        started = time.monotonic()
        while time.monotonic() - started < 45:
            samples.append(_rss_mb(server.proc.pid))
            if len(samples) > 50 and max(samples[-50:]) - min(samples[-50:]) < 5:
                break
            time.sleep(0.2)
        peak = max(samples)
    finally:
        for s in socks:
            s.close()
    answer_mb = 9  # as above: each answer with its transient copies (~8)
    bound = (SocketLimits().max_unsent_per_principal + 1) * answer_mb * 8
    assert peak - before < bound, f"RSS {before:.0f} -> {peak:.0f} MB (bound {bound} MB)"


HTTP_READERS = 30


def _post_unread(
    served: Served, tok: str, small_buffer: bool = True, close: bool = False
) -> socket.socket:
    """A connection that sends HEAVY over HTTP and reads nothing yet (a 4 KB receive
    buffer, unless not ``small_buffer``; ``close``: asking the server to close after it)."""
    sock = socket.socket()
    if small_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", served.port))
    body = json.dumps({"query": HEAVY}).encode()
    sock.sendall(
        (
            f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
            f"Authorization: Bearer {tok}\r\nContent-Type: application/json\r\n"
            + ("Connection: close\r\n" if close else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    return sock


def test_http_clients_that_never_read_are_reset_and_hold_a_bounded_memory(
    served: tuple[Served, str],
) -> None:
    """Thirty HTTP requests of one credential whose answers (~8.7 MB each) are never read:
    past 8 such connections the next is reset at its first look (HeadLimits.stall_s), and
    each is reset once nothing was read for CDMS_SEND_TIMEOUT_SECONDS. Was: uvicorn waited
    for good on a paused transport, so every answer stayed in memory (40 connections:
    +445 MB, all still open after 40 s), around the WebSocket bounds."""
    server, _ = served
    tok = token("admin", sub="http-unread")
    warm = _post_unread(server, tok)  # one answer read whole first: the stall alone counts
    warm.settimeout(30)
    got = b""
    while b'"data"' not in got or not got.rstrip().endswith(b"}"):
        chunk = warm.recv(1 << 20)
        assert chunk, got[:300]
        got += chunk
    warm.close()
    time.sleep(0.5)
    before = _rss_mb(server.proc.pid)
    socks = [_post_unread(server, tok) for _ in range(HTTP_READERS)]
    peak, held_most = before, []
    try:
        deadline = time.monotonic() + 90
        while any(_tcp_state(s) == 1 for s in socks):
            peak = max(peak, _rss_mb(server.proc.pid))
            held_most.append(sum(_tcp_state(s) == 1 for s in socks))
            assert time.monotonic() < deadline, (
                f"{held_most[-1]} HTTP connections that read nothing are still held (peak RSS"
                f" {peak:.0f} MB, from {before:.0f} MB)"
            )
            time.sleep(0.2)
    finally:
        for s in socks:
            s.close()
    # a few seconds in (the answers computed, each looked at once): 8 left at most, the
    # credential's stalled connections, until the send timeout resets them too
    assert min(held_most) <= 8 < HTTP_READERS, held_most
    bound = HTTP_READERS * 9 * 2  # every answer once, with a copy in flight
    assert peak - before < bound, f"RSS {before:.0f} -> {peak:.0f} MB (bound {bound} MB)"


def test_an_answer_written_whole_and_never_read_is_reset_after_the_close_too(
    served: tuple[Served, str],
) -> None:
    """The second hostile review: once the whole answer was in the transport's buffer and
    the server closed the connection (``Connection: close``, uvicorn's keep-alive timeout,
    a refusal after it), the send timeout no longer looked at it: asyncio's close waits for
    the client to read, so an answer nobody read stayed in memory for good, holding one of
    the credential's 8 slow-reader places. It is reset at the send timeout as before."""
    server, _ = served
    tok = token("admin", sub="http-unread-close")
    socks = [_post_unread(server, tok, close=True) for _ in range(3)]
    try:
        deadline = time.monotonic() + SEND_TIMEOUT_S + 3 * HeadLimits().stall_s + 10
        while any(_tcp_state(s) == 1 for s in socks):
            assert time.monotonic() < deadline, "an unread answer is held after its close"
            time.sleep(0.2)
    finally:
        for s in socks:
            s.close()


def test_http_clients_trickling_their_answers_in_hold_a_bounded_number(
    served: tuple[Served, str],
) -> None:
    """Thirty HTTP requests of one credential whose ~8.7 MB answers are read at ~4 KB a
    second each (an answer would take half an hour): past 8 such slow connections the next
    is reset at its first look. Was: each took a little at every look, so none counted as
    stalled and all thirty answers stayed in memory (the review of 2026-12-07: 162 -> 499
    MB in 25 s, ~9 GB at the request rate's pace)."""
    import threading

    server, _ = served
    tok = token("admin", sub="http-trickle")
    socks = [_post_unread(server, tok) for _ in range(HTTP_READERS)]
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            while not stop.is_set() and sock.recv(4096):
                stop.wait(1.0)

    readers = [threading.Thread(target=trickle, args=(s,), daemon=True) for s in socks]
    for r in readers:
        r.start()
    try:
        deadline = time.monotonic() + 60
        while (held := sum(_tcp_state(s) == 1 for s in socks)) > 8:
            assert time.monotonic() < deadline, f"{held} trickling connections still held"
            time.sleep(0.5)
        time.sleep(3 * SEND_TIMEOUT_S)  # still reading: the 8 are not reset for stalling
        assert sum(_tcp_state(s) == 1 for s in socks) == 8
    finally:
        stop.set()
        for s in socks:
            s.close()


def test_http_clients_reading_slowly_are_never_reset(served: tuple[Served, str]) -> None:
    """Twelve downloads of one credential at ~1.6 MB/s each, longer than the send timeout
    (3 s here): each takes some of its answer at every look, so none counts as stalled
    and none is reset (the hostile review of the first version: 8 of 16 steady readers of
    one key were reset, counted as stalled while their answers were simply in transit)."""
    from concurrent.futures import ThreadPoolExecutor

    server, _ = served
    tok = token("admin", sub="http-slow-but-reading")

    def download(_: int) -> int:
        sock = _post_unread(server, tok, small_buffer=False)
        got = bytearray()
        with contextlib.closing(sock):
            while not (got.endswith(b"}") and b'"data"' in got and len(got) > 8_000_000):
                chunk = sock.recv(65_536)
                if not chunk:
                    break
                got += chunk
                time.sleep(0.04)  # ~1.6 MB/s
        return len(got)

    with ThreadPoolExecutor(12) as pool:
        sizes = list(pool.map(download, range(12)))
    assert all(n > 8_000_000 for n in sizes), sizes
