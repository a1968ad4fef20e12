"""The read lane in autocommit (schema/lane.py, c459db9): the session settings and the
statement are one implicit transaction ended by the pipeline's Sync. Whatever goes wrong
between them, the next read on a pooled connection must run with none of the last
principal's settings, and every read must run with its own."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import Engine

from db.config import DbSettings
from db.engine import unpinged
from db.errors import CdmsError
from schema import lane
from tests.api.conftest import Shop

WHO = (
    "SELECT json_build_object('role', current_user,"
    " 'customer', current_setting('cdms.customer_id', true),"
    " 'cdms_role', current_setting('cdms.role', true),"
    " 'ro', current_setting('transaction_read_only'),"
    " 'timeout', current_setting('statement_timeout'))"
)
MINE = "SELECT json_agg(id ORDER BY id) FROM app.orders"


def _pool_connections() -> int:
    db = DbSettings.from_env()
    return db.pool_size + db.max_overflow


def _assert_clean(engine: Engine) -> None:
    """Every pooled connection of the lane, read with no principal: no role, no customer."""
    for _ in range(2 * _pool_connections()):
        got = json.loads(lane.fetch(engine, WHO, {}, actor="next", timeout_ms=1000))
        assert got["role"] != "cdms_customer" and not got["customer"], got
        assert not got["cdms_role"], got
    fairy = unpinged(engine).raw_connection()
    try:
        conn = fairy.driver_connection
        assert isinstance(conn, psycopg.Connection)
        row = conn.execute(
            "SELECT current_user, current_setting('transaction_read_only'),"
            " current_setting('cdms.customer_id', true)"
        ).fetchone()
        assert row is not None and row[0] != "cdms_customer" and row[1] == "off", row
        assert not row[2], row
    finally:
        fairy.close()


def test_a_parameter_that_cannot_be_sent_leaves_no_settings(api_engine: Engine, shop: Shop) -> None:
    """The settings are sent, then the statement's parameter fails to encode (a lone
    surrogate): the implicit transaction must still end with the pipeline."""
    cid = shop.customers[0]
    for _ in range(_pool_connections() + 1):
        with pytest.raises(Exception):  # noqa: B017 (whichever: not a 200)
            lane.fetch(
                api_engine, "SELECT to_json(%(s)s::text)", {"s": "\ud800"}, actor="t",
                timeout_ms=1000, role="customer", customer_id=cid,
            )  # fmt: skip
    _assert_clean(api_engine)


def test_a_failed_statement_leaves_no_settings(api_engine: Engine, shop: Shop) -> None:
    cid = shop.customers[0]
    for bad in ("SELECT to_json(1/0)", "SELECT to_json(nextval('app.orders_id_seq'))"):
        for _ in range(_pool_connections() + 1):
            with pytest.raises(Exception):  # noqa: B017
                lane.fetch(api_engine, bad, {}, actor="t", timeout_ms=1000, role="customer",
                           customer_id=cid)  # fmt: skip
    _assert_clean(api_engine)


def test_a_statement_timeout_with_a_principal_leaves_no_settings(
    api_engine: Engine, shop: Shop
) -> None:
    slow = "SELECT json_build_object('slept', pg_sleep(%(s)s)::text)"
    for _ in range(_pool_connections() + 1):
        with pytest.raises(CdmsError) as caught:
            lane.fetch(api_engine, slow, {"s": 1}, actor="t", timeout_ms=20, role="customer",
                       customer_id=shop.customers[0])  # fmt: skip
        assert caught.value.code == "TIMEOUT"
    _assert_clean(api_engine)


def test_every_read_runs_with_its_own_principal_on_the_same_connections(
    api_engine: Engine, shop: Shop
) -> None:
    """Customers, staff and no principal in turn on the same pooled connections."""
    for round_ in range(3 * _pool_connections()):
        cid = shop.customers[round_ % len(shop.customers)]
        got = json.loads(
            lane.fetch(api_engine, MINE, {}, actor="t", timeout_ms=1000, role="customer",
                       customer_id=cid) or "null"
        ) or []  # fmt: skip
        assert sorted(got) == sorted(shop.orders[cid])
        who = json.loads(
            lane.fetch(api_engine, WHO, {}, actor="t", timeout_ms=1234, role="analyst")
        )
        assert who["role"] == "cdms_api" and who["cdms_role"] == "analyst", who
        assert who["ro"] == "on" and who["timeout"] == "1234ms" and not who["customer"], who


def test_a_retry_after_a_dead_connection_runs_as_the_principal_and_leaves_nothing(
    api_engine: Engine, api_url: str, shop: Shop
) -> None:
    """The retry runs on the pinged pool (not autocommit, BEGIN ... COMMIT): the principal's
    settings hold there too, and end with it."""
    cid = shop.customers[1]
    pids: list[Any] = []
    for _ in range(_pool_connections()):
        pid = json.loads(
            lane.fetch(api_engine, "SELECT to_json(pg_backend_pid())", {}, actor="t",
                       timeout_ms=1000)
        )  # fmt: skip
        pids.append(pid)
    with psycopg.connect(api_url, autocommit=True) as other:
        for pid in set(pids):
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))
    got = json.loads(
        lane.fetch(api_engine, MINE, {}, actor="t", timeout_ms=1000, role="customer",
                   customer_id=cid) or "null"
    ) or []  # fmt: skip
    assert sorted(got) == sorted(shop.orders[cid])
    with api_engine.connect() as conn:  # the pinged pool: no principal left on it
        row = conn.exec_driver_sql(
            "SELECT current_user, current_setting('cdms.customer_id', true),"
            " current_setting('transaction_read_only')"
        ).one()
        assert row[0] != "cdms_customer" and not row[1] and row[2] == "off", row
    _assert_clean(api_engine)


def test_a_read_cancelled_while_it_was_being_prepared_runs_again_once_it_can(
    api_engine: Engine, api_url: str, shop: Shop
) -> None:
    """The sixth run of a statement on a connection prepares it (psycopg's
    prepare_threshold, 5): Parse is queued in the pipeline with the settings. When that
    Parse fails — here its lock wait on app.orders outlasts the statement timeout, as
    under a migration's ALTER TABLE — psycopg still records the statement as prepared (it
    validates only a statement's first run). In a transaction the failure ended with a
    ROLLBACK, on which psycopg forgets its prepared statements; in autocommit nothing
    does, and every later run of that statement on the connection asks for a prepared
    statement the server never made."""
    marked = "SELECT to_json(count(*)) FROM app.orders WHERE id > %(p0)s AND 'lane_prep_fail' <> ''"
    with api_engine.connect() as conn:
        orders = conn.exec_driver_sql("SELECT count(*) FROM app.orders").scalar_one()
    held = [unpinged(api_engine).raw_connection() for _ in range(_pool_connections() - 1)]
    try:  # the lane is left one connection: the runs below are counted on it
        for _ in range(5):
            lane.fetch(api_engine, marked, {"p0": 0}, actor="t", timeout_ms=1000)
        with psycopg.connect(api_url) as locker:
            locker.execute("LOCK TABLE app.orders IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(CdmsError) as caught:
                lane.fetch(api_engine, marked, {"p0": 0}, actor="t", timeout_ms=200)
            assert caught.value.code == "TIMEOUT"
            locker.rollback()
        for _ in range(3):  # the lock is gone: the read answers again
            got = json.loads(lane.fetch(api_engine, marked, {"p0": 0}, actor="t", timeout_ms=1000))
            assert got == orders
    finally:
        for fairy in held:
            fairy.close()
