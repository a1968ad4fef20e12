"""Benchmark of the prediction models (issue 6); prints figures and ratios from one run.

    python bench/ml.py --orders 200000 --customers 20000     # builds a throw-away database
    python bench/ml.py --url postgresql://...                # an already loaded warehouse

Measures: training time per model (feature SQL, fit, evaluate+export), ONNX size and
session load time (``--no-train``: skip, use the active models); a query of 500 orders
with and without ``predictedStatus`` and ``predictedTotal``, same query otherwise (read from
the stored predictions, ``ml.stored``, brought up to date first; and computed on request, the
page's stored rows deleted for that run and re-scored after it), for two pages: four scalar
fields per order, and the fuller row an orders screen lists (with the customer's name); through
``POST /graphql`` of the app as served (``create_app``: the request checks and the read
executor; in-process through httpx's ASGI transport, so no socket), median of repeated runs
(the pages compared are requested in turn, in an order shuffled per round, so they share the
machine's drift), with the ratio (goal <= 1.3) and the SQL statements and onnxruntime runs
per request; a single what-if prediction through ``POST /graphql`` (p50/p95; goal p50 < 5
ms). Every figure is printed with the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import Engine

ORDERS_QUERY = """query($n: Int!) { orders(first: $n, orderBy: [{id: DESC}]) { edges { node {
  id status totalAmount channel %s } } } }"""
# the same 500 orders as an orders screen lists them (what a dashboard's order table shows)
LIST_QUERY = """query($n: Int!) { orders(first: $n, orderBy: [{id: DESC}]) { edges { node {
  id status orderedAt channel paymentMethod itemCount totalAmount
  customer { id firstName lastName } %s } } } }"""
PREDICTIONS = "predictedStatus { label probability } predictedTotal { value }"
WHAT_IF = """query($i: OrderStatusInput!) { predictOrderStatus(input: $i) { label probability } }"""
WHAT_IF_INPUT = {
    "segment": "consumer", "ageBand": "25-34", "country": "Germany", "tenureDays": 30.0,
    "priorOrders": 0, "channel": "marketplace", "paymentMethod": "cash_on_delivery",
    "itemCount": 1, "lineCount": 1, "basketValue": 49.9, "mainCategory": "Apparel",
    "categoryCount": 1, "dayOfWeek": 5, "month": 11,
}  # fmt: skip


def build(customers: int, orders: int, seed: int) -> tuple[str, str, str]:
    from db.config import DbSettings, to_libpq_url
    from db.engine import ensure_database, with_database
    from db.migrate import upgrade
    from db.seed import seed as seed_db
    from db.server import embedded_url
    from etl import pipeline

    settings = DbSettings.from_env()
    admin = (
        to_libpq_url(settings.database_url)
        if settings.database_url
        else embedded_url(settings.data_dir, "postgres")
    )
    name = f"cdms_bench_ml_{orders}"
    ensure_database(admin, name)
    url = with_database(admin, name)
    upgrade(url)
    t0 = time.perf_counter()
    seed_db(url, customers, orders, seed, reset=True)
    t1 = time.perf_counter()
    pipeline.run(url, full=True)
    t2 = time.perf_counter()
    print(f"data: {customers:,} customers, {orders:,} orders (seed {seed})")
    print(f"  seed {t1 - t0:.1f} s, ETL {t2 - t1:.1f} s")
    return admin, name, url


def bench_training(engine: Engine) -> None:
    from ml.registry import register
    from ml.scorer import load
    from ml.specs import SPECS
    from ml.train import MAX_SAMPLES_PER_TREE, FeatureCache, train

    print(
        f"training (80/20 time split; forests on one core, <= {MAX_SAMPLES_PER_TREE:,} rows"
        f" per tree; the order models share one feature query), load average"
        f" {os.getloadavg()[0]:.2f}:"
    )
    cache = FeatureCache()
    for name, spec in SPECS.items():
        m = train(engine, spec, cache=cache)
        s = m.seconds
        t0 = time.perf_counter()
        load(spec, 1, m.onnx, hashlib.sha256(m.onnx).hexdigest(),
             [f.as_json() for f in spec.features], m.classes)  # fmt: skip
        load_s = time.perf_counter() - t0
        metric = spec.headline_metric
        base = m.metrics.get(f"baseline_{metric}")
        print(
            f"  {name:<15} rows {m.row_count:>9,} train / {m.test_row_count:>8,} test | "
            f"features {s['features']:6.1f} s  fit {s['fit']:6.1f} s  "
            f"evaluate {s['evaluate']:5.1f} s  export {s['export']:5.1f} s  "
            f"total {s['total']:6.1f} s | "
            f"ONNX {len(m.onnx) / 1e6:5.1f} MB, session load {load_s * 1000:6.0f} ms | "
            f"{metric} {m.headline:.4f} (baseline {base:.4f}) | "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        register(engine, m, force=True)


class Served:
    """The app as ``cdms serve`` builds it (``create_app``: authentication, limits, the
    read executor), called in-process through httpx's ASGI transport; counts the
    SQL statements and onnxruntime runs of each request."""

    def __init__(self, engine: Engine) -> None:
        import sqlalchemy as sa

        from api.app import create_app
        from ml.serving import store_for
        from schema import lane

        os.environ.setdefault("CDMS_DEMO_OPEN", "1")
        os.environ.setdefault("CDMS_RATE_LIMIT", "0")
        os.environ.setdefault("CDMS_MAX_QUERY_COST", "100000000")
        self.engine = engine
        self.app = create_app(engine)
        self.store = store_for(engine)
        self.statements = 0

        def count(*_: Any) -> None:
            self.statements += 1

        sa.event.listen(engine, "before_cursor_execute", count)
        lane.observe(lambda _sql: count())  # the fast lane's statements bypass SQLAlchemy

    def _runs(self) -> int:
        return sum(self.store.get(n).runs for n in self.store.loaded())

    def timed(self, query: str, variables: dict[str, Any], runs: int) -> Timing:
        """``runs`` requests (after one warm-up) of ``query``."""
        return self.interleaved([query], variables, runs)[0]

    def interleaved(self, queries: list[str], variables: dict[str, Any], runs: int) -> list[Timing]:
        """``runs`` rounds of one request of each of ``queries``, in an order shuffled per
        round (after one warm-up round): queries compared with each other share the
        machine's drift and noise, and none always runs after the same one."""
        import httpx

        async def go() -> list[Timing]:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

                async def one(query: str) -> tuple[float, float, float, float]:
                    s0, r0 = self.statements, self._runs()
                    t0, c0 = time.perf_counter(), time.process_time()
                    resp = await client.post(
                        "/graphql", json={"query": query, "variables": variables}
                    )
                    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
                    body = resp.json()
                    if resp.status_code != 200 or "errors" in body:
                        errors = body.get("errors") or []
                        first = errors[0]["message"] if errors else resp.text[:200]
                        raise SystemExit(
                            f"query failed: {resp.status_code}, {len(errors)} error(s): {first}"
                            " (orders not in the warehouse yet? run cdms etl run first)"
                        )
                    if "predicted" in query and '"label"' not in resp.text:
                        raise SystemExit("the response holds no predictions")
                    return elapsed, cpu, self.statements - s0, self._runs() - r0

                for query in queries:  # warm-up (plans, caches, sessions)
                    await one(query)
                out: list[list[tuple[float, float, float, float]]] = [[] for _ in queries]
                order = list(range(len(queries)))
                shuffle = random.Random(7).shuffle
                for _ in range(runs):
                    shuffle(order)  # none always follows the same one (caches, plans)
                    for i in order:
                        out[i].append(await one(queries[i]))
                return [
                    Timing(
                        [r[0] for r in rows],
                        statistics.median(r[1] for r in rows),
                        sum(r[2] for r in rows) / runs,
                        sum(r[3] for r in rows) / runs,
                    )
                    for rows in out
                ]

        return asyncio.run(go())


