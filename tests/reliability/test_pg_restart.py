"""PostgreSQL stopped and started again under a running API (no app restart).

The test starts its OWN embedded cluster in a temporary folder (never the shared one other
tests use), serves the API from it, and runs a client loop of reads and ``placeOrder``:
while PostgreSQL is down every request answers fast (< 2 s) with ``SERVICE_UNAVAILABLE``
(never a hang, never INTERNAL or a 500); once it is back, requests succeed again on the
same process (``pool_pre_ping`` drops the dead connections), and every order acknowledged
before the stop is still there afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from db.engine import dispose_engine, ensure_database, make_engine, with_database
from db.migrate import upgrade
from db.server import _import_pgserver, pgdata_dir, running_pid, start_embedded, stop_embedded
from tests.api.conftest import build_shop
from tests.reliability._server import free_port, stop, wait_healthy

READ = "{ orders(first: 3) { totalCount edges { node { id } } } }"
PLACE = """mutation ($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, channel: WEB,
  paymentMethod: CARD, items: [{productId: $p, quantity: 1}]}) { id } }"""


class Cluster:
    """A private pgserver cluster that the test can stop and start again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.admin_url = start_embedded(data_dir)
        self.server: Any = _import_pgserver().get_server(pgdata_dir(data_dir))

    def _pg_ctl(self, args: list[str]) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(args, pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def stop_fast(self) -> None:
        self._pg_ctl(["-w", "-m", "fast", "stop"])

    def start(self) -> None:
        self.server.ensure_postgres_running()
        assert self.server.get_uri() == self.admin_url, "the restarted server moved its socket"

    def close(self) -> None:
        if running_pid(self.data_dir) is None:
            self.server.ensure_postgres_running()  # so pgserver's own stop succeeds
        stop_embedded(self.data_dir)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "private")
    try:
        yield c
    finally:
        c.close()


