"""Freshness benchmark: how long a change takes to reach the cube (prints figures, asserts
nothing; needs the dev extra: ``uv sync --extra dev``, for httpx).

Starts the real ``cdms serve`` (its default ``CDMS_ETL_MODE=continuous``) on loopback,
demo-open and without a rate limit, and changes the shop through GraphQL:

``demo``   a fresh embedded PostgreSQL with the demo data (``cdms serve`` seeds, loads and
           trains on its first start), idle: one ``placeOrder`` at a time, then the cube
           polled every 20 ms until it counts the order, by its id (``dw.fact_orders``) and in
           today's count (the ``orders.daily`` rollup, as a dashboard tile reads it);
           then the new order's ``predictedStatus``/``predictedTotal`` asked at once (before
           any load: online features; after 100 such requests not counted, which warm the
           pool's prepared statements) and, for comparison, an order's stored ones.
``scale``  an existing or newly seeded database (``--database``, default
           ``cdms_bench_fresh``: 100,000 customers / 1,000,000 orders, seeded when empty, on
           ``DATABASE_URL``'s server, else the embedded one), twice for ``--seconds``: first
           with ``CDMS_ETL_MODE=off`` (the baseline), then ``continuous``. Each time the same
           open-loop load: ``--writes`` per second (half ``placeOrder``, half
           ``setOrderStatus`` PENDING -> PAID of an order placed earlier in the run),
           ``--reads`` per second of one customer + 10 orders + items (the shop's read),
           2/s of a dashboard cube query (revenue by month and category), and
           ``warehouseStatus`` polled every 200 ms; when its version moves (or every 5 s)
           the cube is asked for the changes not seen yet (by order id: the order, and
           its status), as a client told that new data is in would. Prints the lag
           p50/p95 (overall and per 10 s: no growth), errors by code, and the reads'
           p50/p99 with and without the loads (``--rounds N``: N pairs, the modes
           alternating as off, on, on, off, ...). Each phase is preceded by
           ``--warm-up`` seconds (15) of the same load, not counted: a new server's
           first seconds are cold in either mode.

Usage: ``.venv/bin/python bench/freshness.py demo [--samples 40]`` and
``.venv/bin/python bench/freshness.py scale [--seconds 60] [--writes 50] [--reads 40]``.
The machine's load average is printed before and after each part.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

console = Console()

PLACE = """mutation ($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, channel: WEB,
  paymentMethod: CARD, items: [{productId: $p, quantity: 1}]}) { id } }"""
PAY = """mutation ($o: ID!) { setOrderStatus(orderId: $o, status: PAID) { id status } }"""
BY_ID = """query ($ids: [Float!]!) { cube(where: {orders: {orderId: {in: $ids}}}, limit: 10000) {
  orders { orderId status count } } }"""
TODAY = """query ($d: String!) { cube(where: {orders: {orderedAt: {inDateRange: [$d, $d]}}}) {
  orders { count } } }"""
PREDICTIONS = """query ($id: ID!) { order(id: $id) { id
  predictedStatus { label probability } predictedTotal { value } } }"""
CUSTOMER = """query ($id: ID!) { customer(id: $id) { id email firstName lastName
  orders(first: 10) { edges { node { id status orderedAt totalAmount
    items { lineNo quantity unitPrice lineTotal product { id sku name } } } } } } }"""
DASHBOARD = """{ cube(where: {sales: {orderedAt: {inDateRange: ["2025-01-01", "2025-12-31"]}}}) {
  sales { revenue orderedAt { month } } products { category } } }"""
STATUS = "{ warehouseStatus { version lagSeconds state } }"
WARM_UP = 100  # prediction requests before the counted ones


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", "from api.cli import main; main()", "serve", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def wait_up(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Until ``/readyz`` says the warehouse and every model are ready: ``cdms serve``
    answers at once, while a first start still loads and trains in the background, and a
    phase measured then would measure that."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"cdms serve exited with {proc.returncode}")
        try:
            got = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            body = got.json()
            models = body.get("models") or {}
            if got.status_code == 200 and models and all(m["ready"] for m in models.values()):
                return
        except (httpx.TransportError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit("cdms serve did not come up")
        time.sleep(0.5)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def gql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    resp = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    took = time.perf_counter() - t0
    body: dict[str, Any] = resp.json() if resp.status_code == 200 else {}
    if resp.status_code != 200:
        body = {"errors": [{"extensions": {"code": f"HTTP {resp.status_code}"}}]}
    return took, body


def codes(body: dict[str, Any]) -> list[str]:
    return [str((e.get("extensions") or {}).get("code")) for e in body.get("errors") or []]


async def shop_ids(client: httpx.AsyncClient) -> tuple[list[int], list[int], int]:
    """Some customers, products in stock (placeOrder refuses inactive ones: an order of one
    is tried first), and the largest customer id."""
    _, body = await gql(client, "{ customers(first: 200) { edges { node { id } } } }")
    customers = [int(e["node"]["id"]) for e in body["data"]["customers"]["edges"]]
    _, body = await gql(
        client, "{ customers(first: 1, orderBy: [{id: DESC}]) { edges { node { id } } } }"
    )
    max_c = int(body["data"]["customers"]["edges"][0]["node"]["id"])
    _, body = await gql(client, "{ products(first: 300) { edges { node { id stock } } } }")
    products = []
    for e in body["data"]["products"]["edges"]:
        if e["node"]["stock"] > 50:
            _, tried = await gql(client, PLACE, {"c": str(customers[0]), "p": str(e["node"]["id"])})
            if not codes(tried):
                products.append(int(e["node"]["id"]))
        if len(products) >= 20:
            break
    return customers, products, max_c


# ---------------------------------------------------------------------------------------
# demo: idle, one change at a time
# ---------------------------------------------------------------------------------------
async def idle_lags(port: int, samples: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"by id": [], "rollup": [], "online": [], "stored": []}
    today = dt.datetime.now(dt.UTC).date().isoformat()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        customers, products, _ = await shop_ids(client)
        rng = random.Random(7)
        for _ in range(samples):
            await asyncio.sleep(1.5)  # idle: the previous change is loaded
            _, body = await gql(client, TODAY, {"d": today})
            base = (
                int(body["data"]["cube"][0]["orders"]["count"] or 0) if body["data"]["cube"] else 0
            )
            _, placed = await gql(
                client, PLACE, {"c": str(rng.choice(customers)), "p": str(rng.choice(products))}
            )
            t0 = time.perf_counter()
            order = int(placed["data"]["placeOrder"]["id"])
            seen: dict[str, float] = {}
            while len(seen) < 2:
                if "by id" not in seen:
                    _, body = await gql(client, BY_ID, {"ids": [float(order)]})
                    if body["data"]["cube"]:
                        seen["by id"] = time.perf_counter() - t0
                if "rollup" not in seen:
                    _, body = await gql(client, TODAY, {"d": today})
                    rows = body["data"]["cube"]
                    if rows and int(rows[0]["orders"]["count"] or 0) > base:
                        seen["rollup"] = time.perf_counter() - t0
                await asyncio.sleep(0.02)
            for k, v in seen.items():
                out[k].append(v)
        # a new order's predictions, asked at once (online features), vs stored ones; the
        # first WARM_UP are not counted: each pooled connection prepares a statement on
        # its fifth run (psycopg), as a server running for a while has
        old = None
        for n in range(WARM_UP + samples):
            _, placed = await gql(
                client, PLACE, {"c": str(rng.choice(customers)), "p": str(rng.choice(products))}
            )
            order = placed["data"]["placeOrder"]["id"]
            took, body = await gql(client, PREDICTIONS, {"id": order})
            assert not codes(body), body
            if n >= WARM_UP:
                out["online"].append(took)
            old = old or order
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # loaded and scored by now
        for _ in range(samples):
            took, body = await gql(client, PREDICTIONS, {"id": old})
            out["stored"].append(took)
    return out


def demo(args: argparse.Namespace) -> None:
    console.print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="cdms-fresh-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
        env.pop("DATABASE_URL", None)
        env.update(CDMS_DATA_DIR=str(Path(tmp) / "data"), CDMS_DEMO_OPEN="1", CDMS_RATE_LIMIT="0")
        port = free_port()
        log = Path(tmp) / "serve.log"
        started = time.perf_counter()
        proc = start_serve(env, port, log)
        try:
            wait_up(proc, port, timeout=900)
            console.print(f"cdms serve up on demo data in {time.perf_counter() - started:.0f} s")
            lags = asyncio.run(idle_lags(port, args.samples))
        finally:
            stop(proc)
            tail = log.read_text(errors="replace").splitlines()[-5:]
    table = Table("demo data, idle", "samples", "p50", "p95", "max")
    for name, label in (
        ("by id", "placeOrder -> cube counts it (by order id)"),
        ("rollup", "placeOrder -> today's count (orders.daily rollup)"),
        ("online", "new order's predictions (online features)"),
        ("stored", "a loaded order's predictions (stored)"),
    ):
        v = lags[name]
        unit = 1000 if name in ("online", "stored") else 1
        suffix = " ms" if unit == 1000 else " s"
        table.add_row(
            label,
            str(len(v)),
            f"{pct(v, 0.5) * unit:.2f}{suffix}",
            f"{pct(v, 0.95) * unit:.2f}{suffix}",
            f"{max(v) * unit:.2f}{suffix}",
        )
    console.print(table)
    console.print("server log tail: " + " | ".join(tail))
    console.print(f"load average after: {load_average()}")


# ---------------------------------------------------------------------------------------
# scale: a steady write load, with and without the loads
# ---------------------------------------------------------------------------------------
def prepare(database: str, customers: int, orders: int) -> str:
    import sqlalchemy as sa

    from db.config import DbSettings, to_libpq_url
    from db.engine import ensure_database, make_engine, with_database
    from db.migrate import upgrade
    from db.seed import seed
    from db.server import embedded_url

    settings = DbSettings.from_env()
    admin = (
        to_libpq_url(settings.database_url)
        if settings.database_url
        else embedded_url(settings.data_dir, "postgres")
    )
    ensure_database(admin, database)
    url = with_database(admin, database)
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        have = conn.execute(sa.text("SELECT count(*) FROM app.customers")).scalar_one()
    if have == 0:
        started = time.perf_counter()
        with console.status(f"seeding {customers:,} customers, {orders:,} orders"):
            seed(url, customers, orders, 42)
        console.print(f"seeded in {time.perf_counter() - started:.0f} s")
    with engine.begin() as conn:  # placeOrder must not run out of stock
        conn.execute(sa.text("UPDATE app.products SET stock = 1000000 WHERE stock < 1000000"))
    engine.dispose()
    return url


def vacuum(url: str) -> None:
    """What autovacuum would have done between phases, where it is off (as on the shared
    server here): every table past autovacuum's default threshold (dead rows over 50 + 20%
    of the live ones) is vacuumed and analysed. Without it each phase reads a more bloated
    shop and warehouse than the one before (every placed order updates its products' stock;
    every run rewrites the open month's RFM rows, the day's stock rows and the queues it
    consumes, dw.fact_delta and dw.etl_touched), and the phases stop being comparable."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables"
                " WHERE schemaname IN ('app', 'dw', 'dw_rollup', 'ml')"
                " AND n_dead_tup > 50 + 0.2 * n_live_tup"
            )
        ]
        for table in dict.fromkeys(["app.products", "app.orders", "app.order_items", *tables]):
            conn.execute(f"VACUUM ANALYZE {table}")


