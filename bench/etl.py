"""ETL benchmark: full load, 1 % incremental, no-change run (prints figures; asserts nothing).

    .venv/bin/python bench/etl.py [--orders 1000000] [--customers 100000] [--keep]

Seeds a fresh database (db.seed) on the server the tests use (DATABASE_URL, else the
embedded PostgreSQL in CDMS_DATA_DIR), then times whole pipeline runs (``etl.pipeline``:
the load, then publish, features and scoring; every step's time is printed, so the load
alone is the sum of the first seven):

* full load      ``cdms etl run --full`` (truncate + reload, one transaction; then the
                 rollups, features and predictions of everything)
* incremental    after 1 % of the orders changed status through app.set_order_status
* no change      a run right after, nothing to load
* checks         the data-quality checks alone (every run executes them after the load)

Targets on 2 cores (for the load): full < 60 s, 1 % incremental < 3 s, no-change < 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from db.config import DbSettings, to_libpq_url
from db.engine import (
    dispose_engine,
    drop_database,
    ensure_database,
    with_database,
)
from db.migrate import upgrade
from db.server import embedded_url


def _admin_url() -> str:
    settings = DbSettings.from_env()
    if settings.database_url:
        return to_libpq_url(settings.database_url)
    return embedded_url(settings.data_dir, "postgres")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    from db.seed import seed
    from etl import pipeline, runner
    from etl.checks import run_checks

    print(f"load average before: {os.getloadavg()}", flush=True)

    admin = _admin_url()
    name = f"cdms_bench_etl_{os.getpid()}"
    ensure_database(admin, name)
    url = with_database(admin, name)
    try:
        upgrade(url)
        t = time.perf_counter()
        counts = seed(url, args.customers, args.orders, args.seed)
        print(f"seeded {counts} in {time.perf_counter() - t:.1f} s", flush=True)
        with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")

        full = pipeline.run(url, full=True, check=False)
        rows = sum(s.counts.inserted for s in full.steps)
        print(
            f"full load:      {full.seconds:7.2f} s  {rows:,} rows  "
            f"{rows / full.seconds:,.0f} rows/s"
        )
        for s in full.steps:
            print(f"    {s.step:<13} {s.counts.inserted:>10,} rows {s.seconds:7.2f} s")
        with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE dw.fact_sales, dw.fact_orders")

        engine = runner.etl_engine(url)
        t = time.perf_counter()
        results = run_checks(engine)
        check_s = time.perf_counter() - t
        failed = [r.describe() for r in results if not r.ok]
        print(
            f"checks:         {check_s:7.2f} s  {len(results)} checks, "
            f"{len(failed)} failed {failed}"
        )

        nochange = pipeline.run(url, check=False)
        print(f"no-change run:  {nochange.seconds:7.2f} s  (changed: {nochange.changed})")
        for s in nochange.steps:
            print(f"    {s.step:<13} {s.seconds:7.3f} s")

        n = args.orders // 100
        with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
            t = time.perf_counter()
            conn.execute(
                """
                SELECT app.set_order_status(id, CASE status WHEN 'pending' THEN 'paid'
                       WHEN 'paid' THEN 'shipped' WHEN 'shipped' THEN 'delivered'
                       ELSE 'returned' END)
                FROM (SELECT id, status FROM app.orders
                      WHERE status IN ('pending', 'paid', 'shipped', 'delivered')
                      ORDER BY md5(id::text) LIMIT %s) AS o
                """,
                (n,),
            )
            print(f"changed the status of {n:,} orders in {time.perf_counter() - t:.1f} s")
        inc = pipeline.run(url, check=False)
        changes = {s.step: s.counts.updated for s in inc.steps if s.counts.changed}
        print(f"1% incremental: {inc.seconds:7.2f} s  updated {changes}")
        for s in inc.steps:
            print(f"    {s.step:<13} {s.counts.read:>10,} read {s.seconds:7.2f} s")
        nochange2 = pipeline.run(url, check=True)
        print(
            f"no-change run with checks: {nochange2.seconds:7.2f} s "
            f"({sum(1 for c in nochange2.checks if c.ok)}/{len(nochange2.checks)} ok)"
        )
        print(
            "targets: full < 60 s, 1% incremental < 3 s, no-change < 0.5 s -> "
            f"{full.seconds:.1f} / {inc.seconds:.2f} / {nochange.seconds:.2f}"
        )
    finally:
        from etl import runner as r

        r.dispose(url)
        dispose_engine(url)
        if not args.keep:
            drop_database(admin, name)


if __name__ == "__main__":
    main()
