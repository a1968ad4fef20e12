"""The per-request context: who asks, the request's read transaction, its writes.

Reads of one request share one read-only transaction (opened lazily on the first read)
with the request's session settings; it ends with COMMIT when the request ends. The
mutation fields of an operation write in one transaction of their own, opened by the first
and ended after the last (``Context.run_write``, ``Context.end_write``): the operation is
written all or nothing, and its payloads read what it wrote in that transaction. DB work
runs in a worker thread (SQLAlchemy sync + psycopg 3, pooled); an asyncio lock keeps one
statement at a time on the request's connection. Before its first connection of the pool a
request waits for a permit of the requests' gate (schema/gate.py), kept until the context
closes. A caller cancelled while its thread runs (a WebSocket gone) leaves the thread to
the context's next step, which waits for it (:class:`Threads`): its connection is always
ended and given back, a write transaction still open rolled back.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, TypeVar, cast

import sqlalchemy as sa
import strawberry
from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool

from db.engine import write_error
from db.errors import ConflictError, DatabaseUnavailableError, busy_error, from_db_error
from schema.gate import Permits, request_gate

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ApiLimits:
    statement_timeout_ms: int = 15_000
    default_page_size: int = 50
    max_page_size: int = 500


def session_statement(
    actor: str,
    timeout_ms: int,
    role: str | None = None,
    customer_id: int | None = None,
    *,
    read_only: bool = False,
) -> tuple[str, dict[str, str]]:
    """The one statement (psycopg ``%(name)s`` placeholders) that sets a transaction's
    ``statement_timeout``, actor, no JIT and, for a principal, its role and customer; with
    ``read_only`` (the read paths) nothing the transaction runs afterwards can write."""
    sql = (
        "SELECT set_config('statement_timeout', %(timeout)s, true),"
        " set_config('cdms.actor', %(actor)s, true),"
        " set_config('TimeZone', 'UTC', true),"
        # LLVM compiles a statement whose estimate is large (nested relation tests under
        # `or`s: 2.4 s of a 2.4 s statement, 539 functions) and hears no cancel while it
        # compiles: a 15 s statement timeout ended statements after 69-100 s
        " set_config('jit', 'off', true)"
    )
    params = {"timeout": f"{int(timeout_ms)}ms", "actor": actor}
    if role is not None:
        # a principal: row-level security applies (SET LOCAL ROLE cdms_customer for
        # customers, cdms_api for the other roles; docs/security.md)
        sql += (
            ", set_config('cdms.role', %(role)s, true),"
            " set_config('cdms.customer_id', %(customer)s, true),"
            " set_config('role', %(db_role)s, true)"
        )
        params |= {
            "role": role,
            "customer": "" if customer_id is None else str(int(customer_id)),
            "db_role": "cdms_customer" if role == "customer" else "cdms_api",
        }
    if read_only:
        sql += ", set_config('transaction_read_only', 'on', true)"
    return sql, params


class Threads:
    """Calls handed to worker threads on behalf of one request, the last one kept.

    A caller cancelled while it awaits its thread (a WebSocket gone while its subscription
    reads) stops waiting; the thread does not stop. Whatever it does with a pooled
    connection (take it and begin the request's transaction, run a statement, commit) goes
    on for nobody: so the request's next step that touches the same connection or permit
    (the next statement, the close that commits and gives the connection and the permit
    back) first waits for it, :meth:`settled`. Before, a subscription dropped while its
    first read was taking a connection closed its context with no connection stored yet,
    ending nothing; the thread then stored the connection and began a transaction nobody
    ended: idle in transaction, the pool a connection short for good, and with a storm of
    such sockets every read of every principal refused (docs/security.md)."""

    def __init__(self) -> None:
        self._last: asyncio.Future[Any] | None = None

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        work = asyncio.ensure_future(run_in_threadpool(fn, *args))
        work.add_done_callback(_seen)
        self._last = work
        return await asyncio.shield(work)

    @property
    def pending(self) -> bool:
        """Whether a call is still running in its thread."""
        return self._last is not None and not self._last.done()

    async def settled(self) -> None:
        """Once the last call's thread is done (whether or not its caller still waits)."""
        work = self._last
        if work is not None and not work.done():
            await asyncio.wait([work])
        self._last = None


def _seen(work: asyncio.Future[Any]) -> None:
    """Mark a thread's outcome as seen: its caller has it through the shield, or was
    cancelled and wants nothing ("Task exception was never retrieved" otherwise)."""
    if not work.cancelled():
        work.exception()


@dataclass(eq=False)
class RequestDb:
    """The request's read connection: one read-only transaction, ended with COMMIT (the
    same outcome as ROLLBACK for it, but psycopg deallocates its prepared statements on
    every ROLLBACK; with COMMIT a pooled connection keeps the statements it prepared after
    their fifth run, and PostgreSQL stops planning them per request). A failed statement
    rolls back."""

    engine: Engine
    settings: tuple[str, dict[str, str]]  # session_statement(..., read_only=True)
    _: KW_ONLY
    # a replica's reads: the primary to use instead when the replica cannot be reached
    fallback: Engine | None = None
    on_failure: Callable[[Engine], None] | None = None
    # awaited before the transaction's connection is taken (Context.admit: a permit)
    admit: Callable[[], Awaitable[None]] | None = None
    _conn: Connection | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    # its calls to worker threads: the next statement or the close waits for one whose
    # caller was cancelled (it may be taking or using the connection)
    _threads: Threads = field(default_factory=Threads, init=False, repr=False)

    def _connect(self) -> Connection:
        if self.fallback is None or self.fallback is self.engine:
            return self.engine.connect()
        try:
            return self.engine.connect()
        except sa.exc.DBAPIError:  # the replica is away: read on the primary
            if self.on_failure is not None:
                self.on_failure(self.engine)
            self.engine = self.fallback
            return self.engine.connect()

    def _ensure(self) -> Connection:
        if self._conn is None:
            conn = self._connect()
            try:
                conn.begin()
                conn.exec_driver_sql(*self.settings)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _run(self, fn: Callable[[Connection], R]) -> R:
        try:
            conn = self._ensure()
        except sa.exc.TimeoutError:
            raise busy_error() from None
        except sa.exc.DBAPIError as exc:  # no connection: the server is away
            raise from_db_error(exc) or DatabaseUnavailableError() from exc
        try:
            return fn(conn)
        except sa.exc.DBAPIError as exc:
            mapped = from_db_error(exc)
            # a failed statement aborts the transaction: start over on the next read
            self._close_sync(failed=True)
            if mapped is not None:
                raise mapped from exc
            raise

    async def run(self, fn: Callable[[Connection], R]) -> R:
        async with self._lock:
            await self._threads.settled()
            if self._conn is None and self.admit is not None:
                await self.admit()  # waiting here holds no connection and no thread
            return await self._threads.run(self._run, fn)

    def _close_sync(self, failed: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if failed:
                    conn.rollback()
                else:
                    conn.commit()
            except sa.exc.DBAPIError:
                conn.invalidate()  # e.g. the server went away: not back into the pool
            finally:
                conn.close()

    @property
    def open(self) -> bool:
        """Whether a transaction holds a connection (or a statement is taking one, its
        caller perhaps gone)."""
        return self._conn is not None or self._lock.locked() or self._threads.pending

    async def close(self) -> None:
        """End the transaction and give its connection back, once any statement still
        running in a worker thread is done. Cancelled meanwhile, the connection may stay
        out: call it shielded (:meth:`Context.close` does)."""
        if self.open:
            async with self._lock:
                await self._threads.settled()
                if self._conn is not None:
                    await self._threads.run(self._close_sync)


# request ids: a random prefix per process, then a counter (16 hex characters, unique
# across the processes of a deployment); uuid4 per request read os.urandom each time, ~3% of
# a fast-lane request's CPU
_ID_PREFIX = secrets.token_hex(4)
_ids = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids) & 0xFFFFFFFF:08x}"


