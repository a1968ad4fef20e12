"""What row-level security costs (prints figures; asserts nothing).

Seeds (once, then reused) ``cdms_bench_security`` on ``DATABASE_URL``'s server (else the
embedded one) and times representative reads three ways, in the same transaction shape
the API uses:

  owner     no cdms.role: the table owner, RLS not applied (seed, ETL, CLI)
  admin     SET LOCAL ROLE cdms_api, cdms.role = admin (policies evaluated, all rows)
  customer  SET LOCAL ROLE cdms_customer, cdms.role = customer (policies filter to one customer)

For the customer it also checks, with EXPLAIN, that the orders index is still used under
the policy (``customer_id = app.sec_customer()`` is inlined and STABLE).

Usage: ``.venv/bin/python bench/security.py [--customers N] [--orders M] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from db.config import DbSettings, to_libpq_url  # noqa: E402
from db.engine import ensure_database, make_engine, with_database  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.seed import seed  # noqa: E402
from db.server import embedded_url  # noqa: E402

DATABASE = "cdms_bench_security"

QUERIES = {
    "one customer's 10 latest orders + lines": """
        SELECT o.id, o.total_amount, i.line_no, i.quantity FROM (
          SELECT id, total_amount FROM app.orders WHERE customer_id = :cid
           ORDER BY ordered_at DESC, id DESC LIMIT 10) o
        JOIN app.order_items i ON i.order_id = o.id""",
    "customer summary of one customer": (
        "SELECT * FROM app.customer_summary WHERE customer_id = :cid"
    ),
    "count of visible orders": "SELECT count(*) FROM app.orders",
    "100 products with feedback counts": """
        SELECT p.id, (SELECT count(*) FROM app.feedback f WHERE f.product_id = p.id)
          FROM app.products p ORDER BY p.id LIMIT 100""",
}


def settings_sql(mode: str) -> str | None:
    if mode == "owner":
        return None
    role = "admin" if mode == "admin" else "customer"
    db_role = "cdms_api" if mode == "admin" else "cdms_customer"
    return (
        f"SELECT set_config('role', '{db_role}', true), "
        f"set_config('cdms.role', '{role}', true), "
        "set_config('cdms.customer_id', CAST(:cid AS text), true)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    console = Console()

    db = DbSettings.from_env()
    admin = to_libpq_url(db.database_url) if db.database_url else embedded_url(db.data_dir)
    ensure_database(admin, DATABASE)
    url = with_database(admin, DATABASE)
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        have = conn.execute(sa.text("SELECT count(*) FROM app.customers")).scalar_one()
    if have == 0:
        with console.status(f"seeding {args.customers} customers, {args.orders} orders"):
            seed(url, args.customers, args.orders, 42)
    with engine.connect() as conn:
        cid = conn.execute(
            sa.text("SELECT customer_id FROM app.orders GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
        ).scalar_one()

    table = Table("query", "owner ms (p50)", "admin ms (p50)", "customer ms (p50)", "admin/owner")
    for label, sql in QUERIES.items():
        p50: dict[str, float] = {}
        for mode in ("owner", "admin", "customer"):
            times = []
            with engine.connect() as conn:
                for _ in range(args.repeat):
                    with conn.begin():
                        start = time.perf_counter()
                        pre = settings_sql(mode)
                        if pre:
                            conn.execute(sa.text(pre), {"cid": cid})
                        conn.execute(sa.text(sql), {"cid": cid}).all()
                        times.append((time.perf_counter() - start) * 1000)
            p50[mode] = statistics.median(times)
        table.add_row(
            label,
            f"{p50['owner']:.2f}",
            f"{p50['admin']:.2f}",
            f"{p50['customer']:.2f}",
            f"{p50['admin'] / p50['owner']:.2f}",
        )
    console.print(table)
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text(settings_sql("customer") or ""), {"cid": cid})
        plan = (
            conn.execute(
                sa.text("EXPLAIN SELECT id FROM app.orders ORDER BY ordered_at DESC LIMIT 10")
            )
            .scalars()
            .all()
        )
    uses_index = any("orders_customer_date_idx" in line for line in plan)
    console.print(f"customer's orders under RLS use orders_customer_date_idx: {uses_index}")


if __name__ == "__main__":
    main()
