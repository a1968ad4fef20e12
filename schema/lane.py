"""One round trip for a read: BEGIN, the session settings, the statement, COMMIT, in one
psycopg pipeline, taking the response JSON as text as PostgreSQL wrote it.

The session settings (schema.context.session_statement) make the transaction read-only and
set the principal's role and customer, so row-level security applies as everywhere else.
COMMIT, not ROLLBACK, ends it (the same outcome for a read-only transaction) because
psycopg forgets its prepared statements on every ROLLBACK: with COMMIT a pooled connection
prepares a statement after its fifth run and PostgreSQL stops planning it per request.
Connections come from a pool without pre-ping (db.engine.unpinged); one found dead is
retried once on the pinged pool (reads only, so running again is safe).

The blocking round trip runs on the lane's own thread pool (:func:`run`: one thread per
connection the engine may open), handed over with the event loop's ``run_in_executor``:
the per-call cancel scope, capacity limiter and context copy of anyio's
``run_in_threadpool`` cost a read a fifth of its CPU (bench/peer.py, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from sqlalchemy.engine import Engine

from db.config import DbSettings
from db.engine import unpinged
from db.errors import from_db_error
from schema.context import busy_error, session_statement
from schema.sql import PENDING

PENDING_MARK = f'"{PENDING}"'


@dataclass
class LaneStats:
    """What the lane did in this process (for benchmarks and tests)."""

    round_trips: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> None:
        with self._lock:
            self.round_trips += 1


stats = LaneStats()

# callbacks seeing each statement the lane sends (its raw connections bypass SQLAlchemy's
# before_cursor_execute, with which tests and benchmarks count statements)
_observers: list[Callable[[str], None]] = []


def observe(fn: Callable[[str], None]) -> Callable[[], None]:
    """Call ``fn(sql)`` for every statement the lane sends; returns the undo."""
    _observers.append(fn)
    return lambda: _observers.remove(fn)


_threads: ThreadPoolExecutor | None = None
_threads_lock = threading.Lock()


async def run(call: Callable[[], str]) -> str:
    """``call`` (a :func:`fetch`) on the lane's threads, awaited."""
    global _threads
    if _threads is None:
        with _threads_lock:
            if _threads is None:
                db = DbSettings.from_env()
                _threads = ThreadPoolExecutor(
                    db.pool_size + db.max_overflow, thread_name_prefix="cdms-read"
                )
    return await asyncio.get_running_loop().run_in_executor(_threads, call)


class _Dead(Exception):
    """The pooled connection was dead: run once more."""


def fetch(
    engine: Engine,
    sql: str,
    params: dict[str, Any],
    *,
    actor: str,
    timeout_ms: int,
    role: str | None = None,
    customer_id: int | None = None,
) -> str:
    """The statement's JSON value as text (blocking: call it from a worker thread). Raises
    the mapped ``CdmsError`` (TIMEOUT, SERVICE_UNAVAILABLE, BAD_USER_INPUT...) or the
    database error itself."""
    settings = session_statement(actor, timeout_ms, role, customer_id, read_only=True)
    text_sql = f"SELECT (lane.d)::text FROM ({sql}) AS lane(d)"
    for fn in list(_observers):
        fn(settings[0])
        fn(text_sql)
    try:
        text = _attempt(unpinged(engine), settings, text_sql, params, retry=True)
    except _Dead:
        text = _attempt(engine, settings, text_sql, params, retry=False)
    stats.count()
    return text


def _attempt(
    engine: Engine,
    settings: tuple[str, dict[str, str]],
    sql: str,
    params: dict[str, Any],
    *,
    retry: bool,
) -> str:
    try:
        fairy = engine.raw_connection()
    except sa.exc.TimeoutError:
        raise busy_error() from None
    except (sa.exc.DBAPIError, psycopg.Error) as exc:  # no connection: the server is away
        raise (from_db_error(exc) or exc) from exc
    try:
        conn = fairy.driver_connection
        assert isinstance(conn, psycopg.Connection)
        try:
            with conn.pipeline():
                conn.execute(settings[0], settings[1])
                cur = conn.execute(sql, params)
                conn.commit()  # queued too: the pipeline syncs once, here
                row = cur.fetchone()
        except psycopg.Error as exc:
            if _recover(fairy, conn) and retry:
                raise _Dead from exc
            raise (from_db_error(exc) or exc) from exc
        assert row is not None
        text: str = row[0]
        return text
    finally:
        fairy.close()


def _recover(fairy: Any, conn: psycopg.Connection[Any]) -> bool:
    """After a failed pipeline: end the transaction, or drop a dead connection (True)."""
    if conn.closed or conn.broken:
        fairy.invalidate()
        return True
    try:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
    except psycopg.Error:
        fairy.invalidate()
        return True
    return False
