"""What a hostile client can do to ``cdms serve`` below the app, with raw sockets against a
real server process in production mode: a huge request head (URL or headers), a head or a
body sent slowly (slowloris), a body given up half-way. Other clients must still be
answered, nothing stays open for long, and nothing writes a traceback."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.cli import cli_environment
from tests.reliability._server import free_port, stop, wait_healthy
from tests.security.conftest import SECRET, token
from tests.security.transports import frame

TIMEOUT_S = 1.0  # the server's head and body timeouts in these tests
ROOT = Path(__file__).resolve().parents[2]  # the server runs this checkout's code


@dataclass(frozen=True)
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


@contextlib.contextmanager
def _serving(database: str, tmp: Path, *args: str, **settings: str) -> Iterator[Served]:
    """``cdms serve`` in production mode on ``database``, with these CDMS_* settings."""
    env = cli_environment(database, tmp) | {
        "CDMS_ENV": "production",
        "CDMS_JWT_SECRET": SECRET,
        "CDMS_ETL_MODE": "off",
        "PYTHONPATH": str(ROOT),
        **settings,
    }
    port = free_port()
    log = tmp / "serve.log"
    with log.open("wb") as out:
        cli = [sys.executable, "-c", "from api.cli import main; main()"]
        proc = subprocess.Popen(
            [*cli, "serve", "--port", str(port), "--no-seed-demo", *args],
            env=env,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", timeout=120, ready=False)
        yield Served(proc, port, log)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def served(
    clone_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with _serving(
        clone_database("transport"),
        tmp_path_factory.mktemp("serve_transport"),
        CDMS_HEADER_TIMEOUT_SECONDS=str(TIMEOUT_S),
        CDMS_BODY_TIMEOUT_SECONDS=str(TIMEOUT_S),
    ) as served:
        yield served


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    """What the server sends until it closes the connection (or ``timeout`` passes)."""
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return got


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (what it still sends, such as
    the rest of an earlier answer, read and dropped)."""
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        pass
    return False


def _keep_asking(
    served: Served, stop_event: threading.Event
) -> tuple[list[tuple[int, float]], threading.Thread]:
    """/healthz asked again and again (each on a new connection) until ``stop_event``: the
    (status, seconds) of each answer, and the asking thread."""
    answers: list[tuple[int, float]] = []

    def ask() -> None:
        while not stop_event.is_set():
            began = time.monotonic()
            try:
                status = httpx.get(f"{served.base}/healthz", timeout=30).status_code
            except httpx.TransportError:
                status = 0
            answers.append((status, time.monotonic() - began))
            time.sleep(0.05)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    return answers, thread


def _send_huge(sock: socket.socket, head: bytes, filler_mb: int, tail: bytes) -> int:
    """Send ``head``, ``filler_mb`` MB of ``a`` and ``tail``, until the server stops
    reading; the bytes sent."""
    sent = 0
    chunk = b"a" * 65536
    try:
        sock.sendall(head)
        for _ in range(filler_mb * 16):
            sock.sendall(chunk)
            sent += len(chunk)
        sock.sendall(tail)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


@pytest.mark.parametrize("where", ["header", "url"])
def test_a_huge_request_head_is_a_431_at_once_and_others_are_answered(
    served: Served, where: str
) -> None:
    """A 40 MB header (or URL) froze every other client for seconds (quadratic parsing in
    httptools); past 64 KiB the head is refused with a coded 431 and the connection closed,
    while /healthz from other clients is answered as usual."""
    if where == "header":
        head, tail = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", b"\r\n\r\n"
    else:
        head, tail = b"GET /healthz?q=", b" HTTP/1.1\r\nHost: x\r\n\r\n"
    done = threading.Event()
    answers, asking = _keep_asking(served, done)
    received: list[bytes] = []
    with served.connect() as sock:
        reader = threading.Thread(target=lambda: received.append(_read_all(sock, 60)))
        reader.start()
        began = time.monotonic()
        sent = _send_huge(sock, head, 40, tail)
        reader.join(60)
        took = time.monotonic() - began
    done.set()
    asking.join(35)
    answer = received[0] if received else b""
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large", answer[:300]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["errors"][0]["extensions"]["code"] == "REQUEST_HEADER_FIELDS_TOO_LARGE"
    assert "65536" in body["errors"][0]["message"]
    assert sent < 20 * 2**20, "the server kept reading a refused head"
    assert took < 10, took
    assert answers and all(status == 200 for status, _ in answers), answers
    assert max(t for _, t in answers) < 2, answers


