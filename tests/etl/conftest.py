"""ETL fixtures: a private database per test, seeded with a small shop by db.seed."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from db.config import to_libpq_url
from db.seed import seed
from etl import pipeline, runner
from etl.checks import checksums
from etl.runner import etl_engine

SHOP = {"customers": 40, "orders": 250, "seed": 11}


@pytest.fixture
def shop(fresh_database: Callable[[], str]) -> Iterator[str]:
    """A migrated database holding a small seeded shop; nothing loaded into dw yet."""
    url = fresh_database()
    seed(url, SHOP["customers"], SHOP["orders"], SHOP["seed"])
    yield url
    runner.dispose(url)


@pytest.fixture
def loaded_shop(shop: str) -> str:
    """The shop after one successful ETL run."""
    pipeline.run(shop)
    return shop


def sql(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement in autocommit (never idle in a transaction, which would hold the
    ETL horizon back) and return its rows."""
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def one(url: str, query: str, params: Any = None) -> Any:
    rows = sql(url, query, params)
    assert len(rows) == 1, rows
    return rows[0][0] if len(rows[0]) == 1 else rows[0]


def return_an_order(url: str) -> int:
    """The first delivered order without returns, every unit of it returned and approved:
    app.approve_return makes it RETURNED (the only way since 0036)."""
    order = one(
        url,
        "SELECT min(o.id) FROM app.orders o WHERE o.status = 'delivered'"
        " AND NOT EXISTS (SELECT 1 FROM app.returns r WHERE r.order_id = o.id)",
    )
    sql(
        url,
        "SELECT app.approve_return(app.request_return(i.order_id, i.line_no, i.quantity,"
        " 'damaged')) FROM app.order_items i WHERE i.order_id = %s",
        (order,),
    )
    assert one(url, "SELECT status FROM app.orders WHERE id = %s", (order,)) == "returned"
    return int(order)


def wait_for_etl_lock_wait(
    url: str, proc: subprocess.Popen[str], table: str = "", timeout: float = 60.0
) -> None:
    """Until the ETL child ``proc`` (still running) waits on a lock, in a statement naming
    ``table``: a signal sent then lands inside that statement's step."""
    deadline = time.monotonic() + timeout
    while not one(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'cdms-etl' AND wait_event_type = 'Lock' AND query ILIKE %s",
        (f"%{table}%",),
    ):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def dw_checksums(url: str) -> dict[str, str]:
    with etl_engine(url).connect() as conn:
        return checksums(conn)


def step_counts(url: str, run_id: int) -> dict[str, tuple[int, int, int, int]]:
    rows = sql(
        url,
        "SELECT step, rows_read, rows_inserted, rows_updated, rows_deleted"
        " FROM dw.etl_run_step WHERE run_id = %s",
        (run_id,),
    )
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def request_random_return(conn: psycopg.Connection[Any], rng: random.Random) -> int | None:
    """A return requested (one unit, damaged) of a random delivered line not returned yet,
    through the shop's procedure: its id, or None when no line can be returned."""
    lines = conn.execute(
        "SELECT i.order_id, i.line_no FROM app.order_items AS i"
        " JOIN app.orders AS o ON o.id = i.order_id WHERE o.status = 'delivered'"
        " AND NOT EXISTS (SELECT 1 FROM app.returns AS r"
        "                 WHERE r.order_id = i.order_id AND r.line_no = i.line_no)"
        " ORDER BY 1, 2"
    ).fetchall()
    if not lines:
        return None
    order, line = rng.choice(lines)
    ret = conn.execute("SELECT app.request_return(%s, %s, 1, 'damaged')", (order, line)).fetchone()
    assert ret is not None
    return int(ret[0])
