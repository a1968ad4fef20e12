"""A run killed mid-way resumes to the same warehouse as a rebuild; runs never overlap."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from db.config import to_libpq_url
from db.seed import seed
from etl import pipeline, runner
from etl.errors import EtlBusyError
from etl.runner import LOCK_KEYS
from semantic.validate import default_model
from tests.cli import cli_environment
from tests.etl.conftest import dw_checksums, one, return_an_order, sql, wait_for_etl_lock_wait


def _spawn(url: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from api.cli import main; main()", "etl", "run", *args],
        env=cli_environment(url, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate: object, timeout: float = 60.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_run_killed_at_a_step_then_rerun_equals_a_full_rebuild(
    loaded_shop: str, tmp_path: Path
) -> None:
    url = loaded_shop
    order_id = return_an_order(url)
    cancelled = one(
        url,
        "SELECT min(o.id) FROM app.orders o WHERE o.status = 'cancelled'"
        " AND NOT EXISTS (SELECT 1 FROM app.feedback f WHERE f.order_id = o.id)"
        " AND NOT EXISTS (SELECT 1 FROM app.support_tickets t WHERE t.order_id = o.id)",
    )
    sql(url, "DELETE FROM app.orders WHERE id = %s", (cancelled,))

    runner.dispose(url)  # this process's pooled ETL sessions would look like the child's
    # Hold fact_orders so the run blocks inside that step, after three committed steps.
    with psycopg.connect(to_libpq_url(url)) as blocker:
        blocker.execute("LOCK TABLE dw.fact_orders IN ACCESS EXCLUSIVE MODE")
        proc = _spawn(url, tmp_path)
        try:
            wait_for_etl_lock_wait(url, proc, "fact_orders")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        # the server drops the dead client's sessions (client_connection_check_interval)
        _wait_for(
            lambda: (
                one(
                    url,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name LIKE 'cdms-etl%%'",
                )
                == 0
            )
        )
        blocker.rollback()

    killed = one(url, "SELECT run_id, status FROM dw.etl_run ORDER BY run_id DESC LIMIT 1")
    assert killed[1] == "running"
    done_steps = [
        r[0]
        for r in sql(
            url,
            "SELECT step FROM dw.etl_run_step WHERE run_id = %s ORDER BY position",
            (killed[0],),
        )
    ]
    assert done_steps == ["dim_customer", "dim_product", "fact_sales"]
    # half applied: the lines carry the new status, the order row does not yet
    assert sql(
        url, "SELECT DISTINCT status FROM dw.fact_sales WHERE order_id = %s", (order_id,)
    ) == [("returned",)]
    assert (
        one(url, "SELECT status FROM dw.fact_orders WHERE order_id = %s", (order_id,))
        == "delivered"
    )

    resumed = pipeline.run(url)

    assert all(c.ok for c in resumed.checks)
    assert one(url, "SELECT status, error FROM dw.etl_run WHERE run_id = %s", (killed[0],)) == (
        "failed",
        "interrupted: the process ended before the run finished",
    )
    assert (
        one(url, "SELECT status FROM dw.fact_orders WHERE order_id = %s", (order_id,)) == "returned"
    )
    after_resume = dw_checksums(url)
    pipeline.run(url, full=True)
    assert dw_checksums(url) == after_resume
    assert one(url, "SELECT count(*) FROM dw.fact_orders WHERE order_id = %s", (cancelled,)) == 0


def test_a_run_while_another_holds_the_lock_fails_with_conflict(shop: str, tmp_path: Path) -> None:
    with psycopg.connect(to_libpq_url(shop), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEYS)
        with pytest.raises(EtlBusyError, match="another ETL run is in progress"):
            pipeline.run(shop)
        proc = _spawn(shop, tmp_path)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.strip().startswith("error[CONFLICT]: another ETL run is in progress (pid ")
    assert one(shop, "SELECT count(*) FROM dw.etl_run") == 0
    assert one(shop, "SELECT count(*) FROM dw.fact_sales") == 0


def test_the_lock_is_free_the_moment_a_run_ends(shop: str) -> None:
    """A run that ends gives the lock back before it returns: the next run started at once
    (serve's loop after a `cdms etl run`, two tests in a row) is never told "another ETL run
    is in progress" by a session that is still closing."""
    with psycopg.connect(to_libpq_url(shop), autocommit=True) as watcher:
        for _ in range(40):
            with runner.advisory_lock(shop, wait=False):
                pass
            held = watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid = %s AND objid = %s AND objsubid = 2",
                LOCK_KEYS,
            ).fetchone()
            assert held == (0,)


def _runs(url: str) -> list[tuple[int, str, object, object]]:
    return sql(
        url, "SELECT run_id, status, started_at, finished_at FROM dw.etl_run ORDER BY run_id"
    )