@pytest.mark.parametrize(
    "request_bytes",
    [
        # request smuggling's shape: a length and a chunked encoding both
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",  # no colon
        b"GET /he\x00lthz HTTP/1.1\r\nHost: x\r\n\r\n",  # a NUL in the target
    ],
    ids=["length-and-chunked", "header-without-colon", "nul-in-target"],
)
def test_a_request_the_parser_refuses_is_a_coded_json_400(
    served: Served, request_bytes: bytes
) -> None:
    """A request HTTP cannot parse was answered by uvicorn in plain text ("Invalid HTTP
    request received."), unlike every other refusal; now it is a JSON 400 with a code, and
    the connection is closed."""
    with served.connect() as sock:
        sock.sendall(request_bytes)
        answer = _read_all(sock, 10)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"content-type: application/json" in head.lower(), head
    assert b"connection: close" in head.lower(), head
    assert b"\r\nserver:" not in head.lower(), head  # (no "server: uvicorn" to fingerprint)
    parsed = json.loads(body)
    assert parsed["data"] is None
    assert parsed["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert parsed["errors"][0]["message"] == "the request is not valid HTTP/1.1"


def test_a_head_just_under_the_limit_is_served(served: Served) -> None:
    filler = b"a" * 60_000
    with served.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + filler + b"\r\n\r\n")
        sock.settimeout(10)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nserver:" not in answer.partition(b"\r\n\r\n")[0].lower(), answer


def test_a_head_sent_slowly_is_closed_after_the_head_timeout(served: Served) -> None:
    """Slowloris: a head never finished (or nothing sent at all) held a connection open for
    good; now it is closed once CDMS_HEADER_TIMEOUT_SECONDS pass."""
    with served.connect() as half, served.connect() as idle:
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(TIMEOUT_S / 2)
        half.sendall(b"X-Slow: 1\r\n")  # trickling does not reset the clock
        assert _closed_within(half, TIMEOUT_S + 5)
        assert _closed_within(idle, 5)
    # a keep-alive connection's next request has its own head timeout
    with served.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert _closed_within(sock, TIMEOUT_S + 5)


def test_a_body_sent_slowly_is_a_408_after_the_body_timeout(served: Served) -> None:
    """Half a body held a connection (and a request's task) open for good; now the request
    is answered 408 with a code once CDMS_BODY_TIMEOUT_SECONDS pass, and closed."""
    tok = token("analyst")
    with served.connect() as sock:
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {tok}\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"query": '
        )
        began = time.monotonic()
        answer = _read_all(sock, TIMEOUT_S + 10)
        took = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"connection: close" in answer.lower()
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["errors"][0]["extensions"]["code"] == "REQUEST_TIMEOUT"
    assert took < TIMEOUT_S + 5, took


def test_a_client_gone_mid_body_leaves_no_traceback(served: Served) -> None:
    """A client that closed after half its body made the server log a 45-line traceback
    ("Exception in ASGI application"), one per connection, before any rate limit: 2,000
    connections, 2,000 tracebacks. The request ends quietly."""
    tok = token("analyst")
    logged = served.log.stat().st_size
    for _ in range(3):
        with served.connect() as sock:
            sock.sendall(
                b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {tok}\r\nContent-Length: 100\r\n\r\n".encode()
                + b"{"
            )
    assert httpx.get(f"{served.base}/healthz", timeout=10).status_code == 200
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with served.log.open("rb") as log:
            log.seek(logged)
            new = log.read().decode()
        assert "Traceback" not in new and "Exception in ASGI application" not in new, new
        time.sleep(0.2)


