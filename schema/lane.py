"""One round trip for a read: the session settings and the statement in one psycopg
pipeline, taking the response JSON as text as PostgreSQL wrote it.

Connections come from a pool in autocommit without pre-ping (db.engine.unpinged): the two
statements and the pipeline's one Sync are one implicit transaction (PostgreSQL's
extended protocol), so the settings made local to it (schema.context.session_statement:
read-only, the principal's role and customer, so row-level security applies as everywhere
else) hold for the statement and end with it, with no BEGIN or COMMIT to send and run
(a fifth of a read's client CPU). The statement answers only inside that transaction
(``transaction_read_only`` on): should the settings ever not reach it, the read fails
instead of running with the pool's own rights. No ROLLBACK is sent either, so a pooled
connection keeps the statements psycopg prepares after their fifth run and PostgreSQL
stops planning them per request. One found dead is retried once on the pinged pool (not
in autocommit: there the pipeline ends with a COMMIT; reads only, so running again is safe).

The blocking round trip runs on the lane's own thread pool (:func:`run`, sized by
:func:`threads`), handed over with the event loop's ``run_in_executor``:
the per-call cancel scope, capacity limiter and context copy of anyio's
``run_in_threadpool`` cost a read a fifth of its CPU (bench/peer.py, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from sqlalchemy.engine import Engine

from db.config import DbSettings
from db.engine import unpinged
from db.errors import busy_error, from_db_error
from schema.context import session_statement
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


def threads() -> int:
    """The lane's threads: one per connection the engine may open, at most four per CPU.
    A read holds the GIL for most of its time in the process (the round trip is ~0.2 ms),
    so more threads add no throughput, only waiters for the GIL: with 24 on 2 CPUs and the
    machine busy, the reads' p99 was 75-94 ms, with 8 21-22 ms, at the same req/s
    (in-process, 32 concurrent reads, docs/benchmarks.md)."""
    db = DbSettings.from_env()
    return max(1, min(db.pool_size + db.max_overflow, 4 * (os.cpu_count() or 1)))


@cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads(), thread_name_prefix="cdms-read")


async def run(call: Callable[[], str]) -> str:
    """``call`` (a :func:`fetch`) on the lane's threads, awaited."""
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)


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
    text_sql = (
        f"SELECT (lane.d)::text FROM ({sql}) AS lane(d)"
        " WHERE current_setting('transaction_read_only') = 'on'"
    )
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
            autocommit = conn.autocommit
            with conn.pipeline():
                conn.execute(settings[0], settings[1])
                cur = conn.execute(sql, params)
                if not autocommit:
                    conn.commit()  # queued too: the pipeline syncs once, here
                row = cur.fetchone()
        except psycopg.Error as exc:
            if _recover(fairy, conn) and retry:
                raise _Dead from exc
            raise (from_db_error(exc) or exc) from exc
        if row is None:  # the settings did not hold for the statement (see above)
            raise RuntimeError("a read ran outside its read-only transaction: refused")
        text: str = row[0]
        return text
    finally:
        fairy.close()


def _recover(fairy: Any, conn: psycopg.Connection[Any]) -> bool:
    """After a failed pipeline: end the transaction, or drop a dead connection (True).

    A connection in autocommit is dropped whatever failed: psycopg counts a statement as
    prepared when it queues its Parse, without waiting for the Parse's result, and forgets
    its prepared statements only on a ROLLBACK, which autocommit never sends — a Parse that
    failed (a lock wait past the statement timeout, a cancel) would leave every later run of
    that statement on the connection failing with "prepared statement does not exist"."""
    if conn.closed or conn.broken:
        fairy.invalidate()
        return True
    if conn.autocommit:
        fairy.invalidate()
        return False
    try:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
    except psycopg.Error:
        fairy.invalidate()
        return True
    return False