def test_two_runs_started_at_once_never_double_load(shop: str, tmp_path: Path) -> None:
    runner.dispose(shop)
    procs = [_spawn(shop, tmp_path / str(i)) for i in range(2)]
    outcomes = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]

    assert any(rc == 0 for rc, _ in outcomes), outcomes
    for rc, err in outcomes:
        assert rc == 0 or err.strip().startswith("error[CONFLICT]: another ETL run"), err
    lines = one(shop, "SELECT count(*) FROM app.order_items")
    assert one(shop, "SELECT count(*) FROM dw.fact_sales") == lines
    inserted = one(
        shop,
        "SELECT sum(s.rows_inserted) FROM dw.etl_run_step s JOIN dw.etl_run r USING (run_id)"
        " WHERE s.step = 'fact_sales' AND r.status = 'succeeded'",
    )
    assert inserted == lines
    runs = _runs(shop)
    assert all(status == "succeeded" for _, status, _, _ in runs)
    for (_, _, _, end), (_, _, start, _) in itertools.pairwise(runs):
        assert end <= start  # type: ignore[operator]


def test_with_wait_the_second_run_queues_and_loads_nothing_twice(shop: str, tmp_path: Path) -> None:
    runner.dispose(shop)
    procs = [_spawn(shop, tmp_path / str(i), "--wait") for i in range(2)]
    outcomes = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]

    assert [rc for rc, _ in outcomes] == [0, 0], outcomes
    runs = _runs(shop)
    assert [status for _, status, _, _ in runs] == ["succeeded", "succeeded"]
    assert runs[0][3] <= runs[1][2]  # type: ignore[operator]
    second = sql(
        shop,
        "SELECT rows_inserted + rows_updated + rows_deleted FROM dw.etl_run_step WHERE run_id = %s",
        (runs[1][0],),
    )
    assert second and all(n == 0 for (n,) in second)
    assert one(shop, "SELECT count(*) FROM dw.fact_orders") == one(
        shop, "SELECT count(*) FROM app.orders"
    )


def _derived(url: str) -> dict[str, str]:
    """md5 per rollup table and feature table (rows in a total order, feature rows without
    their computed_at): what the steps after the load derive from dw."""
    tables = [
        f"dw_rollup.{t}"
        for (t,) in sql(
            url,
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'dw_rollup' AND table_name <> 'build'",
        )
    ]
    declared = sum(len(c.pre_aggregations) for c in default_model().cubes)
    assert len(tables) == declared
    out = {}
    for table in tables:
        rows = "string_agg(r::text, E'\\n' ORDER BY r::text)"
        out[table] = one(url, f"SELECT md5(coalesce({rows}, '')) FROM {table} AS r")
    for table, key in (("ml.order_features", "order_id"), ("ml.ticket_features", "ticket_id")):
        out[table] = one(
            url,
            f"SELECT md5(coalesce(string_agg((to_jsonb(r) - 'computed_at')::text, E'\\n'"
            f" ORDER BY r.{key}), '')) FROM {table} AS r",
        )
    return out


def test_a_run_killed_after_its_load_is_caught_up_as_a_full_rebuild_would(
    loaded_shop: str, tmp_path: Path
) -> None:
    """Killed in the publish step (its load committed, its rollups and features not): the
    next run applies what the dead one did not, and everything equals `--full`."""
    url = loaded_shop
    version = one(url, "SELECT version FROM dw.etl_state")
    sql(
        url,
        "SELECT app.set_order_status(id, 'cancelled') FROM app.orders WHERE status = 'pending'",
    )
    customer = one(url, "SELECT min(id) FROM app.customers")
    product = one(url, "SELECT min(id) FROM app.products WHERE active AND stock > 10")
    sql(
        url,
        "SELECT app.place_order(%s, jsonb_build_array(jsonb_build_object("
        "'product_id', %s, 'quantity', 2)), 'web', 'card')",
        (customer, product),
    )
    runner.dispose(url)
    with psycopg.connect(to_libpq_url(url)) as blocker:
        blocker.execute("LOCK TABLE dw_rollup.sales_daily IN ACCESS EXCLUSIVE MODE")
        proc = _spawn(url, tmp_path, "--no-check")
        try:

            def waiting() -> bool:
                assert proc.poll() is None, proc.communicate()
                return bool(
                    one(
                        url,
                        "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)"
                        " WHERE NOT l.granted AND a.datname = current_database()"
                        " AND a.application_name = 'cdms-etl'"
                        " AND l.relation = 'dw_rollup.sales_daily'::regclass",
                    )
                )

            _wait_for(waiting)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        _wait_for(
            lambda: (
                one(
                    url,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name LIKE 'cdms-etl%%'",
                )
                == 0
            )
        )
        blocker.rollback()

    killed = one(url, "SELECT max(run_id) FROM dw.etl_run")
    done = [r[0] for r in sql(url, "SELECT step FROM dw.etl_run_step WHERE run_id = %s", (killed,))]
    assert "fact_support" in done and "publish" not in done  # loaded, not published
    assert one(url, "SELECT version FROM dw.etl_state") == version  # caches still hold
    assert one(url, "SELECT count(*) FROM dw.etl_touched WHERE run_id = %s", (killed,)) > 0

    resumed = pipeline.run(url)

    assert not resumed.changed  # the load had nothing left: only the steps after it worked
    publish = next(s.counts for s in resumed.steps if s.step == "publish")
    assert publish.read > 0  # the touched days of the dead run
    assert one(url, "SELECT version FROM dw.etl_state") == version + 1
    assert one(url, "SELECT count(*) FROM dw.etl_touched") == 0  # applied by all: pruned
    after_resume = (dw_checksums(url), _derived(url))
    pipeline.run(url, full=True)
    assert (dw_checksums(url), _derived(url)) == after_resume


