"""Scale-out figures on loopback (prints figures; asserts nothing).

A private primary (``initdb``, ``wal_level=replica``) and a streaming standby
(``pg_basebackup``), from tests/scale/cluster.py, a small shop on them, and:

  lag      placeOrder at ``--rate`` writes/s through the app for ``--seconds``: per order,
           the time from its acknowledgement until the standby has replayed its
           commitLsn (polled every 5 ms): p50 / p95 / max
  prepare  the same fast-lane read ``--reads`` times, CDMS_DB_PREPARE auto vs off
           (direct to the primary): ms per read, and the cost of off
  failover the standby made synchronous, placeOrder in a loop, the primary stopped
           (immediate) and the standby promoted: seconds without writes, acknowledged
           orders lost, errors clients saw

Usage: ``.venv/bin/python bench/scale.py [lag|prepare|failover ...]`` (default: all).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from rich.console import Console  # noqa: E402

from db.engine import dispose_engine, make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.replicas import HEADER, parse_lsn  # noqa: E402
from tests.api.conftest import build_shop, make_client  # noqa: E402
from tests.scale.cluster import Cluster, Server, pg_bin, wait_for  # noqa: E402

console = Console()
PLACE = """mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }"""
READ = """query ($id: ID!) { order(id: $id) { id status items { lineNo quantity } } }"""


def _setup(root: Path) -> tuple[Cluster, Server, Server, Any]:
    bindir = pg_bin()
    assert bindir is not None, "no PostgreSQL binaries (CDMS_PG_BIN)"
    cluster = Cluster(bindir, root)
    primary = cluster.primary()
    primary.sql("CREATE DATABASE cdms")
    upgrade(primary.url("cdms"))
    with make_engine(primary.url("cdms")).begin() as conn:
        shop = build_shop(conn)
    standby = cluster.standby(primary, "standby", cluster_name="'standby'")
    return cluster, primary, standby, shop


def _place_input(shop: Any, product: int = 0) -> dict[str, Any]:
    """One line of one unit (the shop stocks 1,000 of each product: runs use different ones)."""
    return {"customerId": str(shop.customers[1]), "channel": "WEB", "paymentMethod": "CARD",
            "items": [{"productId": str(shop.products[product]), "quantity": 1}]}  # fmt: skip


def lag(primary: Server, standby: Server, shop: Any, rate: float, seconds: float) -> None:
    engine = make_engine(primary.url("cdms"))
    lags: list[float] = []
    done = threading.Event()
    pending: list[tuple[float, int]] = []
    lock = threading.Lock()

    def watch() -> None:
        with psycopg.connect(standby.url("cdms"), autocommit=True) as conn:
            while not done.is_set() or pending:
                row = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()
                replayed = parse_lsn(str(row[0])) if row and row[0] else -1
                now = time.monotonic()
                with lock:
                    for item in [p for p in pending if p[1] <= replayed]:
                        lags.append(now - item[0])
                        pending.remove(item)
                time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    body = {"query": PLACE, "variables": {"input": _place_input(shop)}}
    with make_client(engine) as client:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            got = client.post("/graphql", json=body)
            with lock:
                pending.append((time.monotonic(), parse_lsn(got.headers[HEADER])))
            n += 1
            wait = started + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        achieved = n / (time.monotonic() - started)
    done.set()
    watcher.join(30)
    q = statistics.quantiles(lags, n=100)
    console.print(
        f"[bold]lag[/]: {n} orders at {achieved:.1f}/s; replay lag after acknowledgement"
        f" p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms"
    )
    dispose_engine(primary.url("cdms"))


def prepare(primary: Server, shop: Any, reads: int) -> None:
    oid = str(next(o for ids in shop.orders.values() for o in ids))
    body = {"query": READ, "variables": {"id": oid}}
    figures = {}
    for mode in ("auto", "off", "auto", "off"):
        os.environ["CDMS_DB_PREPARE"] = mode
        url = primary.url("cdms") + f"?application_name=bench_{mode}"
        engine = make_engine(url)
        with make_client(engine) as client:
            for _ in range(50):
                client.post("/graphql", json=body)
            started = time.perf_counter()
            for _ in range(reads):
                client.post("/graphql", json=body)
            ms = (time.perf_counter() - started) * 1000 / reads
        figures.setdefault(mode, []).append(ms)
        dispose_engine(url)
    os.environ.pop("CDMS_DB_PREPARE", None)
    auto, off = min(figures["auto"]), min(figures["off"])
    console.print(
        f"[bold]prepare[/]: fast-lane read {auto:.3f} ms with auto, {off:.3f} ms with off"
        f" ({(off / auto - 1) * 100:+.1f}%; best of 2 x {reads} reads, in-process client)"
    )


def failover(primary: Server, standby: Server, shop: Any) -> None:
    primary.sql("UPDATE app.products SET stock = 100000", "cdms")
    primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
    primary.sql("SELECT pg_reload_conf()")
    wait_for(lambda: primary.sql(
        "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == 1)  # fmt: skip
    url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/cdms"
           "?target_session_attrs=read-write&connect_timeout=2")  # fmt: skip
    engine = make_engine(url)
    acknowledged: list[str] = []
    errors: dict[str, int] = {}
    body = {"query": PLACE, "variables": {"input": _place_input(shop, 4)}}
    with make_client(engine) as client:

        def order() -> bool:
            got = client.post("/graphql", json=body)
            data = got.json()
            if got.status_code == 200 and "errors" not in data:
                acknowledged.append(data["data"]["placeOrder"]["id"])
                return True
            code = (data.get("errors") or [{}])[0].get("extensions", {}).get("code", "?")
            key = f"{got.status_code} {code}"
            errors[key] = errors.get(key, 0) + 1
            return False

        for _ in range(50):
            order()
        last_ok = time.monotonic()
        primary.stop("immediate")
        standby.promote()
        while not order():
            if time.monotonic() - last_ok > 120:
                console.print(f"[red]failover[/]: no write for 120 s; errors {errors}")
                return
            time.sleep(0.05)
        gap = time.monotonic() - last_ok
        for _ in range(50):
            order()
    with psycopg.connect(standby.url("cdms")) as conn:
        ids = {str(r[0]) for r in conn.execute("SELECT id FROM app.orders").fetchall()}
    lost = len(set(acknowledged) - ids)
    console.print(
        f"[bold]failover[/] (by hand: pg_ctl promote; Patroni adds its ttl/loop_wait): "
        f"{gap:.2f} s without writes, {len(acknowledged)} acknowledged, {lost} lost,"
        f" client errors {errors or 'none'}"
    )
    dispose_engine(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", default=["lag", "prepare", "failover"])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--reads", type=int, default=1000)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the servers stop in `finally`
    root = Path(tempfile.mkdtemp(prefix="cdms-bench-scale-"))
    cluster, primary, standby, shop = _setup(root)
    try:
        if "lag" in args.runs:
            lag(primary, standby, shop, args.rate, args.seconds)
        if "prepare" in args.runs:
            prepare(primary, shop, args.reads)
        if "failover" in args.runs:
            failover(primary, standby, shop)
    finally:
        from ml.serving import close_store_of

        close_store_of(primary.url("cdms"))
        dispose_engine(primary.url("cdms"))
        cluster.close()


if __name__ == "__main__":
    main()
