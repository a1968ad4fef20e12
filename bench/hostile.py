"""A hostile customer against a live ``cdms serve`` (prints figures; asserts nothing).

Three runs, each on its own database and server process(es) on loopback:

  bombs   fragment bombs (each fragment spreads the next twice, n = 10 ... 40) over HTTP:
          the time to the coded answer, and /healthz's latency while they arrive
  rate    ``--workers 2`` with CDMS_RATE_LIMIT=50,100: operations accepted per second over
          HTTP (16 clients, one principal) and over WebSocket (4 sockets, one principal),
          once the burst is spent, against the limit of 50/s
  outage  placeOrder with idempotency keys while a private PostgreSQL is stopped (fast) and
          started again: acknowledged orders present, refusals and their codes, duplicates
          after retrying with the same keys

Usage: ``.venv/bin/python bench/hostile.py [bombs|rate|outage ...]`` (default: all three).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from api.auth import encode_jwt  # noqa: E402
from db.engine import dispose_engine, ensure_database, make_engine, with_database  # noqa: E402
from db.migrate import upgrade  # noqa: E402

console = Console()
SECRET = "bench-hostile-secret-0123456789abcdef"
WHO = "{ products(first: 1) { totalCount } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _token(role: str = "analyst", sub: str = "bench", **claims: Any) -> str:
    return encode_jwt({"role": role, "sub": sub, "exp": int(time.time()) + 3600, **claims}, SECRET)


@contextmanager
def _serve(url: str, *, workers: int = 1, **env_vars: str) -> Iterator[str]:
    """``cdms serve`` on ``url`` (already migrated and seeded); yields its base URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDMS_")}
    env.update(
        DATABASE_URL=url,
        CDMS_JWT_SECRET=SECRET,
        CDMS_ETL_MODE="off",
        CDMS_ENV="production",
        **env_vars,
    )
    cdms = str(Path(sys.executable).parent / "cdms")
    args = [cdms, "serve", "--no-seed-demo", "--port", str(port), "--workers", str(workers)]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        yield from _running(proc, log, base)


def _running(proc: subprocess.Popen[bytes], log: Any, base: str) -> Iterator[str]:
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(f"cdms serve exited:\n{log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("cdms serve did not start")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _database(admin_url: str, name: str) -> str:
    from db.seed import seed

    ensure_database(admin_url, name)
    url = with_database(admin_url, name)
    upgrade(url)
    with make_engine(url).connect() as conn:
        import sqlalchemy as sa

        empty = conn.execute(sa.text("SELECT count(*) FROM app.customers")).scalar_one() == 0
    if empty:
        seed(url, 200, 2_000, 7)
    dispose_engine(url)
    return url


def bomb(n: int) -> str:
    parts = ["query { ...F0 }"]
    parts += [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n)]
    parts.append(f"fragment F{n} on Query {{ __typename }}")
    return " ".join(parts)


def run_bombs(admin_url: str) -> None:
    url = _database(admin_url, "cdms_bench_hostile")
    table = Table(title="fragment bombs over HTTP (each fragment spreads the next twice)")
    for col in ("n", "expanded fields", "answer", "code", "ms (median of 5)", "healthz ms max"):
        table.add_column(col, justify="right")
    with _serve(url) as base, httpx.Client(timeout=60) as client:
        headers = {"Authorization": f"Bearer {_token('admin')}"}
        for n in (10, 15, 20, 25, 30, 35, 40):
            health: list[float] = []
            stop = threading.Event()

            def probe(stop: threading.Event = stop, health: list[float] = health) -> None:
                with httpx.Client(timeout=30) as c:
                    while not stop.is_set():
                        t = time.perf_counter()
                        c.get(f"{base}/healthz")
                        health.append((time.perf_counter() - t) * 1000)
                        time.sleep(0.01)

            prober = threading.Thread(target=probe)
            prober.start()
            times = []
            for _ in range(5):
                t = time.perf_counter()
                resp = client.post(f"{base}/graphql", json={"query": bomb(n)}, headers=headers)
                times.append((time.perf_counter() - t) * 1000)
            stop.set()
            prober.join()
            body = resp.json()
            code = (body.get("errors") or [{}])[0].get("extensions", {}).get("code", "-")
            table.add_row(
                str(n),
                f"{2**n:,}",
                str(resp.status_code),
                code,
                f"{statistics.median(times):.1f}",
                f"{max(health):.1f}" if health else "-",
            )
    console.print(table)


async def _ws_rate(base: str, seconds: float, sockets: int) -> tuple[int, int]:
    import websockets

    uri = base.replace("http://", "ws://") + "/graphql"
    accepted = refused = 0
    headers = {"Authorization": f"Bearer {_token(sub='ws-principal')}"}

    async def one(k: int) -> None:
        nonlocal accepted, refused
        async with websockets.connect(
            uri, subprotocols=["graphql-transport-ws"], additional_headers=headers
        ) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "connection_init"}))
            await ws.recv()
            deadline = time.monotonic() + seconds
            i = 0
            while time.monotonic() < deadline:
                i += 1
                op = f"{k}-{i}"
                message = {"id": op, "type": "subscribe", "payload": {"query": WHO}}
                await ws.send(json.dumps(message))
                while True:
                    msg = json.loads(await ws.recv())
                    if msg.get("id") != op:
                        continue
                    if msg["type"] == "next":
                        accepted += 1
                    elif msg["type"] == "error":
                        refused += 1
                    if msg["type"] in ("complete", "error"):
                        break

    await asyncio.gather(*(one(k) for k in range(sockets)))
    return accepted, refused


