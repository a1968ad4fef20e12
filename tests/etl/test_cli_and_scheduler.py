"""`cdms etl run` output, the serve-time schedule and the start-up load."""

from __future__ import annotations

import time
from pathlib import Path

from etl import runner
from etl.scheduler import EtlScheduler, start_if_enabled
from etl.steps import STEP_NAMES
from tests.cli import cli_environment, run_cdms
from tests.etl.conftest import one, sql


def test_cli_run_shows_every_step_and_the_outcome(shop: str, tmp_path: Path) -> None:
    done = run_cdms(cli_environment(shop, tmp_path), "etl", "run")
    assert done.returncode == 0, done.stderr
    for step in STEP_NAMES:
        assert step in done.stdout
    assert "succeeded" in done.stdout and "checks, 0 failed" in done.stdout
    usage = run_cdms(cli_environment(shop, tmp_path), "etl", "run", "--fast")
    assert usage.returncode == 2 and usage.stderr.startswith("error[USAGE]: ")


def test_the_schedule_is_off_at_zero_and_loads_changes_when_on(shop: str) -> None:
    assert start_if_enabled(shop, 0, print) is None
    messages: list[str] = []
    scheduler = EtlScheduler(shop, 0.2, messages.append).start()
    try:
        deadline = time.monotonic() + 60
        while one(shop, "SELECT count(*) FROM dw.etl_run WHERE status = 'succeeded'") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        customer = one(shop, "SELECT min(id) FROM app.customers")
        sql(
            shop,
            "UPDATE app.customers SET segment = 'corporate', city = 'Oslo' WHERE id = %s",
            (customer,),
        )
        while (
            one(
                shop,
                "SELECT city FROM dw.dim_customer WHERE customer_id = %s AND is_current",
                (customer,),
            )
            != "Oslo"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        scheduler.stop()
    assert scheduler.runs >= 2
    assert any("row change(s)" in m for m in messages), messages
    assert not any("failed" in m for m in messages), messages


def test_startup_load_brings_dw_up_to_date(shop: str) -> None:
    from api.cli.etl import load_on_startup

    load_on_startup(shop)
    load_on_startup(shop)  # idempotent: a restart loads nothing twice

    assert one(shop, "SELECT count(*) FROM dw.fact_orders") == one(
        shop, "SELECT count(*) FROM app.orders"
    )
    assert sql(shop, "SELECT DISTINCT status FROM dw.etl_run") == [("succeeded",)]
    runner.dispose(shop)
