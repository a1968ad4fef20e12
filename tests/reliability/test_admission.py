"""More concurrent requests holding a database connection than the pool has connections
and the process has worker threads, their statements waiting on a lock: once the lock is
gone every request is answered at once (200, or 503 ``SERVICE_UNAVAILABLE`` with
Retry-After), and so is a cheap read from another client — nobody waits out the pool's
timeout, on any transport (docs/security.md).

Without a bound, each request read on a pooled connection, then waited for a worker
thread to run its next statement (or COMMIT) while every thread waited for a connection
in the pool: everything stood still until the pool timed out.
"""

from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread
import psycopg
import pytest
from sqlalchemy.engine import Engine

from api.app import create_app
from api.security import SecurityConfig
from db.config import to_libpq_url
from tests.api.conftest import options
from tests.reliability.conftest import POOL_TIMEOUT_S, SmallPool, idle_in_transaction
from tests.security.transports import (
    TRANSPORTS,
    WS_PROTOCOL,
    Outcome,
    register,
    ws_init,
    ws_outcome,
    ws_send,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

# a resolver root beside a relational one: both run on the request's read transaction,
# whose connection the request keeps from its first statement to its end
SLOW = "query Slow { warehouseStatus { version } customers(first: 5) { totalCount } }"
CHEAP = "{ products(first: 1) { totalCount } }"


def _over(transport: str, client: TestClient, engine: Engine) -> Outcome:
    """SLOW over ``transport``, its answer awaited longer than a pool timeout."""
    op: dict[str, Any] = {"query": SLOW}
    if transport in WS_PROTOCOL:
        protocol = WS_PROTOCOL[transport]
        with client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
            assert ws_init(ws, protocol)["type"] == "connection_ack"
            ws_send(ws, protocol, "1", op)
            return ws_outcome(ws, "1", timeout=3 * POOL_TIMEOUT_S)
    if transport == "batch":
        resp = client.post("/graphql", json=[{"query": "{ __typename }"}, op])
        body = resp.json()
        body = body[1] if isinstance(body, list) else body
    else:
        if transport == "persisted":
            sha = register(engine, SLOW)
            op = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}}}
        resp = client.post("/graphql", json=op)
        body = resp.json()
    errors = body.get("errors") or []
    codes = [str((e.get("extensions") or {}).get("code")) for e in errors]
    if resp.status_code == 503:
        assert resp.headers.get("retry-after"), resp.headers
    return Outcome(status=resp.status_code, data=body.get("data"), codes=codes)


def _lock_waiters(url: str) -> int:
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_requests_holding_connections_never_wedge_the_pool(small: SmallPool) -> None:
    engine, url, _ = small
    register(engine, SLOW)
    n = 4 * len(TRANSPORTS)  # 20 requests; 2 connections, 4 worker threads
    app = create_app(engine, SecurityConfig(demo_open=True, demo_hosts=("testserver",)), options())
    with TestClient(app) as client:
        assert client.portal is not None

        def few_threads() -> None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = 4

        client.portal.call(few_threads)
        locker = psycopg.connect(to_libpq_url(url))
        locker.execute("LOCK TABLE app.customers IN ACCESS EXCLUSIVE MODE")
        answered: list[tuple[str, Outcome, float]] = []

        def one(i: int) -> None:
            transport = TRANSPORTS[i % len(TRANSPORTS)]
            outcome = _over(transport, client, engine)
            answered.append((transport, outcome, time.monotonic()))

        with ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(one, i) for i in range(n)]
            deadline = time.monotonic() + 10
            while _lock_waiters(url) == 0:  # a request's statement waits on the lock
                assert time.monotonic() < deadline, "no request reached the database"
                time.sleep(0.05)
            time.sleep(1.0)  # the others queue up meanwhile
            locker.rollback()  # the lock is gone: everything can run
            gone = time.monotonic()
            started = time.monotonic()
            cheap = client.post("/graphql", json={"query": CHEAP})
            cheap_s = time.monotonic() - started
            for f in futures:
                f.result()
        locker.close()
    assert cheap.status_code == 200 and "errors" not in cheap.json(), cheap.text
    assert cheap_s < POOL_TIMEOUT_S / 2, f"a cheap read took {cheap_s:.1f} s"
    assert len(answered) == n
    for transport, outcome, _ in answered:
        ok = outcome.codes == [] and outcome.data and outcome.data.get("customers")
        # (a batch whose other operation was answered is a 200)
        busy = outcome.codes == ["SERVICE_UNAVAILABLE"] and outcome.status in (None, 503, 200)
        assert ok or busy, (transport, outcome)
    slowest = max(at for _, _, at in answered) - gone
    assert slowest < POOL_TIMEOUT_S / 2, f"the last request answered {slowest:.1f} s later"
    assert idle_in_transaction(url) == 0


def test_a_request_the_gate_cannot_queue_is_503_busy(
    small: SmallPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CDMS_DB_QUEUE_SIZE=0: while a request holds the only permit (its statement waits on
    a lock), another that needs the database is refused at once with the stable busy error,
    503 and Retry-After; a read of the fast lane is still answered; the first request is
    answered once the lock is gone."""
    engine, url, _ = small
    monkeypatch.setenv("CDMS_DB_QUEUE_SIZE", "0")
    app = create_app(engine, SecurityConfig(demo_open=True, demo_hosts=("testserver",)), options())
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        locker = psycopg.connect(to_libpq_url(url))
        locker.execute("LOCK TABLE app.customers IN ACCESS EXCLUSIVE MODE")
        first = pool.submit(client.post, "/graphql", json={"query": SLOW})
        deadline = time.monotonic() + 10
        while _lock_waiters(url) == 0:
            assert time.monotonic() < deadline, "the first request did not reach the database"
            time.sleep(0.05)
        second = client.post("/graphql", json={"query": SLOW})
        write = client.post(
            "/graphql",
            json={"query": 'mutation { updateProduct(id: 1, input: {brand: "x"}) { id } }'},
        )
        cheap = client.post("/graphql", json={"query": CHEAP})
        locker.rollback()
        locker.close()
        answered = first.result(timeout=POOL_TIMEOUT_S)
    for refused in (second, write):
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        errors = refused.json()["errors"]
        assert [e["extensions"]["code"] for e in errors] == ["SERVICE_UNAVAILABLE"]
        assert "busy" in errors[0]["message"]
    assert cheap.status_code == 200 and "errors" not in cheap.json(), cheap.text
    assert answered.status_code == 200 and "errors" not in answered.json(), answered.text