class Run:
    """What one phase measured."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.writes = 0
        self.errors: Counter[str] = Counter()
        self.first_error: dict[str, str] = {}
        self.reads: list[float] = []
        self.cube_reads: list[float] = []
        self.lags: list[tuple[float, float]] = []  # (when the change returned, lag)
        self.status_lag: list[float] = []
        self.pending: dict[int, tuple[str, float]] = {}  # order -> (status awaited, since)
        # every request: (what, wall-clock start, seconds), for --explain
        self.log: list[tuple[str, float, float]] = []
        self.wall = (time.time(), 0.0)  # the phase's start and end, wall clock

    @staticmethod
    def merged(runs: list[Run]) -> Run:
        out = Run()
        for r in runs:
            out.reads += r.reads
            out.cube_reads += r.cube_reads
        return out

    def error(self, body: dict[str, Any], what: str) -> None:
        for code in codes(body):
            self.errors[code] += 1
            self.first_error.setdefault(code, f"{what}: {body['errors'][0].get('message')}")


async def steady(port: int, seconds: float, writes: float, reads: float) -> Run:
    """The load for ``seconds``; the poller runs in both modes (the same read load), and
    waits up to 30 s more for the changes not seen yet (only with the loads on)."""
    run = Run()
    deadline = time.perf_counter() + seconds
    # an idle connection is dropped by the client before uvicorn's 5 s keep-alive closes
    # it (httpx's default expiry is 5 s too: a request then races the close, ReadError)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
    ) as client:
        customers, products, max_c = await shop_ids(client)
        rng = random.Random(11)
        placed: list[int] = []  # pending orders, to pay
        tasks: set[asyncio.Task[None]] = set()

        async def write(n: int) -> None:
            at = time.time()
            if n % 2 == 0 or not placed:
                took, body = await gql(
                    client,
                    PLACE,
                    {"c": str(rng.choice(customers)), "p": str(rng.choice(products))},
                )
                run.log.append(("write", at, took))
                if codes(body):
                    run.error(body, "placeOrder")
                    return
                order = int(body["data"]["placeOrder"]["id"])
                placed.append(order)
                run.pending[order] = ("PENDING", time.perf_counter())
            else:
                order = placed.pop(0)
                took, body = await gql(client, PAY, {"o": str(order)})
                run.log.append(("write", at, took))
                if codes(body):
                    run.error(body, "setOrderStatus")
                    return
                run.pending[order] = ("PAID", time.perf_counter())
            run.writes += 1

        async def read() -> None:
            at = time.time()
            took, body = await gql(client, CUSTOMER, {"id": str(rng.randint(1, max_c))})
            run.log.append(("shop read", at, took))
            run.reads.append(took)
            if codes(body):
                run.error(body, "customer")

        async def dashboard() -> None:
            at = time.time()
            took, body = await gql(client, DASHBOARD)
            run.log.append(("dashboard cube", at, took))
            run.cube_reads.append(took)
            if codes(body):
                run.error(body, "dashboard")

        async def poller() -> None:
            loading = True
            version: object = None
            asked = 0.0
            while time.perf_counter() < deadline or (
                loading and run.pending and time.perf_counter() < deadline + 30
            ):
                await asyncio.sleep(0.2)
                if not run.pending:
                    continue
                # as a client told by warehouseStatus (or warehouseUpdated) that new data
                # is in: the cube is asked when the version moved (or every 5 s), so that
                # the instrument does not load the server with cube queries that the
                # phases without loads answer from the cube cache
                _, body = await gql(client, STATUS)
                now = (body.get("data") or {}).get("warehouseStatus", {}).get("version")
                if now == version and time.perf_counter() - asked < 5.0:
                    continue
                version, asked = now, time.perf_counter()
                ids = list(run.pending)[:500]
                at = time.time()
                took, body = await gql(client, BY_ID, {"ids": [float(i) for i in ids]})
                run.log.append(("poll cube", at, took))
                if codes(body):
                    run.error(body, "cube poll")
                    continue
                now = time.perf_counter()
                if now > deadline and not run.lags:
                    loading = False  # nothing was ever seen: the loads are off
                for row in body["data"]["cube"]:
                    order = int(row["orders"]["orderId"])
                    want = run.pending.get(order)
                    status = str(row["orders"]["status"]).upper()
                    if want is not None and status == want[0]:
                        run.lags.append((want[1] - run.started, now - want[1]))
                        del run.pending[order]

        async def sampler() -> None:
            while time.perf_counter() < deadline:
                await asyncio.sleep(1.0)
                _, body = await gql(client, STATUS)
                if body.get("data"):
                    run.status_lag.append(float(body["data"]["warehouseStatus"]["lagSeconds"]))

        async def clock(rate: float, make: Any) -> None:
            n = 0
            start = time.perf_counter()
            while True:
                due = start + n / rate
                if due >= deadline:
                    return
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                task = asyncio.create_task(make(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1

        background = [asyncio.create_task(sampler()), asyncio.create_task(poller())]
        await asyncio.gather(
            clock(writes, write),
            clock(reads, lambda _: read()),
            clock(2.0, lambda _: dashboard()),
        )
        while tasks:
            await asyncio.sleep(0.05)
        await asyncio.gather(*background)
    run.wall = (run.wall[0], time.time())
    return run


def scale(args: argparse.Namespace) -> None:
    url = prepare(args.database, args.customers, args.orders)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    env.update(
        DATABASE_URL=url, CDMS_DEMO_OPEN="1", CDMS_RATE_LIMIT="0", CDMS_WORKERS=str(args.workers)
    )
    if args.etl_min_interval is not None:  # else the server's default floor
        env["CDMS_ETL_MIN_INTERVAL"] = str(args.etl_min_interval)
    runs: dict[str, Run] = {}
    log = Path(tempfile.gettempdir()) / f"cdms-freshness-{os.getpid()}.log"
    # the machine is shared: the modes alternate, so that a burst of someone else's work
    # does not land on one mode only
    order = ["off", "continuous", "continuous", "off"] * ((args.rounds + 1) // 2)
    for i, mode in enumerate(order[: 2 * args.rounds]):
        vacuum(url)
        port = free_port()
        started = time.perf_counter()
        proc = start_serve({**env, "CDMS_ETL_MODE": mode}, port, log)
        try:
            wait_up(proc, port, timeout=3600)  # the first start loads 1M orders and trains
            console.print(
                f"[bold]{mode}[/]: cdms serve up in {time.perf_counter() - started:.0f} s;"
                f" load average {load_average()}"
            )
            time.sleep(5)
            if args.warm_up > 0:
                # the same load, not counted: a new server's first seconds are cold (the
                # pool opens backends, statements are prepared), in either mode
                asyncio.run(steady(port, args.warm_up, args.writes, args.reads))
            runs[f"{mode} #{i // 2 + 1}"] = asyncio.run(
                steady(port, args.seconds, args.writes, args.reads)
            )
            console.print(f"  done; load average {load_average()}")
        finally:
            stop(proc)
    report(runs, args.seconds)
    if args.explain:
        explain(runs, url)
    console.print(f"server log: {log}")


def explain(runs: dict[str, Run], url: str) -> None:
    """For the slowest 2% of each phase's shop reads against all of them: the share that
    overlapped each kind of other request, and each pipeline step (dw.etl_run_step): what
    is over-represented among the slow ones is what slows them."""
    import psycopg

    with psycopg.connect(url) as conn:
        steps = conn.execute(
            "SELECT step, extract(epoch FROM started_at), extract(epoch FROM finished_at)"
            " FROM dw.etl_run_step WHERE started_at >= to_timestamp(%s)",
            (min(r.wall[0] for r in runs.values()),),
        ).fetchall()
    for mode, r in runs.items():
        reads = [(at, took) for kind, at, took in r.log if kind == "shop read"]
        if not reads:
            continue
        cut = pct([t for _, t in reads], 0.98)
        slow = [x for x in reads if x[1] >= cut]
        others = [(k, a, a + t) for k, a, t in r.log if k != "shop read"]
        others += [(f"step {s}", float(a), float(b)) for s, a, b in steps
                   if r.wall[0] <= float(a) <= r.wall[1]]  # fmt: skip

        def shares(
            group: list[tuple[float, float]], others: list[tuple[str, float, float]] = others
        ) -> Counter[str]:
            c: Counter[str] = Counter()
            for at, took in group:
                c.update({k for k, a, b in others if a < at + took and b > at})
            return Counter({k: v / len(group) for k, v in c.items()})

        all_, slow_ = shares(reads), shares(slow)
        table = Table(f"{mode}: slowest 2% (>= {cut * 1000:.1f} ms, {len(slow)})",
                      "overlapped, slow", "overlapped, all")  # fmt: skip
        for k in sorted(set(all_) | set(slow_), key=lambda k: -slow_[k]):
            table.add_row(k, f"{slow_[k]:.0%}", f"{all_[k]:.0%}")
        console.print(table)


def report(runs: dict[str, Run], seconds: float) -> None:
    table = Table("CDMS_ETL_MODE", "writes/s", "errors", "shop read p50", "p99",
                  "cube read p50", "p99")  # fmt: skip
    for mode, r in runs.items():
        table.add_row(
            mode,
            f"{r.writes / seconds:.1f}",
            str(sum(r.errors.values())),
            f"{pct(r.reads, 0.5) * 1000:.1f} ms",
            f"{pct(r.reads, 0.99) * 1000:.1f} ms",
            f"{pct(r.cube_reads, 0.5) * 1000:.1f} ms",
            f"{pct(r.cube_reads, 0.99) * 1000:.1f} ms",
        )
    console.print(table)
    for mode, r in runs.items():
        for code, n in r.errors.items():
            console.print(f"  {mode}: {n} x {code} (first: {r.first_error[code]})")
    off = [r for m, r in runs.items() if m.startswith("off")]
    on = [r for m, r in runs.items() if m.startswith("continuous")]
    if off and on:
        a, b = Run.merged(off), Run.merged(on)
        console.print(
            "all phases of a mode together: shop read p99 with loads / without:"
            f" {pct(b.reads, 0.99) * 1000:.1f} / {pct(a.reads, 0.99) * 1000:.1f} ms ="
            f" {pct(b.reads, 0.99) / pct(a.reads, 0.99):.2f}"
            f" (p50 {pct(b.reads, 0.5) / pct(a.reads, 0.5):.2f});"
            f" cube read p99 {pct(b.cube_reads, 0.99) / pct(a.cube_reads, 0.99):.2f}"
        )
    for mode, r in runs.items():
        if mode.startswith("continuous"):
            lag_report(mode, r, seconds)


def lag_report(mode: str, r: Run, seconds: float) -> None:
    lags = [lag for _, lag in r.lags]
    console.print(
        f"{mode}: lag, write returned -> cube shows it: {len(lags)} changes,"
        f" p50 {pct(lags, 0.5):.2f} s,"
        f" p95 {pct(lags, 0.95):.2f} s, max {max(lags, default=float('nan')):.2f} s;"
        f" {len(r.pending)} never seen"
    )
    windows = Table("seconds", "changes", "lag p50", "lag p95", "warehouseStatus lag max")
    for lo in range(0, int(seconds), 10):
        part = [lag for at, lag in r.lags if lo <= at < lo + 10]
        status = r.status_lag[lo : lo + 10]
        windows.add_row(
            f"{lo}-{lo + 10}",
            str(len(part)),
            f"{pct(part, 0.5):.2f} s",
            f"{pct(part, 0.95):.2f} s",
            f"{max(status, default=float('nan')):.2f} s",
        )
    console.print(windows)
    if lags:
        console.print(f"(mean {statistics.fmean(lags):.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    sub = parser.add_subparsers(dest="part", required=True)
    d = sub.add_parser("demo", help="demo data, idle")
    d.add_argument("--samples", type=int, default=40)
    s = sub.add_parser("scale", help="1M orders, a steady write load")
    s.add_argument("--database", default="cdms_bench_fresh")
    s.add_argument("--customers", type=int, default=100_000)
    s.add_argument("--orders", type=int, default=1_000_000)
    s.add_argument("--seconds", type=float, default=60)
    s.add_argument("--writes", type=float, default=50)
    s.add_argument("--reads", type=float, default=40)
    s.add_argument("--rounds", type=int, default=1, help="off/continuous pairs (alternated)")
    s.add_argument(
        "--warm-up", type=float, default=15, help="seconds of the same load before each phase"
    )
    s.add_argument("--workers", type=int, default=1, help="cdms serve --workers")
    s.add_argument(
        "--etl-min-interval",
        type=float,
        default=None,
        help="CDMS_ETL_MIN_INTERVAL for the continuous phases (default: the server's)",
    )
    s.add_argument(
        "--explain",
        action="store_true",
        help="what the slowest 2%% of shop reads overlapped: other requests, pipeline steps",
    )
    args = parser.parse_args()
    console.print(f"load average: {load_average()}")
    if args.part == "demo":
        demo(args)
    else:
        scale(args)
    console.print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
