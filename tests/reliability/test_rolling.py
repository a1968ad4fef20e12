"""Rolling upgrades: every migration applied to a database while orders are being placed
takes no long lock on the writers; two API servers restarted one by one under read and
write load (each taken out of rotation, then SIGTERM, which drains) fail no request."""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from db.config import to_libpq_url
from db.migrate import upgrade
from tests.cli import cli_environment
from tests.etl.conftest import one
from tests.reliability._server import free_port, stop, wait_healthy

# A writer waits behind a migration at most the migration's lock_timeout
# (db/migrations/sqlfile.py, 0.2 s) plus its DDL: well below the server's deadlock_timeout
# (1 s), which is what a deadlock cost a writer before the migrations took their locks up
# front in the writers' order. A loose bound against long locks, not a speed figure: the
# wait is sampled in pg_stat_activity (wait_event_type 'Lock'), so CPU contention on a shared
# machine, which lengthens every write, does not count.
WRITER_BOUND_S = 1.0


@pytest.fixture
def bare_database(admin_url: str) -> Iterator[str]:
    """An empty database of its own (no migration applied), dropped afterwards."""
    from db.engine import drop_database, ensure_database, with_database

    name = f"rolling_{secrets.token_hex(4)}"
    ensure_database(admin_url, name)
    url = with_database(admin_url, name)
    try:
        yield url
    finally:
        from etl import runner

        runner.dispose(url)
        drop_database(admin_url, name)


def _who(application_name: str) -> str:
    """A session of the test by its application_name: a writer, the migration (no name),
    or '-' (the blocker had gone when sampled)."""
    return (
        application_name
        if application_name in ("writer-place", "writer-cancel", "-")
        else "migration"
    )


