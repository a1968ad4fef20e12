"""Cube benchmark (prints figures; asserts nothing).

    .venv/bin/python bench/cube.py [--orders 1000000] [--customers 100000] [--keep]
    .venv/bin/python bench/cube.py --url postgresql://...   # an already loaded warehouse
    .venv/bin/python bench/cube.py --url ... --parts 134    # only parts 1, 3 and 4

Seeds and loads a fresh database (db.seed + the ETL + rollups) on the server the tests use
(DATABASE_URL, else the embedded PostgreSQL), then times, as medians of ``--repeat`` runs:

1. revenue by month and category for a year: the raw path (planner + SQL, no rollup, no
   cache) against the same question as hand-written SQL (goal <= 1.10); the rollup path
   against the raw path (goal >= 20x); a cache hit (goal < 5 ms); pandas on the fact rows;
2. a 50,000-row answer through the app (POST /graphql in-process until the response's last
   byte, demo-open admin, cache cleared before each run): the fast path (rows as
   PostgreSQL's JSON text, sent as is) and the resolver path (the field beside another root
   field), against
   the time PostgreSQL takes to produce the rows (the same aggregate as plain SQL, fetched by
   psycopg) - goal <= 3x;
3. rolling windows and percent changes (month x category, a year): raw vs rollup;
4. one week of sales by channel (the event-time index) and an order-id filter (bound as an
   integer: a primary-key lookup), raw path.

``--parts 134`` runs only those numbered parts (at 10 M order lines part 2 alone holds a
shared machine for minutes). The machine's load average is printed before and after: the
figures mean little without it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
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
from semantic.query import (
    Change,
    Compare,
    Condition,
    CubeQuery,
    DimensionField,
    MeasureField,
    Member,
    Op,
    Rolling,
)

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

# by day, country and category: no rollup holds country by day, so the facts answer
BIG = """{ cube(limit: 50000) {
  sales { revenue lineCount orderedAt { day } }
  customers { country } products { category } } }"""
BIG_SLOW = BIG.replace("{ cube(", "{ cubeMeta { name } cube(")
# the same rows as plain SQL: what PostgreSQL alone takes to produce and send them
BIG_SQL = """
SELECT date_trunc('day', s.ordered_at AT TIME ZONE 'UTC'), c.country, p.category,
       sum(s.net), count(*)
FROM dw.fact_sales s LEFT JOIN dw.dim_customer c ON c.customer_key = s.customer_key
LEFT JOIN dw.dim_product p ON p.product_key = s.product_key
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LIMIT 50001
"""


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def interleaved(*fns: Callable[[], Any], repeat: int) -> list[float]:
    """Median milliseconds of each of ``fns``, timed in turn (the same load for all)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
    return [statistics.median(t) for t in times]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def _admin_url() -> str:
    settings = DbSettings.from_env()
    if settings.database_url:
        return to_libpq_url(settings.database_url)
    return embedded_url(settings.data_dir, "postgres")


