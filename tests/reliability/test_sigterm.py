"""SIGTERM to ``cdms serve`` while requests are in flight: they finish with 200, the port
stops accepting new connections at once, and the process exits 0 within the grace period.

The requests are made honestly slow by holding a lock the query needs: the test takes
``ACCESS EXCLUSIVE`` on ``app.products`` in its own transaction, so each ``products`` query
waits inside PostgreSQL (visible in ``pg_stat_activity``) until the test commits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from db.config import to_libpq_url
from tests.reliability._server import free_port, stop, wait_healthy

IN_FLIGHT = 6
WRITES = 2  # of them, mutations: a write in flight is committed and answered too
QUERY = "{ products(first: 5) { totalCount edges { node { id sku } } } }"
CREATE = """mutation ($e: String!) { createCustomer(input: {email: $e, firstName: "S",
  lastName: "T", country: "Germany", region: "Berlin", city: "Berlin"}) { id email } }"""


def _waiting(url: str) -> int:
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_sigterm_finishes_in_flight_and_refuses_new(
    fresh_database: Callable[[], str], tmp_path: Path
) -> None:
    url = fresh_database()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    env.update(
        DATABASE_URL=url,
        CDMS_DEMO_OPEN="1",
        CDMS_RATE_LIMIT="0",
        CDMS_DATA_DIR=str(tmp_path / "data"),
        CDMS_ETL_MODE="off",
    )
    cdms = str(Path(sys.executable).parent / "cdms")
    cmd = [cdms, "serve", "--port", str(port), "--no-seed-demo"]
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    results: list[tuple[int, dict[str, Any]] | BaseException] = []
    lock_conn = psycopg.connect(to_libpq_url(url))
    try:
        wait_healthy(proc, base)

        def one(i: int) -> None:
            body: dict[str, Any] = {"query": QUERY}
            if i < WRITES:
                body = {"query": CREATE, "variables": {"e": f"sigterm{i}@example.com"}}
            try:
                resp = httpx.post(f"{base}/graphql", json=body, timeout=30)
                results.append((resp.status_code, resp.json()))
            except BaseException as exc:  # collected and asserted on below
                results.append(exc)

        # reads wait for the products, writes for the customers
        lock_conn.execute("LOCK TABLE app.products, app.customers IN ACCESS EXCLUSIVE MODE")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(IN_FLIGHT)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while _waiting(url) < IN_FLIGHT:
            assert time.monotonic() < deadline, "requests never reached the database"
            time.sleep(0.05)

        proc.send_signal(15)  # SIGTERM
        # the listening socket closes promptly; the in-flight requests are still blocked
        deadline = time.monotonic() + 5
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
            except httpx.ConnectError:
                break  # refused: the listening socket is closed
            except httpx.TransportError:
                pass  # accepted just before the signal was handled, then dropped: retry
            assert time.monotonic() < deadline, "new connections still accepted after SIGTERM"
            time.sleep(0.05)
        assert proc.poll() is None, "server exited before its in-flight requests finished"
        assert not results, "a request finished while the lock was held"

        lock_conn.commit()  # release: the blocked queries complete
        for t in threads:
            t.join(timeout=30)
        started = time.monotonic()
        code = proc.wait(timeout=15)
        assert code == 0, (tmp_path / "serve.log").read_text()
        assert time.monotonic() - started < 10  # uvicorn's timeout_graceful_shutdown
        assert len(results) == IN_FLIGHT
        created = []
        for r in results:
            assert not isinstance(r, BaseException), repr(r)
            status, body = r
            assert status == 200 and "errors" not in body, body
            if "createCustomer" in body["data"]:
                created.append(body["data"]["createCustomer"]["email"])
            else:
                assert body["data"]["products"]["totalCount"] == 0
        assert sorted(created) == [f"sigterm{i}@example.com" for i in range(WRITES)]
        with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
            stored = conn.execute(
                "SELECT count(*) FROM app.customers WHERE email LIKE 'sigterm%'"
            ).fetchone()
        assert stored == (WRITES,)  # committed, not only answered
    finally:
        lock_conn.close()
        stop(proc)
        log.close()
