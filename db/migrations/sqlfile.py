"""Apply one plain ``.sql`` file from ``db/sql/`` inside the migration's transaction.

Migrations run while the previous version serves (a rolling upgrade), so a file that alters
or adds triggers to several ``app`` tables can deadlock with a write locking them in another
order (``tests/reliability/test_rolling.py`` saw ``CREATE TRIGGER ... ON app.orders`` and a
``placeOrder``). The file runs under a savepoint: when PostgreSQL picks the migration as the
deadlock's victim (after the server's ``deadlock_timeout``, 1 s by default), the savepoint's
rollback releases the locks the file took, the writer goes on, and the file is tried again
after a short pause (up to ATTEMPTS times) instead of failing the start-up. The writers of
such a cycle still wait one ``deadlock_timeout``; when the writer is the victim it gets a
``CONFLICT`` to retry. (A short ``lock_timeout`` does not help: the cycle recurs on every
try under a steady write load. Locking a file's tables up front in the writers' order would.)
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from alembic import op

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
ATTEMPTS = 5


def run_sql_file(name: str) -> None:
    text = (SQL_DIR / name).read_text(encoding="utf-8")
    # Hand the file to psycopg untouched: no bind-parameter parsing of ':' or '%'.
    bind = op.get_bind()
    driver_conn = bind.connection.driver_connection
    assert driver_conn is not None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            # a SAVEPOINT inside the migration's transaction (SQLAlchemy's, so that it is
            # open: psycopg's own transaction() on an idle connection would commit the file
            # apart from its revision stamp)
            with bind.begin_nested():
                driver_conn.execute(text.encode("utf-8"))
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == ATTEMPTS:
                raise
            time.sleep(0.1 * attempt)
