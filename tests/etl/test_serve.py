"""`cdms serve` keeps the warehouse fresh by default: an order placed through GraphQL has
its predictions at once and is counted by the cube shortly after, with no `cdms etl run`;
with `--workers 2` one process runs the pipeline: a child of the supervisor that answers no
request, ignores a TERM of its own, is started again when it dies, and stops when the
supervisor dies."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.cli import cli_environment
from tests.etl.conftest import one, sql
from tests.reliability._server import free_port, stop, wait_healthy

PLACE = """mutation ($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, channel: WEB,
  paymentMethod: CARD, items: [{productId: $p, quantity: 1}]}) { id
  predictedStatus { label } predictedTotal { value } } }"""
COUNTED = (
    "query ($o: Float!) { cube(where: {orders: {orderId: {equals: $o}}}) { orders { count } } }"
)
STATUS = "{ warehouseStatus { version lagSeconds state } }"


def _gql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables or {}})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


def _wait(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _listener(url: str) -> int | None:
    """The pid of the process listening for the pipeline's changes (None: none)."""
    found = sql(
        url,
        "SELECT application_name FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE 'cdms-etl listen%%'",
    )
    assert len(found) <= 1, found
    if not found:
        return None
    return int(str(found[0][0]).removeprefix("cdms-etl listen (pid ").rstrip(")"))


def test_serve_loads_a_new_order_on_its_own(
    fresh_database: Callable[[], str], tmp_path: Path
) -> None:
    url = fresh_database()
    env = cli_environment(url, tmp_path)
    env.update(
        CDMS_DEMO_OPEN="1",
        CDMS_RATE_LIMIT="0",
        CDMS_DEMO_CUSTOMERS="150",
        CDMS_DEMO_ORDERS="1500",
    )  # CDMS_ETL_MODE unset: continuous
    own = os.nice(0)  # (the runner may be niced itself)
    nice = min(19, own + 5)
    env["CDMS_ETL_NICE"] = str(nice)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    children: dict[int, psutil.Process] = {}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from api.cli import main; main()", "serve", "--port", str(port),
         "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_healthy(proc, base, timeout=300, models=True)  # seed, load, train
        customer = one(url, "SELECT min(id) FROM app.customers")
        product = one(url, "SELECT min(id) FROM app.products WHERE active AND stock > 10")
        before = _gql(base, STATUS)["warehouseStatus"]

        placed = _gql(base, PLACE, {"c": str(customer), "p": str(product)})["placeOrder"]
        order = int(placed["id"])
        # predictions at once, from the order's operational rows
        assert placed["predictedStatus"]["label"] and placed["predictedTotal"]["value"] > 0

        def counted() -> bool:
            rows = _gql(base, COUNTED, {"o": float(order)})["cube"]
            return bool(rows) and rows[0]["orders"]["count"] == 1

        _wait(counted)

        def published() -> bool:  # (the facts commit a moment before the new version)
            status = _gql(base, STATUS)["warehouseStatus"]
            return bool(status["version"] > before["version"] and status["state"] == "SUCCEEDED")

        _wait(published)
        _wait(lambda: one(url, "SELECT count(*) FROM ml.order_predictions WHERE order_id = %s",
                          (order,)) == 1)  # fmt: skip

        # one listener, in a child of the supervisor that is not one of the two workers
        # (it holds no listening socket: no request reaches it)
        pipeline = _listener(url)
        assert pipeline is not None
        children.update((c.pid, c) for c in psutil.Process(proc.pid).children())
        assert pipeline in children
        serving = [
            pid
            for pid, c in children.items()
            if any(k.status == psutil.CONN_LISTEN for k in c.net_connections("tcp"))
        ]
        assert len(serving) == 2 and pipeline not in serving, (serving, pipeline)

        def nice_values(pid: int) -> set[int]:  # per thread: on Linux a thread's own
            found = set()
            for thread in psutil.Process(pid).threads():
                with contextlib.suppress(ProcessLookupError):  # (one that just ended)
                    found.add(os.getpriority(os.PRIO_PROCESS, thread.id))
            return found

        # the pipeline's process runs behind the workers, every thread of it (the
        # scheduler's, its listener's), and the workers at the server's priority
        assert psutil.Process(pipeline).num_threads() > 1  # the scheduler's are there
        assert nice_values(pipeline) == {nice}
        assert all(nice_values(pid) == {own} for pid in serving)

        # a TERM sent to it alone is ignored (the server stops it, after its requests)...
        os.kill(pipeline, signal.SIGTERM)
        time.sleep(1.5)
        assert _running(pipeline) and _listener(url) == pipeline
        # ...and one that dies is started again, and loads what comes next
        os.kill(pipeline, signal.SIGKILL)
        _wait(lambda: _listener(url) not in (None, pipeline), timeout=90)
        pipeline = _listener(url)
        assert pipeline is not None
        children.update((c.pid, c) for c in psutil.Process(proc.pid).children())
        again = _gql(base, PLACE, {"c": str(customer), "p": str(product)})["placeOrder"]
        order = int(again["id"])
        _wait(counted)
        assert b"pipeline process exited (code -9)" in (tmp_path / "serve.log").read_bytes()

        # the supervisor killed outright: the pipeline's process does not run on alone
        proc.kill()
        proc.wait(timeout=10)
        _wait(lambda: not _running(pipeline), timeout=15)
    finally:
        stop(proc)  # type: ignore[arg-type]
        for child in children.values():  # the orphaned workers of the killed supervisor
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        log.close()