def run_rate(admin_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = _database(admin_url, "cdms_bench_hostile")
    table = Table(title="rate limit 50/s (burst 100), --workers 2, one principal per transport")
    for col in ("transport", "seconds", "accepted", "refused 429", "accepted/s after the burst"):
        table.add_column(col, justify="right")
    seconds = 10.0
    with _serve(url, workers=2, CDMS_RATE_LIMIT="50,100") as base:
        headers = {"Authorization": f"Bearer {_token(sub='http-principal')}"}
        deadline = time.monotonic() + seconds

        def worker(_: int) -> tuple[int, int]:
            ok = no = 0
            with httpx.Client(timeout=30) as c:
                while time.monotonic() < deadline:
                    s = c.post(f"{base}/graphql", json={"query": WHO}, headers=headers).status_code
                    ok += s == 200
                    no += s == 429
            return ok, no

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(worker, range(16)))
        ok, no = sum(r[0] for r in results), sum(r[1] for r in results)
        table.add_row("HTTP", f"{seconds:g}", str(ok), str(no), f"{(ok - 100) / seconds:.1f}")
        ok, no = asyncio.run(_ws_rate(base, seconds, 4))
        table.add_row("WebSocket", f"{seconds:g}", str(ok), str(no), f"{(ok - 100) / seconds:.1f}")
    console.print(table)


PLACE = """mutation ($c: ID!, $p: ID!, $k: String!) { placeOrder(input: {customerId: $c,
  channel: WEB, paymentMethod: CARD, items: [{productId: $p, quantity: 1}],
  idempotencyKey: $k}) { id } }"""


def run_outage() -> None:
    import sqlalchemy as sa

    from db.server import _import_pgserver, pgdata_dir, running_pid, start_embedded, stop_embedded

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pg"
        admin = start_embedded(data)
        server: Any = _import_pgserver().get_server(pgdata_dir(data))
        try:
            url = _database(admin, "cdms_bench_outage")
            with make_engine(url).connect() as conn:
                before = conn.execute(sa.text("SELECT count(*) FROM app.orders")).scalar_one()
                customer, product = conn.execute(
                    sa.text(
                        "SELECT (SELECT min(id) FROM app.customers),"
                        " (SELECT id FROM app.products WHERE active AND stock > 500 LIMIT 1)"
                    )
                ).one()
            dispose_engine(url)
            acknowledged: dict[str, int] = {}
            statuses: dict[str, int] = {}

            def bounce() -> None:
                from pgserver._commands import pg_ctl

                while len(acknowledged) < 50:
                    time.sleep(0.02)
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata,
                       user=server.system_user, timeout=30)  # fmt: skip
                time.sleep(3)
                server.ensure_postgres_running()

            with _serve(url, CDMS_RATE_LIMIT="0") as base, httpx.Client(timeout=10) as client:
                headers = {"Authorization": f"Bearer {_token('service')}"}
                bouncer = threading.Thread(target=bounce, daemon=True)
                bouncer.start()
                for i in range(200):
                    key = f"bench-{i}"
                    variables = {"c": str(customer), "p": str(product), "k": key}
                    while True:
                        try:
                            resp = client.post(
                                f"{base}/graphql",
                                json={"query": PLACE, "variables": variables},
                                headers=headers,
                            )
                            status, body = resp.status_code, resp.json()
                        except httpx.TransportError:
                            status, body = 0, {}
                        if status == 200 and "errors" not in body:
                            acknowledged[key] = int(body["data"]["placeOrder"]["id"])
                            break
                        codes = [e["extensions"]["code"] for e in body.get("errors", [])]
                        label = f"{status} {','.join(codes) or '-'}"
                        statuses[label] = statuses.get(label, 0) + 1
                        time.sleep(0.05)
                bouncer.join(60)
            with make_engine(url).connect() as conn:
                placed = conn.execute(sa.text("SELECT count(*) FROM app.orders")).scalar_one()
                present = conn.execute(
                    sa.text("SELECT count(*) FROM app.orders WHERE id = ANY(:ids)"),
                    {"ids": list(acknowledged.values())},
                ).scalar_one()
            dispose_engine(url)
        finally:
            if running_pid(data) is None:
                server.ensure_postgres_running()
            stop_embedded(data)
    table = Table(title="placeOrder x 200 with idempotency keys, PostgreSQL stopped for 3 s")
    for col in ("acknowledged", "present", "orders placed", "duplicates", "refusals (retried)"):
        table.add_column(col, justify="right")
    refusals = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) or "none"
    table.add_row(
        str(len(acknowledged)),
        str(present),
        str(placed - before),
        str(placed - before - len(acknowledged)),
        refusals,
    )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", default=["bombs", "rate", "outage"])
    args = parser.parse_args()
    from db.config import DbSettings, to_libpq_url
    from db.server import embedded_url

    settings = DbSettings.from_env()
    admin = (
        to_libpq_url(settings.database_url)
        if settings.database_url
        else embedded_url(settings.data_dir, "postgres")
    )
    for run in args.runs:
        if run == "bombs":
            run_bombs(admin)
        elif run == "rate":
            run_rate(admin)
        elif run == "outage":
            run_outage()
        else:
            raise SystemExit(f"unknown run {run!r}: bombs, rate or outage")


if __name__ == "__main__":
    main()