@dataclass
class Context:
    engine: Engine
    limits: ApiLimits
    # who is asking; authentication (api.auth) plugs in here and only here. With a role,
    # every transaction runs as cdms_api under row-level security (docs/security.md).
    actor: str = "anonymous"
    role: str | None = None
    customer_id: int | None = None
    request_id: str = field(default_factory=lambda: new_request_id())
    # the request's Idempotency-Key header (placeOrder)
    idempotency_key: str | None = None
    reads: Any = None  # the process's schema.execute.Reads (statement compiler and cache)
    # where this request's reads run: a replica (db/replicas.py) or, None, ``engine``
    read_engine: Engine | None = None
    router: Any = None  # the process's db.replicas.Router (told of a replica that failed)
    # the WAL position a replica must have replayed to serve this request's reads (the
    # Cdms-Commit-Lsn header; db/replicas.py), as an integer
    min_lsn: int | None = None
    route_primary: bool = False  # a write whose position is unknown: read on the primary
    operation: Any = None  # the operation being executed (api.pipeline.Prepared)
    # the request has cube fields (in any operation of a batch, which shares this context
    # and its permit): its permit is a heavy one (schema/gate.py)
    heavy: bool = False
    _db: RequestDb | None = None
    # a permit of a gate bounding the database users of a kind (requests: schema/gate.py;
    # subscription events: schema.subscriptions.db_gate), held until close()
    _permit: Permits | None = None
    # its writes' worker threads: the permit goes back once a cancelled caller's is done
    _writes: Threads = field(default_factory=Threads, repr=False)
    # the open write transaction of the operation being executed (None outside its
    # mutation fields); used by one worker thread at a time (``_writes``)
    _tx: Connection | None = field(default=None, repr=False)
    # a write of the operation failed and rolled its transaction back: a later field must
    # not begin another, whose commit would keep only what came after (every payload is
    # non-null, so no later field runs today; this keeps it so)
    _tx_failed: bool = field(default=False, repr=False)
    # what runs once the operation's write transaction commits (dropped if it rolls back)
    _on_commit: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def db(self) -> RequestDb:
        if self._db is None:
            self._db = RequestDb(
                self.read_engine or self.engine,
                self._session_settings(read_only=True),
                fallback=self.engine,
                on_failure=None if self.router is None else self.router.failed,
                admit=self.admit,
            )
        return self._db

    def _session_settings(self, *, read_only: bool) -> tuple[str, dict[str, str]]:
        timeout = self.limits.statement_timeout_ms
        return session_statement(
            self.actor, timeout, self.role, self.customer_id, read_only=read_only
        )

    async def run_write(self, fn: Callable[[Connection], R]) -> R:
        """``fn`` in the operation's write transaction: the first mutation field begins it
        with the request's session settings, the later ones write in it, and
        :meth:`end_write` ends it after the last. Whatever ``fn`` raises rolls the whole
        transaction back, with a database error raised as its domain error
        (:func:`db.engine.write_error`), as :func:`db.engine.transaction` does, and
        refuses the operation's later writes (CONFLICT)."""
        if self._tx_failed:
            raise ConflictError(
                "an earlier change of this operation failed: nothing of it was written",
                reason="operation rolled back",
            )
        await self.admit()
        return await self._on_write(fn)

    async def read(self, fn: Callable[[Connection], R]) -> R:
        """``fn`` where a read of a field being resolved sees what the operation wrote: in
        its write transaction while one is open (a mutation's payload, whose rows are not
        committed yet), else in the request's read transaction (:attr:`db`)."""
        if self._tx is None and not self._writes.pending:
            return await self.db.run(fn)
        return await self._on_write(fn)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """``fn`` once the operation's write transaction commits, never if it rolls back;
        at once outside one (a query). Safe from a worker thread."""
        if self._tx is None and not self._writes.pending:
            fn()
        else:
            self._on_commit.append(fn)

    async def end_write(self, *, commit: bool) -> bool:
        """End the operation's write transaction, if one is open: COMMIT with ``commit``,
        else ROLLBACK. Returns whether it committed. A COMMIT that fails raises its domain
        error (SERVICE_UNAVAILABLE for a server gone, CONFLICT for a serialization
        failure): nothing of the operation is committed, or, the connection lost during
        the COMMIT, it cannot be told, which SERVICE_UNAVAILABLE says."""
        await self._writes.settled()
        self._tx_failed = False  # (the next operation of a batch or socket starts anew)
        waiting, self._on_commit = self._on_commit, []
        if self._tx is None:
            return False
        committed = await self._writes.run(self._end_write, commit)
        if committed:
            for fn in waiting:
                fn()
        return committed

    async def _on_write(self, fn: Callable[[Connection], R]) -> R:
        await self._writes.settled()  # (a cancelled caller's thread may still use it)
        return await self._writes.run(self._in_write, fn)

    def _in_write(self, fn: Callable[[Connection], R]) -> R:
        try:
            if self._tx is None:
                self._tx = self.engine.connect()
                self._tx.begin()
                self._tx.exec_driver_sql(*self._session_settings(read_only=False))
            return fn(self._tx)
        except BaseException as exc:
            self._tx_failed = True
            self._end_write(commit=False)
            if isinstance(exc, sa.exc.TimeoutError):  # no pooled connection free in time
                raise busy_error() from None
            mapped = write_error(exc) if isinstance(exc, sa.exc.DBAPIError) else None
            if mapped is not None:
                raise mapped from exc
            raise

    def _end_write(self, commit: bool) -> bool:
        conn, self._tx = self._tx, None
        if conn is None:
            return False
        try:
            if commit:
                try:
                    conn.commit()
                except sa.exc.DBAPIError as exc:
                    raise (write_error(exc) or DatabaseUnavailableError()) from exc
                return True
            try:
                conn.rollback()
            except sa.exc.DBAPIError:
                conn.invalidate()  # e.g. the server went away: not back into the pool
            return False
        finally:
            conn.close()

    async def route(self, engine: Engine | None) -> None:
        """Run the next reads on ``engine`` (None: the primary), ending the read
        transaction open elsewhere."""
        if engine is self.engine:
            engine = None
        if engine is self.read_engine:
            return
        await self.close()
        self._db = None
        self.read_engine = engine

    async def hold(self, gate: Permits) -> None:
        """Wait for a permit of ``gate`` (unless one is held), kept until :meth:`close`."""
        if self._permit is None:
            await gate.acquire()
            self._permit = gate

    async def admit(self) -> None:
        """Before taking a connection of the pool: a permit of the requests' gate, unless
        one (or a subscription event's) is held; ``busy_error()`` when none comes in time."""
        if self._permit is None:
            # the shared demo principal ("anonymous") is bound by the gate's totals only
            key = None if self.actor == "anonymous" else self.actor
            shape = getattr(self.operation, "shape", None)
            heavy = self.heavy or bool(shape is not None and shape.cubes)  # the slow kind
            await self.hold(request_gate(self.engine).of(key, heavy=heavy))

    async def close(self) -> None:
        """End the read transaction, roll back a write transaction still open (its
        operation cancelled, or failed before :meth:`end_write`), then give the permit
        back, once the thread of any statement or write whose caller was cancelled is done
        (:class:`Threads`). Runs to its end even when the caller is cancelled (a WebSocket
        closed as its operation ends): cancelled while it waited for a worker thread, the
        connection stayed checked out, idle in a transaction, and the pool one connection
        short for good."""
        db, permit = self._db, self._permit
        self._permit = None
        writing = self._tx is not None or self._writes.pending
        if permit is not None or (db is not None and db.open) or writing:
            await asyncio.shield(self._end(db, permit))

    async def _end(self, db: RequestDb | None, permit: Permits | None) -> None:
        try:
            try:
                if db is not None:
                    await db.close()
            finally:
                await self.end_write(commit=False)
        finally:
            if permit is not None:
                permit.release()


Info = strawberry.Info[Context, None]


def typed(decorator: Any) -> Callable[[F], F]:
    """A Strawberry field decorator, typed as keeping the resolver it decorates."""
    return cast(Callable[[F], F], decorator)