def test_worker_processes_hold_the_same_limits(
    clone_database: Callable[[str], str], tmp_path: Path
) -> None:
    """``--workers``: each worker process gets the limits from the supervisor (uvicorn
    pickles its configuration, protocol included, into processes it spawns)."""
    with _serving(
        clone_database("transport_workers"),
        tmp_path,
        "--workers",
        "2",
        CDMS_MAX_HEADER_BYTES="2048",
        CDMS_HEADER_TIMEOUT_SECONDS=str(TIMEOUT_S),
    ) as served:
        for _ in range(6):  # (the kernel spreads connections over both workers)
            with served.connect() as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3_000)
                assert _read_all(sock, 10).startswith(b"HTTP/1.1 431 "), served.log.read_text()
            with served.connect() as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Small: 1\r\n\r\n")
                sock.settimeout(10)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            with served.connect() as sock:
                assert _closed_within(sock, TIMEOUT_S + 5)


@pytest.mark.parametrize("path", ["/healthz", "/graphql"])
def test_a_body_trickled_after_the_answer_does_not_hold_the_connection(
    served: Served, path: str
) -> None:
    """An answer given without reading the body (405 for /healthz, 401 without a token)
    left the rest of the body to be read for as long as it came: a byte every few seconds
    held the connection (each byte stopped uvicorn's keep-alive timeout). The rest must
    arrive within the head timeout of the answer, else the connection is closed."""
    with served.connect() as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
            + b"Content-Length: 100000\r\n\r\n{"
        )
        sock.settimeout(10)
        assert sock.recv(65536).startswith((b"HTTP/1.1 405 ", b"HTTP/1.1 401 "))
        began = time.monotonic()
        closed = False
        while not closed and time.monotonic() - began < TIMEOUT_S + 5:
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            closed = _closed_within(sock, 0.3)
        assert closed, "the connection stayed open"


def _text(message: dict[str, object]) -> bytes:
    return frame(json.dumps(message).encode())


def _ws_open(served: Served, protocol: str) -> socket.socket:
    """A WebSocket on /graphql, handshake done (no frame read yet)."""
    sock = served.connect()
    sock.sendall(
        b"GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n".encode()
    )
    sock.settimeout(10)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
def test_operations_answered_to_a_socket_already_closed_leave_no_traceback(
    served: Served, protocol: str
) -> None:
    """A client that sent its operations, past its rate limit, and closed the socket at
    once: the server answered each (results, then RATE_LIMITED refusals) to a socket already
    closed, and logged a ~45-line traceback per answer ("Exception in ASGI application",
    "operation … on a WebSocket failed"): 132 in 30 s of a reconnect storm. What is sent
    to a socket already gone is dropped quietly; the socket's operations end with it."""
    logged = served.log.stat().st_size
    start = "subscribe" if protocol == "graphql-transport-ws" else "start"
    for i in range(3):  # (a bucket of its own each: a burst of 100 admitted, the rest refused)
        tok = token("analyst", sub=f"gone-{protocol}-{i}")
        with _ws_open(served, protocol) as sock:
            sock.sendall(
                _text({"type": "connection_init", "payload": {"Authorization": f"Bearer {tok}"}})
            )
            assert b"connection_ack" in sock.recv(65536)
            ops = b"".join(
                _text({"id": str(k), "type": start, "payload": {"query": "{ __typename }"}})
                for k in range(120)
            )
            sock.sendall(ops + frame((1000).to_bytes(2, "big"), 0x8))
            _read_all(sock, 5)
    assert httpx.get(f"{served.base}/healthz", timeout=10).status_code == 200
    deadline = time.monotonic() + 3  # (the server answers on after the socket closed)
    while time.monotonic() < deadline:
        with served.log.open("rb") as log:
            log.seek(logged)
            new = log.read().decode()
        assert "Traceback" not in new and "Exception in ASGI application" not in new, new[:6000]
        time.sleep(0.2)
