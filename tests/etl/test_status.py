"""Freshness you can see: ``etl.status`` (version, newest change held, lag, last run) and
the GraphQL ``warehouseStatus`` / ``warehouseUpdated`` on top of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from db.config import to_libpq_url
from db.engine import make_engine
from etl import pipeline, runner
from etl.status import health, warehouse_status
from schema import subscriptions as notify
from tests.etl.conftest import one, sql
from tests.etl.test_scheduler import _place_order
from tests.security.conftest import make_app, post, token

STATUS = "{ warehouseStatus { version newestChangeAt lagSeconds lastRunAt state error } }"


def _status(url: str) -> Any:
    with runner.etl_engine(url).connect() as conn:
        return warehouse_status(conn)


def test_the_lag_is_the_age_of_the_oldest_change_not_loaded(shop: str) -> None:
    never = _status(shop)
    assert never.version == 0 and never.state is None and never.last_run_at is None
    assert never.newest_change_at is None  # nothing loaded
    assert never.lag_seconds > 0  # the whole seeded shop waits

    pipeline.run(shop)
    loaded = _status(shop)
    newest = one(shop, "SELECT max(updated_at) FROM app.orders")
    assert loaded.lag_seconds == 0 and loaded.caught_up
    assert loaded.newest_change_at is not None and loaded.newest_change_at >= newest
    assert loaded.state == "succeeded" and loaded.error is None and loaded.version >= 1

    order = _place_order(shop)
    time.sleep(0.3)
    waiting = _status(shop)
    assert waiting.lag_seconds >= 0.3 and waiting.newest_change_at == loaded.newest_change_at
    placed = one(shop, "SELECT updated_at FROM app.orders WHERE id = %s", (order,))
    assert waiting.oldest_pending_at is not None and waiting.oldest_pending_at <= placed

    pipeline.run(shop)
    after = _status(shop)
    assert after.lag_seconds == 0 and after.version == loaded.version + 1
    assert after.newest_change_at is not None and after.newest_change_at >= placed


def test_health_reports_a_failing_load(loaded_shop: str) -> None:
    sql(loaded_shop, "ALTER TABLE dw.fact_orders ADD CONSTRAINT nope CHECK (false) NOT VALID")
    _place_order(loaded_shop)
    with pytest.raises(Exception, match="fact_orders failed and was rolled back"):
        pipeline.run(loaded_shop)
    with runner.etl_engine(loaded_shop).connect() as conn:
        detail = health(conn)
    assert detail["ok"] is False and detail["state"] == "failed"
    assert "nope" in detail["error"] and detail["failures"] == 1
    assert detail["lagSeconds"] > 0 and detail["failingSince"] is not None
    assert set(detail) == {
        "ok", "version", "newestChangeAt", "lagSeconds", "lastRunId", "lastRunAt", "state",
        "error", "failingSince", "failures",
    }  # fmt: skip


def test_healthz_detail_reports_a_failing_load_and_its_recovery(loaded_shop: str) -> None:
    """Issue 16: a failing load is reported in /healthz detail; the endpoint stays 200 (a
    liveness probe must not restart a server over a load) and, being open, shows no error
    text."""
    engine = make_engine(loaded_shop)
    with make_app(engine) as client:
        ok = client.get("/healthz").json()["warehouse"]
        assert ok["ok"] is True and ok["state"] == "succeeded" and ok["lagSeconds"] == 0

        sql(loaded_shop, "ALTER TABLE dw.fact_orders ADD CONSTRAINT nope CHECK (false) NOT VALID")
        _place_order(loaded_shop)
        with pytest.raises(Exception, match="fact_orders failed"):
            pipeline.run(loaded_shop)
        time.sleep(1.1)  # what the process keeps of the detail (once a second) is older
        resp = client.get("/healthz")
        assert resp.status_code == 200 and resp.json()["status"] == "ok"
        failing = resp.json()["warehouse"]
        assert failing["ok"] is False and failing["state"] == "failed"
        assert failing["failures"] == 1 and failing["failingSince"] is not None
        assert failing["lagSeconds"] > 0 and "error" not in failing
        assert "nope" not in resp.text
        time.sleep(1.1)
        assert client.get("/healthz").json()["warehouse"]["lagSeconds"] > failing["lagSeconds"]

        sql(loaded_shop, "ALTER TABLE dw.fact_orders DROP CONSTRAINT nope")
        pipeline.run(loaded_shop)
        time.sleep(1.1)
        recovered = client.get("/healthz").json()["warehouse"]
        assert recovered["ok"] is True and recovered["state"] == "succeeded"
        assert recovered["lagSeconds"] == 0 and recovered["failures"] == 0


def test_warehouse_status_for_staff_not_for_customers(loaded_shop: str) -> None:
    engine = make_engine(loaded_shop)
    customer = one(loaded_shop, "SELECT min(id) FROM app.customers")
    with make_app(engine) as client:
        for role in ("admin", "analyst", "service"):
            code, body = post(client, token(role), STATUS)
            assert code == 200 and "errors" not in body, body
            status = body["data"]["warehouseStatus"]
            assert status["state"] == "SUCCEEDED" and status["lagSeconds"] == 0
            assert status["version"] >= 1 and status["error"] is None
            assert status["newestChangeAt"] and status["lastRunAt"]
        code, body = post(client, token("customer", customer), STATUS)
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]


def _staff_error(client: Any) -> str | None:
    """``warehouseStatus.error`` as each staff role reads it (the same for all)."""
    seen = set()
    for role in ("admin", "analyst", "service"):
        code, body = post(client, token(role), STATUS)
        assert code == 200 and "errors" not in body, body
        seen.add(body["data"]["warehouseStatus"]["error"])
    [error] = seen
    return error


def test_warehouse_status_tells_which_step_failed_never_the_databases_words(
    loaded_shop: str,
) -> None:
    """``warehouseStatus.error`` (admin, analyst and service keys) was the first line of
    PostgreSQL's message of a failed step (``new row for relation "fact_orders" violates
    check constraint "nope"``): names of tables and constraints, and values, reach a client
    (probe 10, L4). It tells the step and the SQLSTATE class, in the API's words; the
    database's words stay in the run log (dw.etl_run, dw.etl_run_step) and the server's log."""
    engine = make_engine(loaded_shop)
    sql(loaded_shop, "ALTER TABLE dw.fact_orders ADD CONSTRAINT nope CHECK (false) NOT VALID")
    _place_order(loaded_shop)
    with pytest.raises(Exception, match="fact_orders failed and was rolled back"):
        pipeline.run(loaded_shop)
    told = "step fact_orders failed and was rolled back: integrity constraint violation"
    told += " (SQLSTATE class 23)"
    with make_app(engine) as client:
        assert _staff_error(client) == told
        # the operator's run log keeps the database's words
        run_error, step_error = sql(
            loaded_shop,
            "SELECT r.error, s.error FROM dw.etl_run AS r JOIN dw.etl_run_step AS s"
            " USING (run_id) WHERE s.status = 'failed' ORDER BY run_id DESC LIMIT 1",
        )[0]
        assert "nope" in run_error and "nope" in step_error, (run_error, step_error)

        # a full rebuild that fails is told the same way
        with pytest.raises(Exception, match="fact_orders failed; the full rebuild"):
            pipeline.run(loaded_shop, full=True)
        assert _staff_error(client) == told

        # failures that are no step's: our own words pass, anything else is not quoted
        for error, checks, said in [
            (
                "interrupted: the process ended before the run finished",
                None,
                "interrupted: the process ended before the run finished",
            ),
            (
                "2 data-quality check(s) failed: fact_sales.revenue: app 1 vs dw 2; x: y",
                '[{"name": "fact_sales.revenue", "ok": false}, {"name": "a", "ok": true},'
                ' {"name": "x", "ok": false}]',
                "2 data-quality checks failed",
            ),
            (
                'OperationalError: (psycopg.errors.DiskFull) could not extend file "base/1/2"'
                " [SQL: INSERT INTO dw.fact_sales SELECT 1]",
                None,
                "the run failed (the server's log tells why)",
            ),
        ]:
            sql(
                loaded_shop,
                "INSERT INTO dw.etl_run (mode, status, finished_at, error, checks)"
                " VALUES ('incremental', 'failed', clock_timestamp(), %s, %s::jsonb)",
                (error, checks),
            )
            assert _staff_error(client) == said


def _listening() -> bool:
    return any(h.listening.is_set() and h.subscribers for h in list(notify._hubs.values()))


def _wait_for(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_warehouse_updated_tells_subscribers_of_each_new_version(loaded_shop: str) -> None:
    engine = make_engine(loaded_shop)
    version = one(loaded_shop, "SELECT version FROM dw.etl_state")
    query = "subscription { warehouseUpdated { version newestChangeAt lagSeconds } }"
    with (
        make_app(engine) as client,
        client.websocket_connect(
            "/graphql",
            subprotocols=["graphql-transport-ws"],
            headers={"Authorization": f"Bearer {token('analyst')}"},
        ) as ws,
    ):
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": query}})
        _wait_for(_listening)

        def change_and_load() -> None:
            _place_order(loaded_shop)
            pipeline.run(loaded_shop)

        loading = threading.Thread(target=change_and_load)
        loading.start()
        msg: dict[str, Any] = ws.receive_json()
        loading.join()
        assert msg["type"] == "next", msg
        event = msg["payload"]["data"]["warehouseUpdated"]
        assert event["version"] == version + 1
        assert event["lagSeconds"] == 0 and event["newestChangeAt"]
        ws.send_json({"id": "1", "type": "complete"})
    _wait_for(lambda: not _listening())


CUBE = "{ cube { sales { orderCount } } }"


def test_cube_reports_the_newest_change_and_the_lag(loaded_shop: str) -> None:
    engine = make_engine(loaded_shop)
    with make_app(engine) as client:
        code, body = post(client, token("analyst"), CUBE)
        assert code == 200 and "errors" not in body, body
        (caught_up,) = body["extensions"]["cube"]
        assert caught_up["lagSeconds"] == 0 and caught_up["newestChangeAt"]
        before = caught_up["warehouseVersion"]

        _place_order(loaded_shop)
        time.sleep(0.5)  # older than the status the process may hold (0.25 s)
        code, body = post(client, token("analyst"), CUBE)
        (waiting,) = body["extensions"]["cube"]
        assert waiting["lagSeconds"] >= 0.25 and waiting["warehouseVersion"] == before
        assert waiting["newestChangeAt"] == caught_up["newestChangeAt"]

        pipeline.run(loaded_shop)
        time.sleep(0.3)
        code, body = post(client, token("analyst"), CUBE)
        (loaded,) = body["extensions"]["cube"]
        assert loaded["lagSeconds"] == 0 and loaded["warehouseVersion"] == before + 1
        assert loaded["newestChangeAt"] > caught_up["newestChangeAt"]
        assert body["data"]["cube"][0]["sales"]["orderCount"] == (
            one(loaded_shop, "SELECT count(*) FROM app.orders")
        )


def test_a_cube_answer_of_a_new_version_reports_that_version_s_freshness(
    loaded_shop: str,
) -> None:
    """A client polling the cube sees the new version at once, and with it the newest change
    and the lag of that version, not a status the process read just before the publish
    (within the 0.25 s it keeps one): the order counted, yet a lag still waiting for it."""
    engine = make_engine(loaded_shop)
    reports: dict[str, Any] = {}
    with make_app(engine) as client:
        _, body = post(client, token("analyst"), CUBE)
        (caught_up,) = body["extensions"]["cube"]
        _place_order(loaded_shop)
        time.sleep(0.3)  # the caught-up status held by the process has expired

        class Poller(runner.Silent):
            def step_started(self, step: str, index: int, total: int) -> None:
                if step == "fact_stock_daily":  # the order's facts not all applied yet
                    reports["before"] = post(client, token("analyst"), CUBE)[1]

            def step_finished(self, step: str, counts: Any, seconds: float) -> None:
                if step == "publish":  # the new version, the features still to come
                    reports["after"] = post(client, token("analyst"), CUBE)[1]

        pipeline.run(loaded_shop, check=False, observer=Poller())
    (before,) = reports["before"]["extensions"]["cube"]
    assert before["lagSeconds"] > 0 and before["newestChangeAt"] == caught_up["newestChangeAt"]
    (after,) = reports["after"]["extensions"]["cube"]
    assert after["warehouseVersion"] == caught_up["warehouseVersion"] + 1
    assert reports["after"]["data"]["cube"][0]["sales"]["orderCount"] == (
        one(loaded_shop, "SELECT count(*) FROM app.orders")
    )
    assert after["lagSeconds"] == 0
    assert after["newestChangeAt"] > caught_up["newestChangeAt"]


def _pg_spelling(url: str, t: Any) -> str:
    """PostgreSQL's JSON spelling of the instant ``t`` (the reads' format: docs/api.md)."""
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        got = conn.execute("SELECT to_json(%s::timestamptz)::text", (t,)).fetchone()
    assert got is not None
    return str(got[0]).strip('"')


def test_times_made_in_python_are_spelled_as_postgresql_spells_them(loaded_shop: str) -> None:
    """The audit of issue 15's formats: `warehouseStatus`, `extensions.cube` and `/healthz`
    wrote Python's isoformat (six fraction digits, trailing zeros kept) where every read
    writes PostgreSQL's (``…59.91117+00:00``): the same instant, two spellings."""
    import datetime as dt

    from schema.scalars import serialize_iso

    utc = dt.UTC
    for t in (
        dt.datetime(2026, 12, 7, 17, 37, 59, 911170, tzinfo=utc),
        dt.datetime(2026, 12, 7, 17, 37, 59, 500000, tzinfo=utc),
        dt.datetime(2026, 12, 7, 17, 37, 59, 1, tzinfo=utc),
        dt.datetime(2026, 12, 7, 17, 37, 59, tzinfo=utc),
        dt.datetime(2026, 12, 7, 19, 37, 59, 120000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ):
        assert serialize_iso(t) == _pg_spelling(loaded_shop, t), t
    sql(loaded_shop, "UPDATE app.orders SET updated_at = '2026-12-07 17:37:59.91117+00'"
        " WHERE id = (SELECT max(id) FROM app.orders)")  # fmt: skip
    pipeline.run(loaded_shop)
    status = _status(loaded_shop)
    newest = _pg_spelling(loaded_shop, status.newest_change_at)
    last_run = _pg_spelling(loaded_shop, status.last_run_at)
    engine = make_engine(loaded_shop)
    with make_app(engine) as client:
        code, body = post(client, token("admin"), STATUS)
        assert code == 200 and "errors" not in body, body
        got = body["data"]["warehouseStatus"]
        assert (got["newestChangeAt"], got["lastRunAt"]) == (newest, last_run)
        health = client.get("/healthz").json()["warehouse"]
        assert health["newestChangeAt"] == newest
        code, body = post(client, token("admin"), CUBE)
        assert code == 200 and "errors" not in body, body
        [report] = body["extensions"]["cube"]
        assert report["newestChangeAt"] == newest
