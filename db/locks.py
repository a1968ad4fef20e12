"""Strong locks taken without queueing readers behind them for long.

A statement that needs an ACCESS EXCLUSIVE lock (``DROP VIEW``, ``TRUNCATE``) waits in the
lock queue for every session that holds a weaker one, and every later reader of the same
object queues behind the waiting statement. One session idle in a transaction (a BI tool's,
an analyst's psql) would stall the caller, and those readers, for as long as it lives
(probe 7, finding 1). :func:`attempt` runs the statements under a short ``lock_timeout``
in a savepoint instead, again until a deadline: each attempt holds up the queue at most
:data:`LOCK_TIMEOUT_MS` (below the server's default ``deadlock_timeout``, 1 s, so a lock
cycle with a reader ends here, not in the reader's session); past the deadline the caller
hears who holds the lock (:class:`LockBusyError`, CONFLICT). Readers that keep the lock
busy between them, each briefly (three overlapping 1.2 s cube reads), leave no gap for a
short attempt: a caller that must get through (a full rebuild) then waits in the queue
once, for at most ``queue_s`` (the hostile review of 2026-12-07: a full run gave up after
60 s where a queued lock got through in 0.8 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.errors import ConflictError

LOCK_TIMEOUT_MS = 500
RETRY_S = 0.25  # between two attempts: the holders' own statements go on meanwhile


class LockBusyError(ConflictError):
    """Other sessions held a lock the caller needs until its deadline."""


def attempt(
    conn: Connection,
    run: Callable[[], object],
    *,
    wait_s: float,
    relations: Sequence[str],
    what: str,
    queue_s: float = 0.0,
) -> None:
    """``run()`` (statements taking strong locks on ``relations``) in a savepoint under
    ``lock_timeout``, again every RETRY_S until ``wait_s`` has passed (0: one attempt),
    then once in the queue for at most ``queue_s`` (0: not). The locks it took are the
    transaction's until it ends. Raises LockBusyError naming the sessions that hold
    ``relations``."""
    deadline = time.monotonic() + wait_s
    while True:
        if _taken(conn, run, LOCK_TIMEOUT_MS):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(RETRY_S)
    if queue_s > 0 and _taken(conn, run, int(queue_s * 1000)):
        return
    raise LockBusyError(
        f"{what}: {holders(conn, relations) or 'other sessions'} hold a lock on it (tried"
        f" {wait_s:.0f} s, never in the lock queue for more than {LOCK_TIMEOUT_MS} ms at a"
        f" time" + (f", then {queue_s:.0f} s in it)" if queue_s > 0 else ")")
    )


def _taken(conn: Connection, run: Callable[[], object], timeout_ms: int) -> bool:
    """``run()`` in a savepoint under a ``lock_timeout`` of ``timeout_ms``: False if a
    lock was not granted in that time (nothing of it done)."""
    try:
        with conn.begin_nested():
            previous = conn.execute(sa.text("SELECT current_setting('lock_timeout')")).scalar_one()
            conn.execute(
                sa.text("SELECT set_config('lock_timeout', :t, true)"), {"t": f"{timeout_ms}ms"}
            )
            run()
            conn.execute(sa.text("SELECT set_config('lock_timeout', :t, true)"), {"t": previous})
        return True
    except sa.exc.OperationalError as exc:
        if not isinstance(exc.orig, psycopg.errors.LockNotAvailable):
            raise
        return False


def holders(conn: Connection, relations: Sequence[str]) -> str:
    """The other sessions holding a lock on ``relations`` (qualified names), as text:
    ``pid 123 (cdms_bi, idle in transaction since 12:00:01)``."""
    if not relations:
        return ""
    rows = conn.execute(
        sa.text(
            """
            SELECT DISTINCT l.pid, a.usename, a.state, a.xact_start
            FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a USING (pid)
            WHERE l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'relation'
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.relation = ANY(SELECT to_regclass(r)::oid FROM unnest(CAST(:r AS text[])) AS r)
            ORDER BY l.pid LIMIT 5
            """
        ),
        {"r": list(relations)},
    ).all()

    def one(pid: int, user: str | None, state: str | None, since: object) -> str:
        started = f" since {since:%Y-%m-%d %H:%M:%S%z}" if since is not None else ""
        return f"pid {pid} ({user or '?'}, {state or 'active'}{started})"

    return ", ".join(one(*r) for r in rows)