def test_ctrl_c_inside_the_stock_step_is_aborted_and_a_rerun_equals_a_full_rebuild(
    loaded_shop: str, tmp_path: Path
) -> None:
    """SIGINT while fact_stock_daily writes: one ``error[ABORTED]`` line and exit 130 (no
    traceback: the step's clean-up must not run on the interrupted connection and replace
    the interrupt), the run logged as interrupted, nothing half-written."""
    url = loaded_shop
    product = one(url, "SELECT min(id) FROM app.products")
    sql(url, "UPDATE app.products SET stock = stock + 5 WHERE id = %s", (product,))

    runner.dispose(url)  # this process's pooled ETL sessions would look like the child's
    # Reads of the snapshot pass (its first statement), writes wait: the interrupt lands
    # inside the step, after the seven steps before it committed.
    with psycopg.connect(to_libpq_url(url)) as blocker:
        blocker.execute("LOCK TABLE dw.fact_stock_daily IN EXCLUSIVE MODE")
        proc = _spawn(url, tmp_path)
        try:
            wait_for_etl_lock_wait(url, proc, "dw.fact_stock_daily")
            os.kill(proc.pid, signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        blocker.rollback()

    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "error[ABORTED]: interrupted", err
    run_id, status, error = one(
        url, "SELECT run_id, status, error FROM dw.etl_run ORDER BY run_id DESC LIMIT 1"
    )
    assert (status, error) == ("failed", "interrupted: the run was stopped (SIGINT)")
    steps = sql(
        url, "SELECT step FROM dw.etl_run_step WHERE run_id = %s ORDER BY position", (run_id,)
    )
    assert [s for (s,) in steps] == [
        "dim_customer",
        "dim_product",
        "fact_sales",
        "fact_orders",
        "fact_returns",
        "fact_feedback",
        "fact_support",
    ]

    resumed = pipeline.run(url)
    assert all(c.ok for c in resumed.checks)
    after_resume = dw_checksums(url)
    pipeline.run(url, full=True)
    assert dw_checksums(url) == after_resume


def test_ctrl_c_inside_a_full_loads_stock_rebuild_rolls_it_back_and_says_aborted(
    fresh_database: Callable[[], str], tmp_path: Path
) -> None:
    """The finding's case: ``cdms etl run --full`` (one transaction) interrupted while the
    stock series are rebuilt. Wide series (300 products over 20 years: seconds of work)
    so the signal lands inside the statement the test sees running."""
    url = fresh_database()
    seed(url, 40, 250, 11, products=300, years=20)
    pipeline.run(url)
    before = dw_checksums(url)
    runner.dispose(url)

    proc = _spawn(url, tmp_path, "--full")
    try:

        def rebuilding() -> bool:
            assert proc.poll() is None, proc.communicate()
            return bool(
                one(
                    url,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'cdms-etl' AND state = 'active'"
                    " AND query ILIKE '%%INSERT INTO dw.fact_stock_daily%%'"
                    " AND query ILIKE '%%_stock_whole%%'",
                )
            )

        _wait_for(rebuilding, timeout=120)
        os.kill(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "error[ABORTED]: interrupted", err
    assert one(url, "SELECT mode, status, error FROM dw.etl_run ORDER BY run_id DESC LIMIT 1") == (
        "full",
        "failed",
        "interrupted: the run was stopped (SIGINT)",
    )
    assert dw_checksums(url) == before  # the full load rolled back whole
    resumed = pipeline.run(url)
    assert all(c.ok for c in resumed.checks)
    assert dw_checksums(url) == before
