"""The fast lane: a repeated compiled query answered without the GraphQL executor.

A client repeats a few query texts with other ids (``customer(id: $id) { ... }``). The
first such request runs the whole pipeline — parse, validation with the schema's limits,
:class:`schema.compiled.execute.CompiledReads` — which leaves a statement *template* over
the root-id variables in the statement cache (built only after the document validated).
Later requests with the same text (and the same values for any other variables) skip
Strawberry: :func:`lookup` binds their ids into the template, and :func:`fetch` runs it in
ONE round trip to PostgreSQL (psycopg pipeline: ``BEGIN``, the session settings of
:func:`schema.context.session_statement`, the statement, ``ROLLBACK``), taking the
response JSON as text as PostgreSQL wrote it (no decoding and re-encoding in Python).

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

from db.errors import DatabaseUnavailableError, from_db_error
from schema.compiled.execute import cached_statement
from schema.compiled.sql import Built
from schema.context import session_statement

log = logging.getLogger("cdms.api.lane")


@dataclass
class LaneStats:
    """What the lane did in this process (for benchmarks and tests)."""

    hits: int = 0
    statements: int = 0  # SQL statements sent (session settings + query; not BEGIN/ROLLBACK)

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
    stmt = cached_statement(query, operation_name, variables, (schema._schema, limits))
    if stmt is None or stmt.predictions is not None:
        return None  # predictions are filled in after the statement: CompiledReads does it
    return stmt


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
    (TIMEOUT, SERVICE_UNAVAILABLE, ...) or the database error itself."""
    settings_sql, settings_params = session_statement(actor, timeout_ms, role, customer_id)
    try:
        fairy = engine.raw_connection()
    except sa.exc.TimeoutError:
        raise DatabaseUnavailableError(
            "the server is busy (no database connection free); try again"
        ) from None
    except sa.exc.DBAPIError as exc:
        mapped = from_db_error(exc)
        if mapped is not None:
            raise mapped from exc
        raise
    try:
        conn = fairy.driver_connection
        assert isinstance(conn, psycopg.Connection)
        sql = _text_statement(stmt)
        for fn in list(_observers):
            fn(settings_sql)
            fn(sql)
        try:
            with conn.pipeline():
                conn.execute(settings_sql, settings_params)
                cur = conn.execute(sql, stmt.params)
                conn.rollback()  # queued too: the pipeline syncs once, here
                row = cur.fetchone()
        except psycopg.Error as exc:
            _recover(fairy, conn)
            mapped = from_db_error(exc)
            if mapped is not None:
                raise mapped from exc
            raise
        stats.count(2)
        assert row is not None
        text: str = row[0]
        return text
    finally:
        fairy.close()


def _recover(fairy: Any, conn: psycopg.Connection[Any]) -> None:
    """After a failed pipeline: end the transaction, or drop a broken connection."""
    if conn.closed or conn.broken:
        fairy.invalidate()
        return
    try:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
    except psycopg.Error:
        fairy.invalidate()
