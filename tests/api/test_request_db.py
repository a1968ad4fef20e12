"""The request's read connection (schema.context.RequestDb): a read-only transaction ended
with COMMIT, so psycopg keeps the statements it prepared and PostgreSQL plans a repeated
read once per connection; a failed statement rolls back and the next read starts over; the
request's writes (Context.write) are not read-only."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.config import DbSettings
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
