"""Benchmark of the GraphQL API (prints figures; asserts nothing).

Seeds (once, then reused) a 100,000-customer data set in the dedicated database
``cdms_bench_api`` (on ``DATABASE_URL``'s server, else the embedded one), starts
``uvicorn`` as ``cdms serve --workers W`` runs it (default 1 process), and drives load on
loopback for:

  (a) one customer with their last 10 orders, items and products
  (b) ``customers(first: 100)`` with 10 orders each and their items
  (c) ``placeOrder`` (one line, quantity 1)

For each it prints requests/s, p50/p99 latency, the error count (non-200 or a body with
``errors``) and the SQL statements of a repeated request (counted in-process: SQLAlchemy's
``before_cursor_execute`` plus the fast lane's own statements), once per read path: the
compiled path (``CDMS_COMPILED_READS=1``, schema/compiled) and the Strawberry path
(``=0``), with the ratio compiled / Strawberry (``--compiled``/``--no-compiled`` runs one
path only). The server runs demo-open (anonymous = admin) without a rate limit.
The load generator is wrk (Debian's ``wrk``: 2 threads, 2 x C keep-alive connections, a
Lua script making the requests and counting GraphQL errors) when it is on PATH, else 2
processes of a minimal asyncio HTTP/1.1 keep-alive client (C connections each), whose own
CPU, on a 2-core machine, is taken from the server (``--client`` chooses).
Goals: (a) >= 1,000 requests/s, (b) p50 < 150 ms on a 2-core machine.

Usage: ``.venv/bin/python bench/api.py [--customers N] [--orders M] [--seconds S]
[--concurrency C] [--only a,b,c] [--compiled/--no-compiled] [--workers W]
[--client auto|wrk|python]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
# this script is bench/api.py: "api" must mean the project's package, not this file
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# run as a script, bench/ comes first on sys.path and this file would shadow the api package
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
if os.path.dirname(_HERE) not in sys.path:
    sys.path.insert(0, os.path.dirname(_HERE))

BENCH_DATABASE = "cdms_bench_api"

QUERY_A = """query ($id: ID!) { customer(id: $id) { id email firstName lastName
  orders(first: 10) { edges { node { id status orderedAt totalAmount
    items { lineNo quantity unitPrice lineTotal product { id sku name } } } } } } }"""

QUERY_B = """{ customers(first: 100) { edges { node { id email
  orders(first: 10) { edges { node { id status totalAmount
    items { lineNo quantity unitPrice product { sku } } } } } } } } }"""

MUTATION_C = """mutation ($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c,
  channel: WEB, paymentMethod: CARD, items: [{productId: $p, quantity: 1}]}) {
  id status totalAmount } }"""

console = Console()


def bench_url() -> str:
    from db.config import DbSettings, to_libpq_url
    from db.engine import ensure_database, with_database
    from db.server import embedded_url

    settings = DbSettings.from_env()
    admin = (
        to_libpq_url(settings.database_url)
        if settings.database_url
        else embedded_url(settings.data_dir, "postgres")
    )
    ensure_database(admin, BENCH_DATABASE)
    return with_database(admin, BENCH_DATABASE)


def prepare(url: str, customers: int, orders: int) -> tuple[int, list[int]]:
    """Migrate and seed (when empty); return (max customer id, ids of active products)."""
    import sqlalchemy as sa

    from db.engine import make_engine
    from db.migrate import upgrade
    from db.seed import seed

    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        have = conn.execute(sa.text("SELECT count(*) FROM app.customers")).scalar_one()
    if have == 0:
        started = time.perf_counter()
        with console.status(f"seeding {customers:,} customers, {orders:,} orders"):
            seed(url, customers, orders, 42)
        console.print(f"seeded in {time.perf_counter() - started:.0f} s")
    with engine.begin() as conn:
        # placeOrder must not run out of stock during the run
        conn.execute(sa.text("UPDATE app.products SET stock = 1000000 WHERE stock < 1000000"))
        max_c = conn.execute(sa.text("SELECT max(id) FROM app.customers")).scalar_one()
        # inactive products are refused by place_order: order only what is on sale
        products = conn.execute(
            sa.text("SELECT id FROM app.products WHERE active ORDER BY id")
        ).scalars()
        active = [int(p) for p in products]
    return int(max_c), active


def serve(url: str, port: int, workers: int) -> None:
    """The server process: the real app on uvicorn, as ``cdms serve --workers N`` runs it."""
    import uvicorn

    from api.app import create_app
    from db.engine import make_engine

    if workers == 1:
        uvicorn.run(create_app(make_engine(url)), host="127.0.0.1", port=port, log_level="warning")
        return
    os.environ["DATABASE_URL"] = url
    uvicorn.run(
        "api.app:worker_app",
        factory=True,
        workers=workers,
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )


def _payload(kind: str, max_c: int, products: list[int], rng: random.Random) -> dict[str, Any]:
    if kind == "a":
        return {"query": QUERY_A, "variables": {"id": str(rng.randint(1, max_c))}}
    if kind == "b":
        return {"query": QUERY_B}
    return {
        "query": MUTATION_C,
        "variables": {"c": str(rng.randint(1, max_c)), "p": str(rng.choice(products))},
    }


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
) -> tuple[int, bytes]:
    """One keep-alive ``POST /graphql`` (the server answers with Content-Length)."""
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


async def _drive(
    port: int,
    kind: str,
    seconds: float,
    concurrency: int,
    max_c: int,
    products: list[int],
    seed: int,
) -> tuple[list[float], int]:
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        reader._limit = 2**26  # type: ignore[attr-defined]  # big response heads are fine
        try:
            while time.perf_counter() < deadline:
                body = json.dumps(_payload(kind, max_c, products, rng)).encode()
                t0 = time.perf_counter()
                status, payload = await _post(reader, writer, body)
                latencies.append(time.perf_counter() - t0)
                if status != 200 or b'"errors"' in payload:
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def _client_process(args: tuple[int, str, float, int, int, int, int], out: Any) -> None:
    out.put(asyncio.run(_drive(*args)))


def load(
    port: int, kind: str, seconds: float, concurrency: int, max_c: int, products: list[int]
) -> dict[str, float]:
    """Two client processes, ``concurrency`` connections each, for ``seconds``."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_client_process,
            args=((port, kind, seconds, concurrency, max_c, products, i), out),
        )
        for i in range(2)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = max(seconds, time.perf_counter() - started - 1.0)  # minus process start-up
    lat = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    return {
        "requests": len(lat),
        "rps": len(lat) / seconds if lat else 0.0,
        "p50": statistics.median(lat) * 1000 if lat else float("nan"),
        "p99": lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan"),
        "errors": errors,
        "elapsed": elapsed,
    }


_WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local kind, max_c, query = %(kind)s, %(max_c)d, %(query)s
local products = {%(products)s}
local n = 0
errors = 0
function init(args)
  n = (id or 0) * 50021  -- each thread its own sequence of customers (id: set in setup)
end
request = function()
  n = n + 1
  local body
  if kind == "a" then
    body = '{"query":' .. query .. ',"variables":{"id":"' .. ((n * 7919) %% max_c + 1) .. '"}}'
  elseif kind == "b" then
    body = '{"query":' .. query .. '}'
  else
    body = '{"query":' .. query .. ',"variables":{"c":"' .. ((n * 7919) %% max_c + 1)
      .. '","p":"' .. products[(n * 104729) %% #products + 1] .. '"}}'
  end
  return wrk.format(nil, "/graphql", nil, body)
end
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then errors = errors + 1 end
end
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  local e = 0
  for _, t in ipairs(threads) do e = e + t:get("errors") end
  io.write(string.format("CDMS %%d %%d %%f %%f %%f\\n", summary.requests, e,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.duration / 1e6))
end
"""


def _lua_string(text: str) -> str:
    """``text`` as a Lua string literal whose value is ``text`` as a JSON string."""
    return "'" + json.dumps(" ".join(text.split())).replace("\\", "\\\\").replace("'", "\\'") + "'"


def load_wrk(
    port: int, kind: str, seconds: float, concurrency: int, max_c: int, products: list[int]
) -> dict[str, float]:
    """wrk (C, 2 threads, ``2 * concurrency`` connections): the load generator costs far
    less CPU per request than the Python clients, which share the 2 cores with the server."""
    import tempfile

    query = {"a": QUERY_A, "b": QUERY_B, "c": MUTATION_C}[kind]
    script = _WRK_LUA % {
        "kind": repr(kind),
        "max_c": max_c,
        "query": _lua_string(query),
        "products": ",".join(str(p) for p in products[:2000]),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        done = subprocess.run(
            ["wrk", "-t2", f"-c{2 * concurrency}", f"-d{seconds:g}s", "-s", fh.name,
             f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        )  # fmt: skip
    finally:
        os.unlink(fh.name)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("CDMS "))
    requests, errors, p50, p99, duration = line.split()[1:]
    return {
        "requests": float(requests),
        "rps": float(requests) / float(duration),
        "p50": float(p50),
        "p99": float(p99),
        "errors": float(errors),
        "elapsed": float(duration),
    }


def statements_per_request(url: str, kind: str, max_c: int, products: list[int]) -> int:
    """Run a request in-process twice and count the SQL statements the second one issues
    (a repeated query: the fast lane's statements included, which bypass SQLAlchemy)."""
    import httpx
    import sqlalchemy as sa

    from api.app import create_app
    from db.engine import make_engine
    from schema.compiled import lane

    engine = make_engine(url)
    app = create_app(engine)
    count = 0
    counting = False

    def before(*_: Any) -> None:
        nonlocal count
        if counting:
            count += 1

    async def twice() -> None:
        nonlocal counting
        transport = httpx.ASGITransport(app=app)
        rng = random.Random(1)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for second in (False, True):
                counting = second
                resp = await client.post("/graphql", json=_payload(kind, max_c, products, rng))
                body = resp.json()
                assert "errors" not in body, body

    sa.event.listen(engine, "before_cursor_execute", before)
    unobserve = lane.observe(before)
    try:
        asyncio.run(twice())
    finally:
        unobserve()
        sa.event.remove(engine, "before_cursor_execute", before)
    return count


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_up(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


SERVER_ENV = {"CDMS_DEMO_OPEN": "1", "CDMS_RATE_LIMIT": "0", "CDMS_MAX_QUERY_COST": "100000000"}


def _flag(compiled: bool) -> str:
    return "1" if compiled else "0"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8, help="connections per client")
    parser.add_argument("--only", default="a,b,c")
    parser.add_argument(
        "--compiled",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only the compiled (--compiled) or the Strawberry (--no-compiled) read path;"
        " default: both, with their ratio",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (cdms serve --workers)"
    )
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk (Debian package wrk; auto when on PATH) or 2 Python processes",
    )
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.workers)
        return
    url = bench_url()
    max_c, products = prepare(url, args.customers, args.orders)
    for k, v in SERVER_ENV.items():
        os.environ.setdefault(k, v)
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    drive = load_wrk if client == "wrk" else load
    modes = [True, False] if args.compiled is None else [args.compiled]
    names = {
        "a": "(a) customer + 10 orders",
        "b": "(b) 100 customers x 10 orders",
        "c": "(c) placeOrder",
    }
    kinds = args.only.split(",")
    results: dict[tuple[str, bool], dict[str, float]] = {}
    for compiled in modes:
        os.environ["CDMS_COMPILED_READS"] = _flag(compiled)
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", url, str(port), "--workers", str(args.workers)],
            env=env,
        )
        try:
            _wait_up(port)
            for kind in kinds:
                stmts = statements_per_request(url, kind, max_c, products)
                drive(port, kind, 2, args.concurrency, max_c, products)  # warm-up
                r = drive(port, kind, args.seconds, args.concurrency, max_c, products)
                r["statements"] = stmts
                results[(kind, compiled)] = r
                path = "compiled" if compiled else "strawberry"
                console.print(json.dumps({"case": kind, "path": path, **r}))
        finally:
            server.terminate()
            server.wait(10)
    clients = (
        f"wrk 2 threads x {2 * args.concurrency} connections"
        if client == "wrk"
        else f"2 client processes x {args.concurrency} connections"
    )
    table = Table(title=f"GraphQL API, {max_c:,} customers, uvicorn x{args.workers}, {clients}")
    for col in ("case", "path", "req/s", "p50 ms", "p99 ms", "requests", "errors", "SQL/request"):
        table.add_column(col, justify="right")
    for kind in kinds:
        for compiled in modes:
            r = results[(kind, compiled)]
            table.add_row(
                names[kind],
                "compiled" if compiled else "strawberry",
                f"{r['rps']:.0f}",
                f"{r['p50']:.1f}",
                f"{r['p99']:.1f}",
                f"{r['requests']:.0f}",
                f"{r['errors']:.0f}",
                f"{r['statements']:.0f}",
            )
        if len(modes) == 2:
            fast, slow = results[(kind, True)], results[(kind, False)]
            ratio = fast["rps"] / slow["rps"] if slow["rps"] else float("nan")
            table.add_row("", "ratio", f"{ratio:.2f}x", style="bold")
    console.print(table)
    console.print("SQL/request counts every statement, the session settings one included.")


if __name__ == "__main__":
    main()
