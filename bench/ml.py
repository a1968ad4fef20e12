"""Benchmark of the prediction models (issue 6); prints figures and ratios from one run.

    python bench/ml.py --orders 200000 --customers 20000     # builds a throw-away database
    python bench/ml.py --url postgresql://...                # an already loaded warehouse

Measures: training time per model (feature SQL, fit, evaluate+export), ONNX size and
session load time; a GraphQL query of 500 orders with and without ``predictedStatus`` and
``predictedTotal`` (median of repeated runs, ratio; goal <= 1.3); a single what-if
prediction through GraphQL (p50/p95; goal p50 < 5 ms). GraphQL runs in-process
(``schema.execute`` with a per-request Context, the Strawberry path), so HTTP is excluded.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import Engine

ORDERS_QUERY = """query($n: Int!) { orders(first: $n, orderBy: [{id: DESC}]) { edges { node {
  id status totalAmount channel %s } } } }"""
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
    from etl import runner

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
    runner.run(url, full=True)
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
        f"training (80/20 time split; forests on every core, <= {MAX_SAMPLES_PER_TREE:,} rows"
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


async def _execute(engine: Engine, query: str, variables: dict[str, Any]) -> float:
    from schema.app import schema
    from schema.context import ApiLimits, Context

    ctx = Context(engine=engine, limits=ApiLimits())
    t0 = time.perf_counter()
    try:
        result = await schema.execute(query, variable_values=variables, context_value=ctx)
    finally:
        await ctx.close()
    elapsed = time.perf_counter() - t0
    if result.errors:
        raise SystemExit(f"query failed: {result.errors[0].message}")
    return elapsed


def timed(engine: Engine, query: str, variables: dict[str, Any], runs: int) -> list[float]:
    async def go() -> list[float]:
        await _execute(engine, query, variables)  # warm-up (plans, caches, sessions)
        return [await _execute(engine, query, variables) for _ in range(runs)]

    return asyncio.run(go())


def bench_queries(engine: Engine, runs: int) -> None:
    from ml.serving import store_for

    store_for(engine)
    plain = timed(engine, ORDERS_QUERY % "", {"n": 500}, runs)
    with_pred = timed(engine, ORDERS_QUERY % PREDICTIONS, {"n": 500}, runs)
    p, w = statistics.median(plain), statistics.median(with_pred)
    print(f"GraphQL, 500 orders (median of {runs}):")
    print(f"  without predictions {p * 1000:7.1f} ms")
    print(f"  with predictedStatus + predictedTotal {w * 1000:7.1f} ms")
    print(f"  ratio {w / p:.2f} (goal <= 1.3)")
    single = sorted(timed(engine, WHAT_IF, {"i": WHAT_IF_INPUT}, runs * 10))
    p50 = single[len(single) // 2]
    p95 = single[int(len(single) * 0.95)]
    print(f"GraphQL what-if predictOrderStatus, {len(single)} runs:")
    print(f"  p50 {p50 * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms (goal p50 < 5 ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="an already loaded warehouse (skips seeding)")
    ap.add_argument("--customers", type=int, default=2_000)
    ap.add_argument("--orders", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the throw-away database")
    args = ap.parse_args()

    from db.engine import dispose_engine, drop_database, make_engine
    from ml.serving import close_store

    admin = name = None
    url = args.url
    if url is None:
        admin, name, url = build(args.customers, args.orders, args.seed)
    engine = make_engine(url)
    try:
        bench_training(engine)
        bench_queries(engine, args.runs)
    finally:
        close_store(engine)
        dispose_engine(url)
        if admin and name and not args.keep:
            drop_database(admin, name)


if __name__ == "__main__":
    main()