@dataclass
class Timing:
    seconds: list[float]  # wall clock per request
    cpu: float  # median CPU seconds of this process per request (all its threads)
    statements: float  # SQL statements per request
    onnx_runs: float  # onnxruntime runs per request

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} (2 cores)"


def bench_queries(engine: Engine, runs: int) -> None:
    import sqlalchemy as sa

    from ml import stored
    from ml.serving import store_for

    store_for(engine)
    t0 = time.perf_counter()
    written = stored.refresh(engine)
    print(
        f"stored predictions brought up to date: {sum(written.values()):,} rows written"
        f" in {time.perf_counter() - t0:.1f} s (ml.stored.refresh; 0 when current)"
    )
    served = Served(engine)
    plain, pred, list_plain, list_pred = served.interleaved(
        [ORDERS_QUERY % "", ORDERS_QUERY % PREDICTIONS, LIST_QUERY % "", LIST_QUERY % PREDICTIONS],
        {"n": 500},
        runs,
    )
    # the same query once the page's stored predictions are gone: computed on request
    newest = "SELECT id FROM app.orders ORDER BY id DESC LIMIT 500"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM ml.order_predictions WHERE order_id IN ({newest})"))
    try:
        live = served.timed(ORDERS_QUERY % PREDICTIONS, {"n": 500}, runs)
    finally:
        restored = stored.refresh(engine)["ml.order_predictions"]
    print(f"POST /graphql as served, 500 orders, median of {runs}:")
    for name, t in (
        ("without predictions", plain),
        ("with predictedStatus + predictedTotal", pred),
        ("  the same, computed on request", live),
    ):
        print(
            f"  {name:<38} {t.median * 1000:7.1f} ms (server-process CPU {t.cpu * 1000:5.1f} ms)"
            f"  {t.statements:.0f} statements, {t.onnx_runs:.0f} ONNX runs"
        )
    print(
        f"  ratio {pred.median / plain.median:.2f} with the stored predictions (goal <= 1.3),"
        f" {live.median / plain.median:.2f} computed on request; CPU ratios"
        f" {pred.cpu / plain.cpu:.2f} / {live.cpu / plain.cpu:.2f}; {_load()}"
    )
    print(f"  (the page's {restored:,} stored rows deleted for the last line, then re-scored)")
    print("  the same 500 orders as an orders screen lists them (+ orderedAt paymentMethod")
    print("  itemCount customer { id firstName lastName }):")
    for name, t in (("without predictions", list_plain), ("with the two predictions", list_pred)):
        print(
            f"    {name:<36} {t.median * 1000:7.1f} ms (server-process CPU {t.cpu * 1000:5.1f} ms)"
            f"  {t.statements:.0f} statements, {t.onnx_runs:.0f} ONNX runs"
        )
    print(f"    ratio {list_pred.median / list_plain.median:.2f}; {_load()}")
    single = sorted(served.timed(WHAT_IF, {"i": WHAT_IF_INPUT}, runs * 10).seconds)
    p50 = single[len(single) // 2]
    p95 = single[int(len(single) * 0.95)]
    print(f"POST /graphql what-if predictOrderStatus, {len(single)} runs:")
    print(f"  p50 {p50 * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms (goal p50 < 5 ms); {_load()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="an already loaded warehouse (skips seeding)")
    ap.add_argument("--customers", type=int, default=2_000)
    ap.add_argument("--orders", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--keep", action="store_true", help="keep the throw-away database")
    ap.add_argument("--no-train", action="store_true", help="use the models already active")
    args = ap.parse_args()

    from db.engine import dispose_engine, drop_database, make_engine
    from ml.serving import close_store

    admin = name = None
    url = args.url
    if url is None:
        admin, name, url = build(args.customers, args.orders, args.seed)
    engine = make_engine(url)
    try:
        if not args.no_train:
            bench_training(engine)
        bench_queries(engine, args.runs)
    finally:
        close_store(engine)
        dispose_engine(url)
        if admin and name and not args.keep:
            drop_database(admin, name)


if __name__ == "__main__":
    main()
