"""cdms against PostGraphile v4 on the same database (prints figures; asserts nothing).

Seeds (once, then reused) 100,000 customers / 1,000,000 orders in ``cdms_bench_api`` (on
``DATABASE_URL``'s server, else the embedded one), installs PostGraphile v4 from the npm
registry (``postgraphile@4`` with ``@graphile-contrib/pg-simplify-inflector``, in
``~/.cache/cdms-bench/node``) and serves schema ``app`` with it, starts cdms as ``cdms serve``
runs it (uvicorn, ``--workers`` processes, demo-open, no rate limit), and loads both on
loopback with wrk (2 threads x 2C connections, a random customer per request), the two
servers in alternation (``--rounds``), for the equivalent queries:

  (a) one customer with their 10 latest orders, the orders' lines and products
  (b) 100 customers with 10 orders each and their lines
  (c) ``placeOrder`` (cdms only: PostGraphile has no procedure-backed mutation here)

It prints requests/s, p50 and p99 per server and round, and the ratio cdms / PostGraphile
of the medians. Both servers answer the same rows: PostGraphile connects as the database
owner (row-level security does not apply to it), cdms as its API role under RLS.

Usage: ``.venv/bin/python bench/peer.py [--customers N] [--orders M] [--seconds S]
[--rounds R] [--concurrency C] [--only a,b,c] [--workers W] [--no-peer]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
# run as a script, bench/ comes first on sys.path, and bench/ml.py would shadow the ml package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_DATABASE = "cdms_bench_api"

QUERY_A = """query ($id: ID!) { customer(id: $id) { id email firstName lastName
  orders(first: 10) { edges { node { id status orderedAt totalAmount
    items { lineNo quantity unitPrice lineTotal product { id sku name } } } } } } }"""

QUERY_B = """{ customers(first: 100) { edges { node { id email
  orders(first: 10) { edges { node { id status totalAmount
    items { lineNo quantity unitPrice product { sku } } } } } } } } }"""

PEER_A = """query ($id: BigInt!) { customer(id: $id) { id email firstName lastName
  orders(first: 10, orderBy: ORDERED_AT_DESC) { nodes { id status orderedAt totalAmount
    orderItems { nodes { lineNo quantity unitPrice lineTotal product { id sku name } } } } } } }"""

PEER_B = """{ customers(first: 100, orderBy: ID_ASC) { nodes { id email
  orders(first: 10, orderBy: ORDERED_AT_DESC) { nodes { id status totalAmount
    orderItems { nodes { lineNo quantity unitPrice product { sku } } } } } } } }"""

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

    from api.app import create_app, settle
    from db.engine import make_engine

    if workers == 1:
        app = create_app(make_engine(url))
        settle()
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
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


NODE_DIR = Path.home() / ".cache" / "cdms-bench" / "node"
PEER_PACKAGES = ["postgraphile@4", "@graphile-contrib/pg-simplify-inflector@6"]


def peer_command(url: str, port: int) -> list[str]:
    """PostGraphile v4 from the npm registry (installed once into NODE_DIR)."""
    binary = NODE_DIR / "node_modules" / ".bin" / "postgraphile"
    if not binary.exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        with console.status("installing PostGraphile v4 from the npm registry"):
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR),
                 *PEER_PACKAGES],
                check=True, capture_output=True,
            )  # fmt: skip
    return [
        str(binary), "--connection", url, "--schema", "app", "--port", str(port),
        "--host", "127.0.0.1", "--append-plugins", "@graphile-contrib/pg-simplify-inflector",
        "--disable-graphiql", "--disable-query-log", "--no-setof-functions-contain-nulls",
    ]  # fmt: skip


def _lua_string(text: str) -> str:
    """``text`` as a Lua string literal whose value is ``text`` as a JSON string."""
    return "'" + json.dumps(" ".join(text.split())).replace("\\", "\\\\").replace("'", "\\'") + "'"


_WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local kind, max_c, query, numeric = %(kind)s, %(max_c)d, %(query)s, %(numeric)s
local products = {%(products)s}
local n = 0
errors = 0
function init(args)
  n = (id or 0) * 50021  -- each thread its own sequence of customers (id: set in setup)
end
request = function()
  n = n + 1
  local body
  local c = (n * 7919) %% max_c + 1
  if kind == "a" then
    local id = numeric and tostring(c) or ('"' .. c .. '"')
    body = '{"query":' .. query .. ',"variables":{"id":' .. id .. '}}'
  elseif kind == "b" then
    body = '{"query":' .. query .. '}'
  else
    body = '{"query":' .. query .. ',"variables":{"c":"' .. c
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


def load_wrk(
    port: int, kind: str, query: str, seconds: float, concurrency: int, max_c: int,
    products: list[int], *, numeric_ids: bool = False,
) -> dict[str, float]:  # fmt: skip
    """wrk (2 threads, ``2 * concurrency`` connections) for ``seconds``."""
    import tempfile

    script = _WRK_LUA % {
        "kind": repr(kind),
        "max_c": max_c,
        "query": _lua_string(query),
        "numeric": "true" if numeric_ids else "false",
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
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_up(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("a server did not start")


SERVER_ENV = {"CDMS_DEMO_OPEN": "1", "CDMS_RATE_LIMIT": "0", "CDMS_MAX_QUERY_COST": "100000000"}
CDMS_QUERIES = {"a": QUERY_A, "b": QUERY_B, "c": MUTATION_C}
PEER_QUERIES = {"a": PEER_A, "b": PEER_B}
NAMES = {
    "a": "(a) customer + 10 orders + items",
    "b": "(b) 100 customers x 10 orders",
    "c": "(c) placeOrder",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8, help="connections per wrk thread")
    parser.add_argument("--only", default="a,b,c")
    parser.add_argument("--workers", type=int, default=1, help="cdms's uvicorn processes")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.workers)
        return
    if shutil.which("wrk") is None:  # before minutes of seeding
        console.print("[red]error:[/] bench/peer.py loads the servers with wrk (apt install wrk)")
        sys.exit(2)
    url = bench_url()
    max_c, products = prepare(url, args.customers, args.orders)
    for k, v in SERVER_ENV.items():
        os.environ.setdefault(k, v)
    kinds = args.only.split(",")
    cdms_port, peer_port = _free_port(), _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    servers = [
        subprocess.Popen(
            [sys.executable, __file__, "--serve", url, str(cdms_port), "--workers",
             str(args.workers)], env=env,
        )
    ]  # fmt: skip
    if args.peer:
        servers.append(subprocess.Popen(peer_command(url, peer_port), stdout=subprocess.DEVNULL))
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        _wait_up(cdms_port)
        if args.peer:
            _wait_up(peer_port)
        for kind in kinds:
            targets = [("cdms", cdms_port, CDMS_QUERIES[kind], False)]
            if args.peer and kind in PEER_QUERIES:
                targets.append(("PostGraphile", peer_port, PEER_QUERIES[kind], True))
            for _name, port, query, numeric in targets:  # warm-up: plans, caches, JIT
                load_wrk(port, kind, query, 3, args.concurrency, max_c, products,
                         numeric_ids=numeric)  # fmt: skip
            for r in range(args.rounds):
                for name, port, query, numeric in targets if r % 2 == 0 else targets[::-1]:
                    got = load_wrk(port, kind, query, args.seconds, args.concurrency, max_c,
                                   products, numeric_ids=numeric)  # fmt: skip
                    runs.setdefault((kind, name), []).append(got)
                    console.print(json.dumps({"case": kind, "server": name, "round": r, **got}))
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
    table = Table(
        title=f"{max_c:,} customers, cdms uvicorn x{args.workers}, wrk 2 threads x "
        f"{2 * args.concurrency} connections, {args.rounds} rounds of {args.seconds:g} s"
    )
    for col in ("case", "server", "req/s (each round)", "p50 ms", "p99 ms", "errors"):
        table.add_column(col, justify="right")
    for kind in kinds:
        for name in ("cdms", "PostGraphile"):
            got = runs.get((kind, name))
            if not got:
                continue
            table.add_row(
                NAMES[kind], name, ", ".join(f"{g['rps']:.0f}" for g in got),
                ", ".join(f"{g['p50']:.1f}" for g in got),
                ", ".join(f"{g['p99']:.1f}" for g in got),
                f"{sum(g['errors'] for g in got):.0f}",
            )  # fmt: skip
        ours, theirs = runs.get((kind, "cdms")), runs.get((kind, "PostGraphile"))
        if ours and theirs:
            ratio = statistics.median(g["rps"] for g in ours) / statistics.median(
                g["rps"] for g in theirs
            )
            table.add_row("", "ratio cdms / PostGraphile", f"{ratio:.2f}x", style="bold")
    console.print(table)


if __name__ == "__main__":
    main()
