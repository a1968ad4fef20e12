"""A BI session never stalls the shop's pipeline (docs/bi.md, "Locks"). A BI tool may
hold a transaction open over the ``bi`` views (or run a long query); the DDL that
replaces the views, and the TRUNCATE of a full rebuild, need locks that conflict with its
reads. Waiting for them in the lock queue would stall the pipeline for as long as the
analyst's session lives, and every other reader queued behind: each waits at most a short
``lock_timeout`` at a time instead, and the pipeline goes on (the views are republished
at a later run), ``cdms bi publish`` and ``cdms etl run --full`` give up with CONFLICT."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import Engine

from db.errors import ConflictError
from etl import pipeline, runner
from semantic import bi
from semantic.validate import default_model
from tests.semantic.conftest import sql
from tests.semantic.test_bi import as_role, role_for, unpublish

HELD_S = 12.0  # the BI session's own idle_in_transaction_session_timeout: it ends by then
STALE = "Cube views for BI tools, published by cdms bi publish; model " + "0" * 64


@pytest.fixture(scope="module")
def role(wh: Engine, warehouse_url: str) -> Iterator[str]:
    name = role_for(warehouse_url, "locks")
    with wh.begin() as conn:
        bi.publish(conn, default_model(), name, None)
    yield name
    unpublish(warehouse_url, name)


def _reader(url: str, role: str) -> psycopg.Connection[tuple[object, ...]]:
    """A BI session idle in a transaction that read ``bi.sales`` (ends after HELD_S)."""
    conn = psycopg.connect(as_role(url, role))
    conn.execute(f"SET idle_in_transaction_session_timeout = '{HELD_S}s'")
    conn.commit()
    conn.execute("SELECT 1 FROM bi.sales LIMIT 1").fetchall()
    return conn


def _stale(wh: Engine) -> None:
    """What a deploy that changed the cube model looks like to the pipeline."""
    with wh.begin() as conn:
        conn.exec_driver_sql(f"COMMENT ON SCHEMA bi IS '{STALE}'")


def _until_waiting(url: str, run: threading.Thread) -> None:
    """Until the pipeline waits for a lock (or is done)."""
    for _ in range(100):
        if not run.is_alive() or sql(url, "SELECT 1 FROM pg_locks WHERE NOT granted"):
            return
        time.sleep(0.05)


def test_a_bi_reader_does_not_stall_the_pipeline(wh: Engine, warehouse_url: str, role: str) -> None:
    _stale(wh)
    reader = _reader(warehouse_url, role)
    try:
        t0 = time.monotonic()
        result = pipeline.run(warehouse_url, check=False)
        seconds = time.monotonic() - t0
        assert seconds < HELD_S / 2, seconds
        assert any("bi" in n and "later run" in n for n in result.notes), result.notes
        with wh.connect() as conn:
            assert bi.published_fingerprint(conn) == "0" * 64  # the old views, still readable
        assert reader.execute("SELECT count(*) FROM bi.customers").fetchone()
    finally:
        reader.close()
    result = pipeline.run(warehouse_url, check=False)  # the reader gone: republished
    assert result.notes == []
    with wh.connect() as conn:
        assert bi.published_fingerprint(conn) == bi.fingerprint(default_model())


def test_other_bi_readers_do_not_queue_behind_the_republish(
    wh: Engine, warehouse_url: str, role: str
) -> None:
    _stale(wh)
    reader = _reader(warehouse_url, role)
    run = threading.Thread(target=lambda: pipeline.run(warehouse_url, check=False))
    try:
        run.start()
        _until_waiting(warehouse_url, run)
        t0 = time.monotonic()
        assert sql(as_role(warehouse_url, role), "SELECT count(*) FROM bi.customers")
        assert sql(as_role(warehouse_url, role), "SELECT count(*) FROM bi.sales")
        assert time.monotonic() - t0 < HELD_S / 2
    finally:
        reader.close()
        run.join(60)
        with wh.begin() as conn:
            bi.publish_views(conn, default_model())


def test_cdms_bi_publish_gives_up_on_a_bi_reader(
    wh: Engine, warehouse_url: str, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bi, "PUBLISH_WAIT_S", 2.0, raising=False)
    monkeypatch.setattr(bi, "PUBLISH_QUEUE_S", 1.0, raising=False)
    _stale(wh)
    reader = _reader(warehouse_url, role)
    try:
        t0 = time.monotonic()
        with pytest.raises(ConflictError, match="bi"), wh.begin() as conn:
            bi.publish(conn, default_model(), role, None)
        assert time.monotonic() - t0 < HELD_S / 2
    finally:
        reader.close()
    with wh.begin() as conn:
        bi.publish(conn, default_model(), role, None)
        assert bi.published_fingerprint(conn) == bi.fingerprint(default_model())


def test_a_full_rebuild_does_not_stall_readers_behind_a_bi_reader(
    wh: Engine, warehouse_url: str, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRUNCATE waits for the BI session's lock on the warehouse (its views read it); in
    the queue it would hold up every reader of the facts, the API's cubes included."""
    monkeypatch.setattr(runner, "FULL_LOCK_WAIT_S", 3.0, raising=False)
    monkeypatch.setattr(runner, "FULL_LOCK_QUEUE_S", 1.0, raising=False)
    reader = _reader(warehouse_url, role)
    failed: list[BaseException] = []

    def full() -> None:
        try:
            pipeline.run(warehouse_url, full=True, check=False)
        except BaseException as exc:  # checked below
            failed.append(exc)

    run = threading.Thread(target=full)
    try:
        t0 = time.monotonic()
        run.start()
        time.sleep(0.5)
        assert sql(warehouse_url, "SELECT count(*) FROM dw.fact_sales")  # an API cube read
        assert time.monotonic() - t0 < HELD_S / 2
        run.join(HELD_S / 2)
        assert not run.is_alive()
        assert len(failed) == 1 and isinstance(failed[0], ConflictError), failed
        assert "cdms_bi" in failed[0].args[0]  # names who holds the lock
    finally:
        reader.close()
        run.join(60)


def test_a_full_rebuild_gets_through_readers_that_keep_the_warehouse_busy(
    wh: Engine, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three readers of the facts, 1.2 s each, overlapping (a busy dashboard): no short
    attempt ever found the lock free, and the full run gave up after a minute where a
    queued lock got through in 0.8 s (the hostile review of 2026-12-07). After its short
    attempts it waits in the queue once."""
    monkeypatch.setattr(runner, "FULL_LOCK_WAIT_S", 1.0, raising=False)
    monkeypatch.setattr(runner, "FULL_LOCK_QUEUE_S", 20.0, raising=False)
    stop = threading.Event()

    def reader(offset: float) -> None:
        time.sleep(offset)
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute(
                    "SELECT count(*), pg_sleep(1.2) FROM (SELECT 1 FROM dw.fact_sales LIMIT 1) s"
                )

    readers = [threading.Thread(target=reader, args=(i * 0.4,)) for i in range(3)]
    for r in readers:
        r.start()
    try:
        time.sleep(1.5)
        pipeline.run(warehouse_url, full=True, check=False)
    finally:
        stop.set()
        for r in readers:
            r.join(10)