def _deadlocks(libpq: str) -> int:
    """pg_stat_database's deadlock count of the database (any backend's, any victim's)."""
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _wait_for_no_other_backend(libpq: str) -> None:
    """Until every other session of the database has ended (and so flushed its
    statistics: a backend reports its deadlocks at exit at the latest)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(libpq, autocommit=True) as conn:
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "sessions of the database did not end"
            time.sleep(0.1)


def test_every_migration_under_a_write_load_takes_no_long_lock_and_no_deadlock(
    bare_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every revision after 0003 applied one by one while one session places orders and
    another cancels them (the procedures lock orders, lines and products in different
    orders): no deadlock anywhere (writers, migrations, the server's count), no failed
    write, and the longest wait a writer saw is reported (docs/benchmarks.md)."""
    from db.engine import dispose_engine

    caplog.set_level(logging.INFO, logger="cdms.migrations")
    url = bare_database
    upgrade(url, "0003_app_logic")  # the first revision that can place orders
    libpq = to_libpq_url(url)
    with psycopg.connect(libpq, autocommit=True) as conn:
        customer = conn.execute(
            "INSERT INTO app.customers (email, first_name, last_name, country, region, city)"
            " VALUES ('a@b.example', 'Ada', 'Load', 'Germany', 'Berlin', 'Berlin') RETURNING id"
        ).fetchone()
        product = conn.execute(
            "INSERT INTO app.products (sku, name, category, subcategory, brand, unit_price,"
            " cost, stock) VALUES ('LOAD-1', 'Load', 'c', 's', 'b', 10, 5, 1000000) RETURNING id"
        ).fetchone()
    assert customer and product
    deadlocks_before = _deadlocks(libpq)
    items = f'[{{"product_id": {product[0]}, "quantity": 1}}]'
    stop_event = threading.Event()
    # (seconds, revision being applied) of every write
    places: list[tuple[float, str]] = []
    cancels: list[tuple[float, str]] = []
    placed: list[int] = []
    failures: list[str] = []
    deadlocks: list[tuple[str, str]] = []  # (writer, revision)
    current = ["0003_app_logic"]

    def timed(kind: str, conn: psycopg.Connection[Any], query: str, params: Any) -> Any:
        t = time.perf_counter()
        try:
            row = conn.execute(query, params).fetchone()
        except psycopg.errors.DeadlockDetected:
            deadlocks.append((kind, current[0]))
            return None
        except psycopg.Error as exc:
            failures.append(f"{kind}: {str(exc).splitlines()[0]}")
            return None
        (places if kind == "place" else cancels).append((time.perf_counter() - t, current[0]))
        return row

    # (waiter, whom it waits for) -> the longest lock wait sampled
    lock_waits: dict[tuple[str, str], float] = {}

    def sample() -> None:
        # every 10 ms: who waits for a heavyweight lock, behind whom, for how long so far
        with psycopg.connect(libpq, autocommit=True) as conn:
            while not stop_event.is_set():
                for waiter, blocker, seconds in conn.execute(
                    "SELECT w.application_name, coalesce(max(b.application_name), '-'),"
                    " extract(epoch FROM clock_timestamp() - w.query_start)::float8"
                    " FROM pg_stat_activity AS w"
                    " LEFT JOIN pg_stat_activity AS b ON b.pid = ANY (pg_blocking_pids(w.pid))"
                    " WHERE w.datname = current_database() AND w.wait_event_type = 'Lock'"
                    " GROUP BY w.pid, w.application_name, w.query_start"
                ):
                    key = (_who(waiter), _who(blocker))
                    lock_waits[key] = max(lock_waits.get(key, 0.0), seconds)
                time.sleep(0.01)

    def place() -> None:
        with psycopg.connect(libpq, autocommit=True, application_name="writer-place") as conn:
            while not stop_event.is_set():
                row = timed(
                    "place",
                    conn,
                    "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')",
                    (customer[0], items),
                )
                if row:
                    placed.append(int(row[0]))

    def cancel() -> None:
        # set_order_status takes the products' stock back before it writes the order
        done = 0
        with psycopg.connect(libpq, autocommit=True, application_name="writer-cancel") as conn:
            while not stop_event.is_set():
                if done >= len(placed) - 1:
                    time.sleep(0.005)
                    continue
                done += 1
                timed(
                    "cancel",
                    conn,
                    "SELECT id FROM app.set_order_status(%s, 'cancelled')",
                    (placed[done - 1],),
                )

    writers = [threading.Thread(target=f) for f in (place, cancel, sample)]
    for w in writers:
        w.start()
    try:
        time.sleep(0.5)
        baseline = len(places)
        t = time.perf_counter()
        for revision in _revisions_after("0003_app_logic"):  # one by one, orders coming
            current[0] = revision
            upgrade(url, revision)
            time.sleep(0.05)
        migrating = time.perf_counter() - t
        time.sleep(0.3)
    finally:
        stop_event.set()
        for w in writers:
            w.join(30)
    dispose_engine(url)
    _wait_for_no_other_backend(libpq)
    deadlocks_after = _deadlocks(libpq)

    during = [w for w in places[baseline:] + cancels if w[1] != "0003_app_logic"]
    longest, longest_in = max(during)
    by_revision: dict[str, float] = {}
    for seconds, revision in during:
        by_revision[revision] = max(by_revision.get(revision, 0.0), seconds)
    locked = [r.getMessage() for r in caplog.records if "locked" in r.getMessage()]
    retried = [m for m in locked if "(attempt 1," not in m]
    migration_deadlocks = [r.getMessage() for r in caplog.records if "deadlock" in r.getMessage()]
    # what a writer waited for behind a migration (writers also queue for the one product)
    behind_migration = [
        v for (w, b), v in lock_waits.items() if w != "migration" and b == "migration"
    ]
    longest_lock = max(behind_migration, default=0.0)
    print(
        f"\nmigrations 0004..head: {migrating:.2f} s under load;"
        f" {sum(1 for w in places[baseline:] if w[1] != '0003_app_logic')} orders placed,"
        f" {sum(1 for w in cancels if w[1] != '0003_app_logic')} cancelled;"
        f" longest lock wait (sampled every 10 ms): "
        + ", ".join(f"{w} behind {b} {v * 1000:.0f} ms" for (w, b), v in sorted(lock_waits.items()))
        + f"; longest write {longest * 1000:.0f} ms (during {longest_in}), per migration (ms): "
        + ", ".join(f"{r[:4]} {v * 1000:.0f}" for r, v in by_revision.items())
        + f"; up-front locks: {'; '.join(locked)}"
        + f"; deadlocks (server count): {deadlocks_after - deadlocks_before}"
    )
    assert not failures, failures[:5]
    assert deadlocks == [], deadlocks  # no writer was a deadlock's victim
    assert migration_deadlocks == [], migration_deadlocks  # nor any migration
    assert deadlocks_after == deadlocks_before  # nor anyone, says the server
    assert len(locked) >= 4, locked  # 0004, 0006, 0009, 0011 took their locks up front
    assert len(places) - baseline > 10 and len(cancels) > 10
    assert longest_lock < WRITER_BOUND_S, (lock_waits, retried)


def _revisions_after(base: str) -> list[str]:
    from alembic.script import ScriptDirectory

    from db.migrate import _config

    walked = [s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()]
    ordered = list(reversed(walked))
    return ordered[ordered.index(base) + 1 :]