def _serve(url: str, tmp_path: Path) -> tuple[str, subprocess.Popen[bytes], Any]:
    """The app on ``url`` in its own process (demo-open, no rate limit): base URL, the
    process, its log file."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    env.update(DATABASE_URL=url, CDMS_DEMO_OPEN="1", CDMS_RATE_LIMIT="0")
    code = (
        "import uvicorn; from api.app import create_app; from db.engine import make_engine; "
        f"uvicorn.run(create_app(make_engine({url!r})), host='127.0.0.1', port={port},"
        " log_level='warning')"
    )
    log = (tmp_path / "app.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=log)
    return f"http://127.0.0.1:{port}", proc, log


def _post(
    client: httpx.Client, base: str, query: str, variables: Any = None
) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    resp = client.post(f"{base}/graphql", json={"query": query, "variables": variables})
    return resp.status_code, resp.json(), time.monotonic() - started


def test_api_survives_a_postgres_restart(cluster: Cluster, tmp_path: Path) -> None:
    ensure_database(cluster.admin_url, "cdms_restart")
    url = with_database(cluster.admin_url, "cdms_restart")
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        shop = build_shop(conn)
    customer, product = shop.customers[0], shop.products[0]
    dispose_engine(url)

    base, proc, log = _serve(url, tmp_path)
    acknowledged: list[int] = []
    variables = {"c": str(customer), "p": str(product)}

    def ok_round(client: httpx.Client) -> None:
        status, body, _ = _post(client, base, READ)
        assert status == 200 and "errors" not in body, body
        status, body, _ = _post(client, base, PLACE, variables)
        assert status == 200 and "errors" not in body, body
        acknowledged.append(int(body["data"]["placeOrder"]["id"]))

    try:
        wait_healthy(proc, base, ready=False)  # a bare app: no warehouse load
        with httpx.Client(timeout=10) as client:
            for _ in range(5):
                ok_round(client)

            cluster.stop_fast()
            down: list[str] = []
            until = time.monotonic() + 3
            while time.monotonic() < until:
                for query, var in ((READ, None), (PLACE, variables)):
                    status, body, took = _post(client, base, query, var)
                    assert took < 2.0, f"request took {took:.2f}s while the database was down"
                    assert status in (200, 503), (status, body)
                    codes = [e["extensions"]["code"] for e in body.get("errors", [])]
                    assert codes and set(codes) == {"SERVICE_UNAVAILABLE"}, body
                    down.append(codes[0])
            assert len(down) >= 4

            cluster.start()
            deadline = time.monotonic() + 15
            while True:
                status, body, _ = _post(client, base, READ)
                if status == 200 and "errors" not in body:
                    break
                assert time.monotonic() < deadline, f"no recovery after restart: {body}"
                time.sleep(0.2)
            for _ in range(3):
                ok_round(client)
        assert proc.poll() is None, "the app process died"
    finally:
        stop(proc)
        log.close()

    with make_engine(url).connect() as conn:
        present = conn.execute(
            sa.text("SELECT count(*) FROM app.orders WHERE id = ANY(:ids)"), {"ids": acknowledged}
        ).scalar_one()
    dispose_engine(url)
    assert present == len(acknowledged) == 8


PLACE_KEYED = """mutation ($c: ID!, $p: ID!, $k: String!) { placeOrder(input: {customerId: $c,
  channel: WEB, paymentMethod: CARD, items: [{productId: $p, quantity: 1}],
  idempotencyKey: $k}) { id } }"""


def test_retried_orders_with_idempotency_keys_are_placed_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A client places 40 orders, each with its own key, and retries every failure with the
    same key while PostgreSQL is stopped (fast) in the middle and started again: every key
    ends with exactly one order, every acknowledged order is there, nothing is doubled."""
    import threading

    ensure_database(cluster.admin_url, "cdms_keys")
    url = with_database(cluster.admin_url, "cdms_keys")
    upgrade(url)
    with make_engine(url).begin() as conn:
        shop = build_shop(conn)
        before = conn.execute(sa.text("SELECT count(*) FROM app.orders")).scalar_one()
    dispose_engine(url)
    customer, product = shop.customers[1], shop.products[0]

    base, proc, log = _serve(url, tmp_path)
    acknowledged: dict[str, int] = {}
    refusals: list[tuple[int, str]] = []
    outage = threading.Event()

    def bounce() -> None:
        while len(acknowledged) < 10:
            time.sleep(0.05)
        cluster.stop_fast()
        outage.set()
        time.sleep(2)
        cluster.start()

    try:
        wait_healthy(proc, base, ready=False)  # a bare app: no warehouse load
        bouncer = threading.Thread(target=bounce, daemon=True)
        bouncer.start()
        with httpx.Client(timeout=10) as client:
            for i in range(40):
                key = f"order-{i}"
                variables = {"c": str(customer), "p": str(product), "k": key}
                deadline = time.monotonic() + 60
                while True:
                    try:
                        status, body, _ = _post(client, base, PLACE_KEYED, variables)
                    except httpx.TransportError:
                        status, body = 0, {}
                    if status == 200 and "errors" not in body:
                        acknowledged[key] = int(body["data"]["placeOrder"]["id"])
                        break
                    codes = [e["extensions"]["code"] for e in body.get("errors", [])]
                    refusals.append((status, ",".join(codes)))
                    assert status in (0, 200, 503), (status, body)
                    assert set(codes) <= {"SERVICE_UNAVAILABLE"}, body
                    assert time.monotonic() < deadline, "no recovery"
                    time.sleep(0.1)
        bouncer.join(30)
        assert outage.is_set() and refusals, "the database was never away during the run"
    finally:
        stop(proc)
        log.close()

    with make_engine(url).connect() as conn:
        placed = conn.execute(sa.text("SELECT count(*) FROM app.orders")).scalar_one() - before
        keys = dict(
            (str(k), int(o))
            for k, o in conn.execute(sa.text("SELECT key, order_id FROM app.idempotency_keys"))
        )
    dispose_engine(url)
    assert placed == len(acknowledged) == 40, (placed, len(acknowledged))
    assert keys == acknowledged
