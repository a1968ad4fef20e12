"""Apply one plain ``.sql`` file from ``db/sql/`` inside the migration's transaction.

Migrations run while the previous version serves (a rolling upgrade), so a file that alters
or adds triggers to several ``app`` tables must not deadlock with a writer that locks them
in another order (``tests/reliability/test_rolling.py`` once saw ``CREATE TRIGGER ... ON
app.order_items`` then ``... ON app.orders`` meet a ``placeOrder``, which locks orders
first: each waited for the other until the server's ``deadlock_timeout``, 1 s).

So a revision declares the ``app`` tables its file locks (``locks=``) and the mode it needs
(``SHARE ROW EXCLUSIVE``: ``CREATE TRIGGER``, a foreign key; ``ACCESS EXCLUSIVE``:
``ALTER TABLE``, policies), and they are taken up front, in the order the writers take
them (:data:`WRITE_ORDER`, :data:`READ_ORDER`), under a short ``lock_timeout``. The file
then runs holding them and waits for no ``app`` table. While the migration waits in the
queue, writers wait behind it: at most :data:`LOCK_TIMEOUT`, far below ``deadlock_timeout``,
so no deadlock is ever detected: a cycle with a session that takes the tables in yet another
order (for ``ACCESS EXCLUSIVE``, any reader, whose query locks tables in its plan's order)
ends by the timeout, not by an error to the writer. The timeout rolls back a
savepoint, the locks are released, and the file is tried again after a short pause.
The locks are held until the revision commits, so a file that also builds other things
puts its ``app`` statements last, after a ``-- @lock`` line: what comes before runs first,
unlocked (once), and writers wait only for the rest.

A deadlock (a file that locks an undeclared table) is retried the same way, as a last
resort; the test asserts there is none.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import psycopg
from alembic import op
from psycopg import sql

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
ATTEMPTS = 40
# how long the migration may queue for one table (writers queue behind it meanwhile)
LOCK_TIMEOUT = "200ms"

# The order in which the shop's writers take ROW EXCLUSIVE locks (what SHARE ROW EXCLUSIVE
# waits for): app.approve_return writes the return, then the order (and its history), then
# the stock; app.place_order the order, its history, its lines, then the stock;
# app.set_order_status the order (and history), then the stock. Tables written alone after
# (a customer's feedback edit writes the feedback, then its edit log: 0033's trigger).
WRITE_ORDER = (
    "app.returns",
    "app.orders",
    "app.order_status_history",
    "app.order_items",
    "app.products",
    "app.customers",
    "app.feedback",
    "app.feedback_edits",
    "app.support_tickets",
    "app.idempotency_keys",
    "app.api_keys",
    "app.persisted_queries",
)
# The order in which app.place_order first touches them at all (ACCESS SHARE, which only
# ACCESS EXCLUSIVE waits for): the customer, the products, then it writes.
READ_ORDER = (
    "app.customers",
    "app.products",
    "app.orders",
    "app.order_status_history",
    "app.order_items",
    "app.returns",
    "app.feedback",
    "app.feedback_edits",
    "app.support_tickets",
    "app.idempotency_keys",
    "app.api_keys",
    "app.persisted_queries",
)

# the line of a file from which on it touches app tables
MARKER = re.compile(r"^-- @lock\b.*$", re.MULTILINE)

LockMode = Literal["SHARE ROW EXCLUSIVE", "ACCESS EXCLUSIVE"]

log = logging.getLogger("cdms.migrations")


def lock_order(tables: Sequence[str], mode: LockMode) -> list[str]:
    """``tables`` in the order the writers take them, for ``mode``."""
    order = READ_ORDER if mode == "ACCESS EXCLUSIVE" else WRITE_ORDER
    unknown = sorted(set(tables) - set(order))
    if unknown:
        raise ValueError(f"no lock order declared for {unknown} (db/migrations/sqlfile.py)")
    return sorted(set(tables), key=order.index)


def split_at_marker(text: str) -> tuple[str, str]:
    """(the part before the ``-- @lock`` line, the rest); ("", text) without one."""
    match = MARKER.search(text)
    return ("", text) if match is None else (text[: match.start()], text[match.start() :])


def run_sql_file(
    name: str, *, locks: Sequence[str] = (), mode: LockMode = "SHARE ROW EXCLUSIVE"
) -> None:
    """Run ``db/sql/<name>``, locking ``locks`` first (see the module's docstring): at the
    file's ``-- @lock`` line if it has one (what comes before touches no ``app`` table and
    runs first, so the writers wait only for the rest), else at its start."""
    head, tail = split_at_marker((SQL_DIR / name).read_text(encoding="utf-8"))
    tables = lock_order(locks, mode)
    lock = sql.SQL("LOCK TABLE {} IN " + mode + " MODE").format(
        sql.SQL(", ").join(sql.Identifier(*t.split(".")) for t in tables)
    )
    # Hand the file to psycopg untouched: no bind-parameter parsing of ':' or '%'.
    bind = op.get_bind()
    driver_conn = bind.connection.driver_connection
    assert driver_conn is not None
    if head.strip():
        _attempts(name, lambda: driver_conn.execute(head.encode("utf-8")))
    started = time.perf_counter()
    attempt = 0

    def locked_tail() -> None:
        nonlocal attempt
        attempt += 1
        if tables:
            waited = time.perf_counter()
            row = driver_conn.execute(
                "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                (LOCK_TIMEOUT,),
            ).fetchone()
            assert row is not None
            driver_conn.execute(lock)
            # the file itself waits as it did (dw tables: the ETL's turn)
            driver_conn.execute("SELECT set_config('lock_timeout', %s, true)", (row[0],))
            log.info(
                "%s: locked %s in %.0f ms (attempt %d, %.0f ms in all)",
                name,
                ", ".join(tables),
                (time.perf_counter() - waited) * 1000,
                attempt,
                (time.perf_counter() - started) * 1000,
            )
        driver_conn.execute(tail.encode("utf-8"))

    _attempts(name, locked_tail)


def _attempts(name: str, run: Callable[[], object]) -> None:
    """``run()`` under a savepoint, again after a lock timeout or a deadlock."""
    bind = op.get_bind()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            # a SAVEPOINT inside the migration's transaction (SQLAlchemy's, so that it is
            # open: psycopg's own transaction() on an idle connection would commit the file
            # apart from its revision stamp)
            with bind.begin_nested():
                run()
            return
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
            if isinstance(exc, psycopg.errors.DeadlockDetected):
                log.warning("%s: deadlock (an undeclared lock?), retrying: %s", name, exc)
            if attempt == ATTEMPTS:
                raise
            time.sleep(random.uniform(0.02, 0.05) * min(attempt, 10))
