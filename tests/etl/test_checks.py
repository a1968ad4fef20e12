"""`cdms etl check` names the failing check and by how much; a new version and NOTIFY when
a run changed the warehouse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from db.config import to_libpq_url
from etl import pipeline
from etl.checks import run_checks
from etl.errors import CheckFailedError
from etl.runner import etl_engine
from tests.cli import cli_environment, run_cdms
from tests.etl.conftest import one, sql, wait_for_etl_lock_wait


def _cdms(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cdms(cli_environment(url, tmp_path), *args)


def test_check_passes_on_a_loaded_warehouse(loaded_shop: str, tmp_path: Path) -> None:
    done = _cdms(loaded_shop, tmp_path, "etl", "check")
    assert done.returncode == 0, done.stderr
    assert "checks passed" in done.stdout


def test_check_names_a_tampered_fact_and_the_difference(loaded_shop: str, tmp_path: Path) -> None:
    order_id, line_no = one(
        loaded_shop,
        "SELECT order_id, line_no FROM dw.fact_sales WHERE status = 'delivered'"
        " ORDER BY 1, 2 LIMIT 1",
    )
    sql(
        loaded_shop,
        "UPDATE dw.fact_sales SET gross = gross + 7, net = net + 7, margin = margin + 7"
        " WHERE order_id = %s AND line_no = %s",
        (order_id, line_no),
    )

    done = _cdms(loaded_shop, tmp_path, "etl", "check")

    assert done.returncode == 1
    line = done.stderr.strip()
    assert line.startswith("error[CHECK_FAILED]: ") and "\n" not in line
    assert "fact_sales.net of paid+shipped+delivered orders" in line
    assert "(difference +7.00)" in line
    failed = {c.name for c in run_checks(etl_engine(loaded_shop)) if not c.ok}
    assert failed == {
        "fact_sales.gross",
        "fact_sales.net",
        "fact_sales.net of paid+shipped+delivered orders",
    }


def test_check_finds_overlapping_versions_and_wrong_keys(loaded_shop: str) -> None:
    customer_id = one(loaded_shop, "SELECT min(customer_id) FROM dw.fact_orders")
    sql(
        loaded_shop,
        "INSERT INTO dw.dim_customer (customer_id, email, full_name, age_band, segment, country,"
        " region, city, signup_at, valid_from, valid_to, is_current)"
        " SELECT customer_id, email, full_name, age_band, segment, 'Elsewhere', region, city,"
        " signup_at, '2000-01-01', '2001-01-01', false FROM dw.dim_customer"
        " WHERE customer_id = %s",
        (customer_id,),
    )
    new_key = one(loaded_shop, "SELECT max(customer_key) FROM dw.dim_customer")
    sql(
        loaded_shop,
        "UPDATE dw.fact_orders SET customer_key = %s WHERE order_id = "
        "(SELECT min(order_id) FROM dw.fact_orders WHERE customer_id = %s)",
        (new_key, customer_id),
    )

    results = {c.name: c for c in run_checks(etl_engine(loaded_shop))}

    assert not results["dim_customer.scd2_ranges"].ok
    assert "1 overlapping" in results["dim_customer.scd2_ranges"].detail
    assert not results["fact_orders.customer_key"].ok
    assert results["fact_orders.customer_key"].detail.startswith("1 row(s)")
    assert results["dim_customer.one_current"].ok
    assert results["fact_sales.customer_key"].ok


def test_a_failed_check_marks_the_run_failed(loaded_shop: str) -> None:
    sql(
        loaded_shop,
        "DELETE FROM dw.fact_feedback WHERE feedback_id = (SELECT min(id) FROM app.feedback)",
    )

    with pytest.raises(CheckFailedError) as info:
        pipeline.run(loaded_shop)

    assert "fact_feedback.rows: app" in info.value.message
    assert "(difference -1)" in info.value.message
    status, error, checks = one(
        loaded_shop, "SELECT status, error, checks FROM dw.etl_run ORDER BY run_id DESC LIMIT 1"
    )
    assert status == "failed" and "fact_feedback.rows" in error
    assert {c["name"] for c in checks if not c["ok"]} >= {"fact_feedback.rows"}


def test_a_run_that_changes_dw_bumps_the_version_and_notifies(shop: str) -> None:
    with psycopg.connect(to_libpq_url(shop), autocommit=True) as listener:
        listener.execute("LISTEN cdms_etl_done")
        first = pipeline.run(shop)
        second = pipeline.run(shop)  # nothing changed: no new version, no notification
        notes = [json.loads(n.payload) for n in listener.notifies(timeout=1, stop_after=2)]

    assert first.changed and not second.changed
    assert second.version == first.version >= 1
    assert len(notes) == 1
    assert notes[0]["runId"] == first.run_id and notes[0]["version"] == first.version
    assert notes[0]["lagSeconds"] == 0 and notes[0]["newestChangeAt"] is not None
    last_run, last_at = one(shop, "SELECT last_run_id, last_success_at FROM dw.etl_state")
    assert last_run == second.run_id and last_at is not None


def test_ctrl_c_during_check_is_one_aborted_line(loaded_shop: str, tmp_path: Path) -> None:
    """typer turns a KeyboardInterrupt into a silent exit 130 of its own: the CLI still
    says ``error[ABORTED]`` (every failure is one such line)."""
    url = loaded_shop
    with psycopg.connect(to_libpq_url(url)) as blocker:
        blocker.execute("LOCK TABLE dw.fact_sales IN ACCESS EXCLUSIVE MODE")  # the check waits
        proc = subprocess.Popen(
            [sys.executable, "-c", "from api.cli import main; main()", "etl", "check"],
            env=cli_environment(url, tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            wait_for_etl_lock_wait(url, proc)
            os.kill(proc.pid, signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        blocker.rollback()
    assert proc.returncode == 130, err
    assert err.strip() == "error[ABORTED]: interrupted", err
