"""The request's read connection (schema.context.RequestDb): a read-only transaction ended
with COMMIT, so psycopg keeps the statements it prepared and PostgreSQL plans a repeated
read once per connection; a failed statement rolls back and the next read starts over; the
request's writes are not read-only. An operation's writes (Context.run_write) share one
transaction, which Context.end_write commits or rolls back and Context.close rolls back
when the operation did not get that far (cancelled)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.config import DbSettings
from db.errors import DatabaseUnavailableError
from schema.context import ApiLimits, Context


def _read(engine: Engine, fn: Any) -> Any:
    async def go() -> Any:
        ctx = Context(engine=engine, limits=ApiLimits())
        try:
            return await ctx.db.run(fn)
        finally:
            await ctx.close()

    return asyncio.run(go())


def _prepared(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(s) for s in conn.exec_driver_sql(
            "SELECT statement FROM pg_prepared_statements").scalars()]  # fmt: skip


def test_reads_cannot_write_and_a_failure_leaves_the_next_read_working(
    api_engine: Engine,
) -> None:
    def bump(conn: Connection) -> Any:
        return conn.exec_driver_sql("SELECT nextval('app.orders_id_seq')").scalar_one()

    with api_engine.connect() as conn:
        before = conn.execute(sa.text("SELECT last_value FROM app.orders_id_seq")).scalar_one()
    with pytest.raises(sa.exc.DBAPIError) as caught:
        _read(api_engine, bump)
    assert isinstance(caught.value.orig, psycopg.errors.ReadOnlySqlTransaction)
    with api_engine.connect() as conn:
        after = conn.execute(sa.text("SELECT last_value FROM app.orders_id_seq")).scalar_one()
    assert after == before
    assert _read(api_engine, lambda c: c.exec_driver_sql("SELECT 41 + 1").scalar_one()) == 42


def test_a_repeated_read_is_prepared_on_the_pooled_connections(api_engine: Engine) -> None:
    sql = "SELECT %(n)s::int AS request_db_prepare_test"
    for i in range(6 * DbSettings.from_env().pool_size):  # 6 runs on each pooled connection
        got = _read(api_engine, lambda c, i=i: c.exec_driver_sql(sql, {"n": i}).scalar_one())
        assert got == i
    assert any("request_db_prepare_test" in s for s in _prepared(api_engine))


def test_the_request_writes_are_not_read_only(api_engine: Engine) -> None:
    async def go() -> Any:
        ctx = Context(engine=api_engine, limits=ApiLimits())
        try:
            return await ctx.run_write(
                lambda c: c.exec_driver_sql("SHOW transaction_read_only").scalar_one()
            )
        finally:
            await ctx.close()

    assert asyncio.run(go()) == "off"


def _exists(engine: Engine, table: str) -> bool:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT to_regclass(%(t)s)", {"t": table}).scalar() is not None


def _ended(engine: Engine, pid: int) -> bool:
    """Whether the backend's transaction has ended: it is idle, or it is the very connection
    the pool gave this check (so it was back in the pool)."""
    with engine.connect() as conn:
        return bool(
            conn.exec_driver_sql(
                "SELECT pg_backend_pid() = %(p)s OR coalesce((SELECT state = 'idle'"
                " FROM pg_stat_activity WHERE pid = %(p)s), false)",
                {"p": pid},
            ).scalar_one()
        )


def _create(table: str) -> Any:
    """A write of the test's own, which leaves nothing once rolled back: CREATE TABLE."""

    def run(conn: Connection) -> int:
        conn.exec_driver_sql(f"CREATE TABLE {table} (x int)")
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())

    return run


def _table() -> str:
    return f"public.atomic_{secrets.token_hex(6)}"


def test_an_operations_writes_share_one_transaction_ended_by_end_write(
    api_engine: Engine,
) -> None:
    txid = "SELECT txid_current()"
    rolled, committed = _table(), _table()

    async def go() -> int:
        ctx = Context(engine=api_engine, limits=ApiLimits())
        try:
            first = await ctx.run_write(lambda c: c.exec_driver_sql(txid).scalar_one())
            pid = await ctx.run_write(_create(rolled))
            assert await ctx.run_write(lambda c: c.exec_driver_sql(txid).scalar_one()) == first
            # a payload's read sees the uncommitted write; another connection does not
            assert await ctx.read(lambda c: c.exec_driver_sql(f"SELECT count(*) FROM {rolled}"))
            assert not _exists(api_engine, rolled)
            assert await ctx.end_write(commit=False) is False
            assert _ended(api_engine, pid)
            await ctx.run_write(_create(committed))
            assert await ctx.end_write(commit=True) is True
            assert await ctx.end_write(commit=True) is False  # none open
            return pid
        finally:
            await ctx.close()

    try:
        asyncio.run(go())
        assert not _exists(api_engine, rolled) and _exists(api_engine, committed)
    finally:
        with api_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {committed}")


def test_a_cancelled_operation_rolls_back_and_gives_its_connection_back(
    api_engine: Engine,
) -> None:
    """Cancelled between its fields or during one (a WebSocket gone), the operation's
    transaction is rolled back by the close, never left idle in transaction."""
    table = _table()

    async def go() -> int:
        ctx = Context(engine=api_engine, limits=ApiLimits())
        try:
            pid = await ctx.run_write(_create(table))
            slow = asyncio.ensure_future(ctx.run_write(lambda c: c.exec_driver_sql(
                "SELECT pg_sleep(0.3)")))  # fmt: skip
            await asyncio.sleep(0.1)
            slow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slow
            return pid
        finally:
            await ctx.close()

    pid = asyncio.run(go())
    assert not _exists(api_engine, table)
    assert _ended(api_engine, pid)


def test_a_commit_that_fails_raises_service_unavailable(api_engine: Engine) -> None:
    """The server gone before the COMMIT: SERVICE_UNAVAILABLE (503), not a committed-looking
    answer; nothing was written."""
    table = _table()

    async def go() -> None:
        ctx = Context(engine=api_engine, limits=ApiLimits())
        try:
            pid = await ctx.run_write(_create(table))
            with api_engine.connect() as conn:
                conn.exec_driver_sql("SELECT pg_terminate_backend(%(p)s)", {"p": pid})
            with pytest.raises(DatabaseUnavailableError):
                await ctx.end_write(commit=True)
            assert await ctx.end_write(commit=True) is False  # ended: nothing is open
        finally:
            await ctx.close()

    asyncio.run(go())
    assert not _exists(api_engine, table)


def test_after_a_failed_write_the_operation_writes_no_more(api_engine: Engine) -> None:
    """A write that fails rolls the operation's transaction back; a later write of the same
    operation is refused (CONFLICT) instead of beginning another transaction, whose commit
    would keep only what came after (the hostile review of 2026-12-07). The next operation
    (a batch's, a socket's) writes again."""
    from db.errors import ConflictError

    first, second = _table(), _table()

    async def go() -> None:
        ctx = Context(engine=api_engine, limits=ApiLimits())
        try:
            await ctx.run_write(_create(first))
            with pytest.raises(sa.exc.ProgrammingError):
                await ctx.run_write(lambda c: c.exec_driver_sql("SELECT * FROM no_such_table"))
            with pytest.raises(ConflictError):
                await ctx.run_write(_create(second))
            assert await ctx.end_write(commit=True) is False
            await ctx.run_write(_create(second))  # the next operation
            assert await ctx.end_write(commit=True) is True
        finally:
            await ctx.close()

    try:
        asyncio.run(go())
        assert not _exists(api_engine, first) and _exists(api_engine, second)
    finally:
        with api_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {second}")