PLACE = """mutation ($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, channel: WEB,
  paymentMethod: CARD, items: [{productId: $p, quantity: 1}]}) { id } }"""
READ = "{ customers(first: 5) { edges { node { id orders(first: 3) { totalCount } } } } }"


class _Api:
    def __init__(self, url: str, tmp_path: Path, name: str) -> None:
        env = cli_environment(url, tmp_path / name)
        env.update(
            CDMS_DEMO_OPEN="1",
            CDMS_RATE_LIMIT="0",
            CDMS_TRAIN_ON_START="0",
            CDMS_ETL_MODE="off",  # the test is about the API; the pipeline is tested elsewhere
        )
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = (tmp_path / f"{name}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from api.cli import main; main()", "serve",
             "--no-seed-demo", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()


def test_rolling_restart_of_two_servers_fails_no_request(
    fresh_database: Callable[[], str], tmp_path: Path
) -> None:
    from db.seed import seed
    from etl import pipeline, runner
    from tests.etl.conftest import SHOP

    url = fresh_database()
    seed(url, SHOP["customers"], SHOP["orders"], SHOP["seed"])
    pipeline.run(url)
    runner.dispose(url)
    customer = one(url, "SELECT min(id) FROM app.customers")
    product = one(url, "SELECT min(id) FROM app.products WHERE active")
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute("UPDATE app.products SET stock = 1000000 WHERE id = %s", (product,))
    apis: list[_Api] = []
    rotation: list[str] = []  # what a load balancer routes to: the ready servers
    lock = threading.Lock()
    done = threading.Event()
    counts = {"requests": 0, "writes": 0}
    failed: list[str] = []
    routed: dict[int, str | None] = {}  # each client's server for the request it is sending

    def client(kind: str) -> Callable[[], None]:
        def loop() -> None:
            i = 0
            me = threading.get_ident()
            with httpx.Client(timeout=30) as http:
                while not done.is_set():
                    with lock:
                        base = rotation[i % len(rotation)]
                        routed[me] = base
                    i += 1
                    if kind == "write":
                        body: dict[str, Any] = {
                            "query": PLACE,
                            "variables": {"c": str(customer), "p": str(product)},
                        }
                    else:
                        body = {"query": READ}
                    try:
                        resp = http.post(f"{base}/graphql", json=body)
                        ok = resp.status_code == 200 and "errors" not in resp.json()
                        if not ok:
                            failed.append(f"{resp.status_code} {resp.text[:200]}")
                    except httpx.HTTPError as exc:
                        failed.append(f"{type(exc).__name__}: {exc}")
                    with lock:
                        counts["requests"] += 1
                        counts["writes"] += kind == "write"
                        routed[me] = None

        return loop

    try:
        for name in ("a", "b"):
            api = _Api(url, tmp_path, name)
            apis.append(api)
        for api in apis:
            wait_healthy(api.proc, api.base, timeout=120)
            rotation.append(api.base)
        threads = [threading.Thread(target=client(k)) for k in ("read", "read", "write")]
        for t in threads:
            t.start()
        time.sleep(1.5)
        for index, name in ((0, "a2"), (1, "b2")):
            old = apis[index]
            with lock:  # the load balancer takes it out (its /readyz would go away)
                rotation.remove(old.base)
            # and drains it: the requests it had already routed there are sent and answered
            # before the server is stopped (a request routed but not yet written could
            # otherwise meet the server closing its idle keep-alive connection: a reset no
            # server can prevent, which is why balancers drain before they stop a backend)
            deadline = time.monotonic() + 30
            while True:
                with lock:
                    if old.base not in routed.values():
                        break
                assert time.monotonic() < deadline, "a request to the old server never ended"
                time.sleep(0.01)
            old.proc.terminate()  # SIGTERM (requests in flight finish: test_sigterm.py)
            assert old.proc.wait(timeout=30) == 0
            new = _Api(url, tmp_path, name)
            apis.append(new)
            wait_healthy(new.proc, new.base, timeout=120)
            with lock:
                rotation.append(new.base)
            time.sleep(1.5)
        done.set()
        for t in threads:
            t.join(60)
    finally:
        done.set()
        for api in apis:
            api.stop()
    print(f"\nrolling restart: {counts['requests']} requests ({counts['writes']} writes),"
          f" {len(failed)} failed")  # fmt: skip
    assert counts["requests"] > 50 and counts["writes"] > 5
    assert failed == [], failed[:5]