def build(url: str, customers: int, orders: int, seed_: int) -> None:
    from db.seed import seed
    from etl import pipeline, runner

    upgrade(url)
    t = time.perf_counter()
    seed(url, customers, orders, seed_)
    print(f"seeded {orders:,} orders in {time.perf_counter() - t:.1f} s", flush=True)
    try:
        t = time.perf_counter()
        pipeline.run(url, full=True, check=False)
        print(f"ETL + rollups in {time.perf_counter() - t:.1f} s", flush=True)
    finally:
        runner.dispose(url)
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def month_by_category(year: int, *extra: MeasureField) -> CubeQuery:
    return CubeQuery(
        measures=(MeasureField("revenue", Member("sales", "revenue")), *extra),
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


def bench_year(url: str, year: int, repeat: int) -> None:
    import pandas as pd

    from semantic.service import execute

    engine = make_engine(url)
    q = month_by_category(year)
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
        t_raw, t_hand = interleaved(
            lambda: execute(sa_conn, q, use_rollups=False, use_cache=False),
            lambda: pg.execute(hand_sql).fetchall(),
            repeat=repeat,
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
    print(f"\n1. revenue by month x category, {year} ({len(raw.rows)} rows)")
    print(f"raw path (planner + SQL):   {t_raw:8.2f} ms")
    ratio, faster = t_raw / t_hand, t_raw / t_roll
    print(f"hand-written SQL:           {t_hand:8.2f} ms   ratio {ratio:.2f} (goal <= 1.10)")
    print(f"rollup path:                {t_roll:8.2f} ms   raw/rollup {faster:.1f}x (goal >= 20x)")
    print(f"cache hit:                  {t_hit:8.3f} ms   (goal < 5 ms)")
    print(f"pandas on the fact rows:    {t_pandas:8.2f} ms   pandas/raw {t_pandas / t_raw:.1f}x")


def bench_big(url: str, repeat: int) -> None:
    from api.app import create_app
    from api.security import SecurityConfig
    from semantic.service import CACHE

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    engine = make_engine(url)
    app = create_app(engine, security=SecurityConfig(demo_open=True, demo_hosts=("testserver",)))

    with TestClient(app) as client, psycopg.connect(to_libpq_url(url)) as pg:

        def post(query: str) -> dict[str, Any]:
            CACHE.clear()
            resp = client.post("/graphql", json={"query": query})
            body: dict[str, Any] = resp.json()
            assert resp.status_code == 200 and "errors" not in body, body
            return body

        def request(query: str) -> bytes:  # until the response's last byte (not parsed)
            CACHE.clear()
            resp = client.post("/graphql", json={"query": query})
            assert resp.status_code == 200
            return resp.content

        first = post(BIG)
        rows = len(first["data"]["cube"])
        ext = first["extensions"]["cube"][0]
        assert not ext["rollups"], "the facts should answer"
        assert len(post(BIG_SLOW)["data"]["cube"]) == rows

        def plain() -> None:
            pg.execute(BIG_SQL).fetchall()

        def statement() -> None:  # the fast path's own statement (rows as JSON text)
            pg.execute(ext["sql"], ext["params"]).fetchall()

        plain()
        t_plain, t_statement, t_fast = interleaved(
            plain, statement, lambda: request(BIG), repeat=repeat
        )
        t_slow = median_ms(lambda: request(BIG_SLOW), max(2, repeat // 3))
        size = len(request(BIG))
    cut = ext["truncated"]
    print(f"\n2. a {rows:,}-row answer (truncated: {cut}), {size / 1e6:.1f} MB of JSON")
    print(f"PostgreSQL, the rows as plain SQL:      {t_plain:8.1f} ms")
    print(f"PostgreSQL, the fast path's statement:  {t_statement:8.1f} ms (rows written as JSON)")
    print(
        f"POST /graphql, fast path:               {t_fast:8.1f} ms   "
        f"{t_fast / t_plain:.2f}x the plain rows (goal <= 3x), "
        f"{t_fast / t_statement:.2f}x its statement"
    )
    print(
        f"POST /graphql, resolver path:           {t_slow:8.1f} ms   "
        f"{t_slow / t_plain:.2f}x (per-cell Strawberry execution)"
    )


def bench_intelligence(url: str, year: int, repeat: int) -> None:
    from semantic.service import execute

    engine = make_engine(url)
    rolling = month_by_category(
        year,
        MeasureField("last3", Member("sales", "revenue"), rolling=Rolling(3, Granularity.MONTH)),
    )
    change = month_by_category(
        year,
        MeasureField(
            "py",
            Member("sales", "revenue"),
            Compare.PRIOR_YEAR,
            change=Change.PERCENT_CHANGE,
        ),
    )
    print(f"\n3. time intelligence, month x category, {year}: raw vs rollup")
    with engine.connect() as conn:
        for name, q in (("rolling 3 months", rolling), ("prior year % change", change)):
            raw = execute(conn, q, use_rollups=False, use_cache=False)
            fast = execute(conn, q, use_cache=False)
            assert fast.rollups and fast.rows == raw.rows, name
            t_raw, t_roll = interleaved(
                lambda q=q: execute(conn, q, use_rollups=False, use_cache=False),
                lambda q=q: execute(conn, q, use_cache=False),
                repeat=repeat,
            )
            print(
                f"{name:22s} raw {t_raw:8.1f} ms   rollup {t_roll:7.1f} ms   "
                f"{t_raw / t_roll:5.1f}x ({len(raw.rows)} rows, {fast.rollups[0]})"
            )


def bench_lookups(url: str, repeat: int) -> None:
    from semantic.service import execute

    engine = make_engine(url)
    with engine.connect() as conn:
        last, order = conn.exec_driver_sql(
            "SELECT max(ordered_at AT TIME ZONE 'UTC')::date, max(order_id) FROM dw.fact_orders"
        ).one()
        week = CubeQuery(
            measures=(MeasureField("revenue", Member("sales", "revenue")),),
            dimensions=(DimensionField("channel", Member("sales", "channel")),),
            filters=(
                Condition(
                    Member("sales", "orderedAt"),
                    Op.IN_DATE_RANGE,
                    (f"{last.fromordinal(last.toordinal() - 6)}", f"{last}"),
                ),
            ),
            segments=(Member("sales", "completed"),),  # no rollup: the facts answer
        )
        one = CubeQuery(
            measures=(MeasureField("count", Member("orders", "count")),),
            filters=(Condition(Member("orders", "orderId"), Op.EQUALS, (float(order),)),),
        )
        print("\n4. raw path lookups")
        for name, q in (("one week by channel", week), ("orderId: {equals: n}", one)):
            execute(conn, q, use_cache=False)
            t = median_ms(lambda q=q: execute(conn, q, use_cache=False), repeat)
            print(f"{name:22s} {t:8.2f} ms")


def bench(url: str, repeat: int, parts: str = "1234") -> None:
    from semantic.rollups import build_all
    from semantic.validate import default_model

    t = time.perf_counter()
    built = build_all(make_engine(url), default_model())
    if built:
        print(f"rebuilt {len(built)} rollups in {time.perf_counter() - t:.1f} s", flush=True)
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT max(ordered_at), count(*), pg_total_relation_size('dw.fact_sales')"
            " FROM dw.fact_sales"
        ).fetchone()
        assert row is not None and row[0] is not None, "the warehouse is empty"
        year = row[0].year - 1
        size = f"dw.fact_sales {row[2] / 1e9:.2f} GB with its indexes"
        print(f"warehouse: {row[1]:,} order lines, {size}; {load()}", flush=True)
    if "1" in parts:
        bench_year(url, year, repeat)
    if "2" in parts:
        bench_big(url, max(3, repeat // 2))
    if "3" in parts:
        bench_intelligence(url, year, repeat)
    if "4" in parts:
        bench_lookups(url, repeat)
    print(f"\n{load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already loaded warehouse (nothing is seeded)")
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--parts", default="1234", help="the numbered parts to run, e.g. 134")
    args = parser.parse_args()
    if args.url:
        bench(to_libpq_url(args.url), args.repeat, args.parts)
        return
    admin = _admin_url()
    name = f"cdms_bench_cube_{os.getpid()}"
    ensure_database(admin, name)
    url = with_database(admin, name)
    try:
        build(url, args.customers, args.orders, args.seed)
        bench(url, args.repeat, args.parts)
    finally:
        dispose_engine(url)
        if not args.keep:
            drop_database(admin, name)
        else:
            print(f"kept {url}")


if __name__ == "__main__":
    main()
