"""Soak benchmark: ``cdms serve`` under a mixed load (prints figures; asserts nothing).

Starts the real ``cdms serve`` (migrations, warehouse load and model training on first
start, then uvicorn) on loopback against the database ``cdms_bench_load`` (on
``DATABASE_URL``'s server, else the embedded one; seeded once with ``--customers`` /
``--orders`` and reused), or against an existing loaded database (``--database NAME``, e.g.
the 1M-order ``cdms_bench_api``: never seeded; ``cdms serve`` trains models only when the
registry is empty, so a database with models is not retrained; after the soak an incremental
ETL loads the orders it placed), and drives
``--concurrency`` keep-alive clients for ``--seconds`` with a fixed mix: customer reads,
order pages, cube queries, predictions and ``placeOrder``. Prints requests/s, p50/p99 per
kind and overall, the error count by code (with the first message of each), and the
server's RSS when idle before the load and at the end (goal: growth < 10%), with the load
average before and after.

The server runs demo-open (anonymous = admin) without a rate limit.

Usage: ``.venv/bin/python bench/load.py [--seconds 60] [--concurrency 32]
[--customers 5000] [--orders 50000 | --database cdms_bench_api]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATABASE = "cdms_bench_load"
console = Console()

CUSTOMER = """query ($id: ID!) { customer(id: $id) { id email firstName lastName
  orders(first: 10) { edges { node { id status orderedAt totalAmount
    items { lineNo quantity unitPrice product { id sku } } } } } } }"""
ORDERS = """query ($s: OrderStatus) { orders(first: 20, filter: {status: {eq: $s}}) {
  totalCount edges { node { id status totalAmount customer { id } } } } }"""
CUBE = """query ($c: String!) { cube(where: {orders: {channel: {equals: $c}}}, limit: 50) {
  orders { channel status count averageItems } } }"""
PREDICT = """query ($i: OrderStatusInput!) {
  predictOrderStatus(input: $i) { label probability } }"""
PLACE = """mutation ($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, channel: WEB,
  paymentMethod: CARD, items: [{productId: $p, quantity: 1}]}) { id } }"""
# share of each kind in the mix
MIX = {"customer": 35, "orders": 20, "cube": 15, "predict": 20, "placeOrder": 10}
PREDICT_INPUT = {
    "segment": "consumer",
    "ageBand": "25-34",
    "country": "Germany",
    "tenureDays": 30.0,
    "priorOrders": 0,
    "channel": "marketplace",
    "paymentMethod": "cash_on_delivery",
    "itemCount": 1,
    "lineCount": 1,
    "basketValue": 49.9,
    "mainCategory": "Apparel",
    "categoryCount": 1,
    "dayOfWeek": 5,
    "month": 11,
}


def database_url(database: str, create: bool) -> str:
    from db.config import DbSettings, to_libpq_url
    from db.engine import ensure_database, with_database
    from db.server import embedded_url

    settings = DbSettings.from_env()
    admin = (
        to_libpq_url(settings.database_url)
        if settings.database_url
        else embedded_url(settings.data_dir, "postgres")
    )
    if create:
        ensure_database(admin, database)
    return with_database(admin, database)


def prepare(
    url: str, customers: int, orders: int, *, existing: bool
) -> tuple[int, list[int], list[str]]:
    """Migrate and seed (when empty; an ``existing`` database must hold data); return (max
    customer id, active products, statuses)."""
    import sqlalchemy as sa

    from db.engine import check_connection, dispose_engine, make_engine
    from db.migrate import upgrade
    from db.seed import seed

    check_connection(url)
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        have = conn.execute(sa.text("SELECT count(*) FROM app.customers")).scalar_one()
        models = conn.execute(
            sa.text(
                "SELECT string_agg(name || ' v' || version, ', ' ORDER BY name)"
                " FROM ml.model_version WHERE active"
            )
        ).scalar()
    if existing:
        if have == 0:
            raise SystemExit(
                f"error[BAD_USER_INPUT]: database {url.rsplit('/', 1)[-1].split('?')[0]} holds"
                " no customers; load it first (bench/peer.py seeds cdms_bench_api)"
            )
        console.print(
            f"existing database: {have:,} customers, not seeded; models: "
            + (models or "none active (cdms serve trains them on its first start)")
        )
    elif have == 0:
        started = time.perf_counter()
        with console.status(f"seeding {customers:,} customers, {orders:,} orders"):
            seed(url, customers, orders, 42)
        console.print(f"seeded in {time.perf_counter() - started:.0f} s")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE app.products SET stock = 1000000 WHERE stock < 1000000"))
        max_c = int(conn.execute(sa.text("SELECT max(id) FROM app.customers")).scalar_one())
        products = [
            int(p)
            for p in conn.execute(sa.text("SELECT id FROM app.products WHERE active")).scalars()
        ]
        statuses = [
            str(s).upper()
            for s in conn.execute(sa.text("SELECT DISTINCT status FROM app.orders")).scalars()
        ]
    dispose_engine(url)
    return max_c, products, statuses


def payload(
    kind: str, rng: random.Random, max_c: int, products: list[int], statuses: list[str]
) -> bytes:
    if kind == "customer":
        body: dict[str, Any] = {"query": CUSTOMER, "variables": {"id": str(rng.randint(1, max_c))}}
    elif kind == "orders":
        body = {"query": ORDERS, "variables": {"s": rng.choice(statuses)}}
    elif kind == "cube":
        body = {"query": CUBE, "variables": {"c": rng.choice(["web", "mobile", "marketplace"])}}
    elif kind == "predict":
        i = dict(PREDICT_INPUT, basketValue=round(rng.uniform(5, 500), 2))
        body = {"query": PREDICT, "variables": {"i": i}}
    else:
        c, p = str(rng.randint(1, max_c)), str(rng.choice(products))
        body = {"query": PLACE, "variables": {"c": c, "p": p}}
    return json.dumps(body).encode()


async def post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
) -> tuple[int, bytes]:
    """One keep-alive ``POST /graphql`` (a minimal HTTP/1.1 client: little client CPU)."""
    writer.write(
        b"POST /graphql HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def drive(
    port: int,
    seconds: float,
    concurrency: int,
    data: tuple[int, list[int], list[str]],
    samples: dict[str, str],
) -> tuple[dict[str, list[float]], Counter[str], float]:
    """Run the mix; ``samples`` gets the first message of each error code."""
    latencies: dict[str, list[float]] = {k: [] for k in MIX}
    errors: Counter[str] = Counter()
    kinds = [k for k, share in MIX.items() for _ in range(share)]
    end = time.monotonic() + seconds

    async def worker(n: int) -> None:
        rng = random.Random(n)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < end:
                kind = rng.choice(kinds)
                body = payload(kind, rng, *data)
                started = time.perf_counter()
                status, raw = await post(reader, writer, body)
                latencies[kind].append(time.perf_counter() - started)
                if status != 200:
                    errors[f"HTTP {status}"] += 1
                    samples.setdefault(f"HTTP {status}", f"{kind}: {raw[:300]!r}")
                    continue
                for err in json.loads(raw).get("errors") or []:
                    code = f"{kind}: {(err.get('extensions') or {}).get('code')}"
                    errors[code] += 1
                    samples.setdefault(code, str(err.get("message"))[:300])
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return latencies, errors, time.monotonic() - started


def reload(url: str) -> None:
    """Load the soak's orders into an existing database's warehouse (incremental ETL), so it
    stays as complete as it was: otherwise the newest orders answer NOT_IN_WAREHOUSE to the
    next benchmark's prediction fields (bench/ml.py reads the newest 500)."""
    from etl import pipeline, runner

    with console.status("loading the soak's orders into the warehouse (incremental ETL)"):
        result = pipeline.run(url, check=False, wait=True)
        runner.dispose(url)
    console.print(f"warehouse reloaded in {result.seconds:.1f} s (run {result.run_id})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"cdms serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("cdms serve did not start")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument(
        "--database",
        help="an existing loaded database on the same server (e.g. cdms_bench_api): never"
        f" seeded (default: {DATABASE}, seeded with --customers/--orders when empty)",
    )
    args = parser.parse_args()

    from db.errors import CdmsError

    try:
        url = database_url(args.database or DATABASE, create=args.database is None)
        data = prepare(url, args.customers, args.orders, existing=args.database is not None)
    except CdmsError as exc:
        raise SystemExit(f"error[{exc.code}]: {exc}") from None
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    with tempfile.TemporaryDirectory() as tmp:
        env.update(DATABASE_URL=url, CDMS_DEMO_OPEN="1", CDMS_RATE_LIMIT="0", CDMS_DATA_DIR=tmp)
        cdms = str(Path(sys.executable).parent / "cdms")
        log = (Path(tmp) / "serve.log").open("wb")
        started = time.perf_counter()
        proc = subprocess.Popen(
            [cdms, "serve", "--port", str(port), "--no-seed-demo"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with console.status("cdms serve: migrations, warehouse load, model training"):
                wait_up(proc, port, timeout=900)
            console.print(f"server up in {time.perf_counter() - started:.0f} s")
            server = psutil.Process(proc.pid)
            rss_start = server.memory_info().rss
            load_before = os.getloadavg()
            samples: dict[str, str] = {}
            with console.status(f"soak: {args.concurrency} clients for {args.seconds:.0f} s"):
                latencies, errors, took = asyncio.run(
                    drive(port, args.seconds, args.concurrency, data, samples)
                )
            rss_end = server.memory_info().rss
            load_after = os.getloadavg()
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    if args.database:
        reload(url)

    table = Table(title=f"soak: {args.concurrency} clients, {took:.0f} s, loopback")
    for col in ("kind", "requests", "req/s", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    everything: list[float] = []
    for kind, values in latencies.items():
        everything += values
        table.add_row(
            kind,
            f"{len(values):,}",
            f"{len(values) / took:.1f}",
            f"{pct(values, 50):.1f}",
            f"{pct(values, 99):.1f}",
        )
    table.add_row(
        "all",
        f"{len(everything):,}",
        f"{len(everything) / took:.1f}",
        f"{pct(everything, 50):.1f}",
        f"{pct(everything, 99):.1f}",
    )
    console.print(table)
    console.print(f"errors: {sum(errors.values())} {dict(errors) if errors else ''}")
    for code, message in samples.items():
        console.print(f"  first {code}: {message}")
    growth = (rss_end - rss_start) / rss_start * 100
    console.print(
        f"server RSS: {rss_start / 2**20:.0f} MiB at start, {rss_end / 2**20:.0f} MiB at end"
        f" ({growth:+.1f}%)"
    )
    console.print(
        "load average (1/5/15 min) before the soak "
        + " ".join(f"{v:.2f}" for v in load_before)
        + ", after it "
        + " ".join(f"{v:.2f}" for v in load_after)
        + f" ({os.cpu_count()} cores; the clients share them with the server)"
    )


if __name__ == "__main__":
    main()
