"""The fast lane: a repeated compiled query answered without the GraphQL executor.

A client repeats a few query texts with other ids (``customer(id: $id) { ... }``). The
first such request runs the whole pipeline — parse, validation with the schema's limits,
:class:`schema.compiled.execute.CompiledReads` — which leaves a statement *template* over
the root-id variables in the statement cache (built only after the document validated).
Later requests with the same text (and the same values for any other variables) skip
Strawberry: :func:`lookup` binds their ids into the template, and :func:`fetch` runs it in
ONE round trip to PostgreSQL (psycopg pipeline: ``BEGIN``, the session settings of
:func:`schema.context.session_statement` with the transaction made read-only, the
statement, ``COMMIT``; no pre-ping, a dead connection is retried once), taking the response
JSON as text as PostgreSQL wrote it (no decoding and re-encoding in Python).

COMMIT, not ROLLBACK, ends the read-only transaction (the same outcome: nothing to keep,
and the settings are local to it) because psycopg forgets its prepared statements on every
ROLLBACK: with COMMIT the pooled connection prepares the statement after its fifth run and
PostgreSQL stops parsing and planning it per request (customer + 10 orders + items: 1.24
-> 0.56 ms per round trip, most of it the planner).

The answer equals the executor's (same statement, same session settings and row-level
security, same rows); only the JSON's whitespace differs (PostgreSQL writes ``"a" : 1``).
Anything else — a first request, an id that does not parse, a database error that is not
a mapped ``CdmsError`` — is left to the full pipeline, which reports it as it always does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from sqlalchemy.engine import Engine

from db.engine import unpinged
from db.errors import from_db_error
from schema.compiled.execute import cached_statement
from schema.compiled.sql import PENDING, Built
from schema.context import busy_error, session_statement

log = logging.getLogger("cdms.api.lane")


@dataclass
class LaneStats:
    """What the lane did in this process (for benchmarks and tests)."""

    hits: int = 0
    statements: int = 0  # SQL statements sent (session settings + query; not BEGIN/COMMIT)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def count(self, statements: int) -> None:
        with self._lock:
            self.hits += 1
            self.statements += statements


stats = LaneStats()

# callbacks seeing each statement the lane sends (tests and benchmarks count statements
# with SQLAlchemy's before_cursor_execute, which the lane's raw connection bypasses)
_observers: list[Callable[[str], None]] = []


def observe(fn: Callable[[str], None]) -> Callable[[], None]:
    """Call ``fn(sql)`` for every statement the lane sends; returns the undo."""
    _observers.append(fn)
    return lambda: _observers.remove(fn)


def lookup(
    schema: Any,
    limits: Any,
    query: Any,
    operation_name: Any,
    variables: Any,
) -> Built | None:
    """The bound statement answering this operation, if its template is cached; else None.

    ``schema`` is the executing Strawberry schema and ``limits`` the request's
    ``ApiLimits`` (the statement cache's scope)."""
    if not isinstance(query, str):
        return None
    if operation_name is not None and not isinstance(operation_name, str):
        return None
    if variables is not None and not isinstance(variables, dict):
        return None
    return cached_statement(query, operation_name, variables, (schema._schema, limits))


def _text_statement(stmt: Built) -> str:
    # the JSON value as text: psycopg hands it over without parsing it
    return f"SELECT (lane.d)::text FROM ({stmt.sql}) AS lane(d)"


def fetch(
    engine: Engine,
    stmt: Built,
    *,
    actor: str,
    timeout_ms: int,
    role: str | None = None,
    customer_id: int | None = None,
) -> str:
    """The statement's JSON text, run in one round trip with the request's session
    settings (blocking: call it from a worker thread). Raises the mapped ``CdmsError``
    (TIMEOUT, SERVICE_UNAVAILABLE, ...) or the database error itself. The caller
    completes predictions that are not stored (:func:`pending`).

    Connections come from :func:`db.engine.unpinged` (no ping round trip per checkout);
    when one turns out dead (the server restarted or closed it), the read runs once more
    on ``engine``, whose checkouts ping. Only reads run here, so running again is safe."""
    settings = session_statement(actor, timeout_ms, role, customer_id, read_only=True)
    sql = _text_statement(stmt)
    for fn in list(_observers):
        fn(settings[0])
        fn(sql)
    try:
        text = _attempt(unpinged(engine), settings, sql, stmt.params, retry=True)
    except _Dead:
        text = _attempt(engine, settings, sql, stmt.params, retry=False)
    stats.count(2)
    return text


_PENDING = f'"{PENDING}"'


def pending(stmt: Built, text: str) -> bool:
    """Whether the answer holds a prediction to compute on request (``{"cdms:pending":
    id}``: no current stored row). A string value equal to the marker only costs the
    walk, which looks at prediction fields alone."""
    return stmt.predictions is not None and _PENDING in text


class _Dead(Exception):
    """The pooled connection was dead: run once more."""


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
    except sa.exc.DBAPIError as exc:
        mapped = from_db_error(exc)
        if mapped is not None:
            raise mapped from exc
        raise
    try:
        conn = fairy.driver_connection
        assert isinstance(conn, psycopg.Connection)
        try:
            with conn.pipeline():
                conn.execute(settings[0], settings[1])
                cur = conn.execute(sql, params)
                conn.commit()  # queued too: the pipeline syncs once, here (see above)
                row = cur.fetchone()
        except psycopg.Error as exc:
            dead = _recover(fairy, conn)
            if dead and retry:
                raise _Dead from exc
            mapped = from_db_error(exc)
            if mapped is not None:
                raise mapped from exc
            raise
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
