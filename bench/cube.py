"""Cube benchmark: revenue by month and category for a year (prints figures; asserts nothing).

    .venv/bin/python bench/cube.py [--orders 1000000] [--customers 100000] [--keep]
    .venv/bin/python bench/cube.py --url postgresql://...   # an already loaded warehouse

Seeds and loads a fresh database (db.seed + the ETL + rollups) on the server the tests use
(DATABASE_URL, else the embedded PostgreSQL), then times, as medians of ``--repeat`` runs:

1. the raw path (planner + SQL over dw.fact_sales, no rollup, no cache) against the same
   question as hand-written SQL run directly (overhead ratio; goal <= 1.10);
   the rollup path against the raw path (goal >= 20x faster); a cache hit (goal < 5 ms);
2. pandas on the fact rows (fetch the year's lines, group in Python) against the raw path.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from db.config import DbSettings, to_libpq_url
from db.engine import dispose_engine, drop_database, ensure_database, make_engine, with_database
from db.migrate import upgrade
from db.server import embedded_url
from semantic.model import Granularity
from semantic.query import Condition, CubeQuery, DimensionField, MeasureField, Member, Op

HAND = """
SELECT date_trunc('month', s.ordered_at AT TIME ZONE 'UTC') AS month, p.category,
       sum(s.net) AS revenue
FROM dw.fact_sales s LEFT JOIN dw.dim_product p ON p.product_key = s.product_key
WHERE s.ordered_at >= '{year}-01-01'::timestamp AT TIME ZONE 'UTC'
  AND s.ordered_at < '{next}-01-01'::timestamp AT TIME ZONE 'UTC'
GROUP BY 1, 2 ORDER BY 1, 2
"""

FACT_ROWS = """
SELECT s.ordered_at, p.category, s.net FROM dw.fact_sales s
LEFT JOIN dw.dim_product p ON p.product_key = s.product_key
WHERE s.ordered_at >= %(lo)s AND s.ordered_at < %(hi)s
"""


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def interleaved(a: Callable[[], Any], b: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median milliseconds of ``a`` and ``b``, timed alternately."""
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(repeat):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
    return statistics.median(ta), statistics.median(tb)


def _admin_url() -> str:
    settings = DbSettings.from_env()
    if settings.database_url:
        return to_libpq_url(settings.database_url)
    return embedded_url(settings.data_dir, "postgres")


def build(url: str, customers: int, orders: int, seed_: int) -> None:
    from db.seed import seed
    from etl import hooks, runner
    from semantic.hooks import refresh_rollups

    upgrade(url)
    t = time.perf_counter()
    seed(url, customers, orders, seed_)
    print(f"seeded {orders:,} orders in {time.perf_counter() - t:.1f} s", flush=True)
    hooks.after_load(refresh_rollups)
    try:
        t = time.perf_counter()
        runner.run(url, full=True, check=False)
        print(f"ETL + rollups in {time.perf_counter() - t:.1f} s", flush=True)
    finally:
        hooks.remove(refresh_rollups)
        runner.dispose(url)
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def bench(url: str, repeat: int) -> None:
    import pandas as pd

    from semantic.rollups import build_all
    from semantic.service import execute
    from semantic.validate import default_model

    engine = make_engine(url)
    build_all(engine, default_model())
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT max(ordered_at), count(*) FROM dw.fact_sales").fetchone()
        assert row is not None and row[0] is not None, "the warehouse is empty"
        year = row[0].year - 1
        print(f"warehouse: {row[1]:,} order lines; question: revenue by month x category, {year}")
    q = CubeQuery(
        measures=(MeasureField("revenue", Member("sales", "revenue")),),
        dimensions=(
            DimensionField("month", Member("sales", "orderedAt"), Granularity.MONTH),
            DimensionField("category", Member("products", "category")),
        ),
        filters=(
            Condition(
                Member("sales", "orderedAt"), Op.IN_DATE_RANGE, (f"{year}-01-01", f"{year}-12-31")
            ),
        ),
    )
    hand_sql = HAND.format(year=year, next=year + 1)
    with engine.connect() as sa_conn, psycopg.connect(to_libpq_url(url)) as pg:
        raw = execute(sa_conn, q, use_rollups=False, use_cache=False)
        fast = execute(sa_conn, q, use_cache=False)
        assert fast.rollups, "the rollup should answer this question"
        hand_rows = pg.execute(hand_sql).fetchall()
        assert len(hand_rows) == len(raw.rows) == len(fast.rows)
        for _ in range(2):  # warm caches
            execute(sa_conn, q, use_rollups=False, use_cache=False)
            pg.execute(hand_sql).fetchall()
        # interleaved, so both see the same load on a shared machine
        t_raw, t_hand = interleaved(
            lambda: execute(sa_conn, q, use_rollups=False, use_cache=False),
            lambda: pg.execute(hand_sql).fetchall(),
            repeat,
        )
        t_roll = median_ms(lambda: execute(sa_conn, q, use_cache=False), repeat)
        execute(sa_conn, q)  # fill the cache
        t_hit = median_ms(lambda: execute(sa_conn, q), repeat * 5)
        assert execute(sa_conn, q).cached

        def with_pandas() -> Any:
            frame = pd.DataFrame(
                pg.execute(
                    FACT_ROWS, {"lo": f"{year}-01-01Z", "hi": f"{year + 1}-01-01Z"}
                ).fetchall(),
                columns=["ordered_at", "category", "net"],
            )
            frame["month"] = frame["ordered_at"].dt.tz_convert("UTC").dt.tz_localize(None)
            frame["month"] = frame["month"].dt.to_period("M").dt.to_timestamp()
            frame["net"] = frame["net"].astype(float)
            return frame.groupby(["month", "category"], dropna=False)["net"].sum()

        assert len(with_pandas()) == len(raw.rows)
        t_pandas = median_ms(with_pandas, max(3, repeat // 2))
    print(f"raw path (planner + SQL):   {t_raw:8.2f} ms")
    print(
        f"hand-written SQL:           {t_hand:8.2f} ms   overhead ratio {t_raw / t_hand:.2f}"
        " (goal <= 1.10)"
    )
    print(
        f"rollup path:                {t_roll:8.2f} ms   raw/rollup {t_raw / t_roll:.1f}x"
        " (goal >= 20x)"
    )
    print(f"cache hit:                  {t_hit:8.3f} ms   (goal < 5 ms)")
    print(f"pandas on the fact rows:    {t_pandas:8.2f} ms   pandas/raw {t_pandas / t_raw:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already loaded warehouse (nothing is seeded)")
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    if args.url:
        bench(to_libpq_url(args.url), args.repeat)
        return
    admin = _admin_url()
    name = f"cdms_bench_cube_{os.getpid()}"
    ensure_database(admin, name)
    url = with_database(admin, name)
    try:
        build(url, args.customers, args.orders, args.seed)
        bench(url, args.repeat)
    finally:
        dispose_engine(url)
        if not args.keep:
            drop_database(admin, name)
        else:
            print(f"kept {url}")


if __name__ == "__main__":
    main()
