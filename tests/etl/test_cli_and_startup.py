"""`cdms etl run` output and the start-up load."""

from __future__ import annotations

from pathlib import Path

from etl import runner
from etl.pipeline import PIPELINE
from tests.cli import cli_environment, run_cdms
from tests.etl.conftest import one, sql


def test_cli_run_shows_every_step_and_the_outcome(shop: str, tmp_path: Path) -> None:
    done = run_cdms(cli_environment(shop, tmp_path), "etl", "run")
    assert done.returncode == 0, done.stderr
    for step in PIPELINE:
        assert step.name in done.stdout
    assert "succeeded" in done.stdout and "checks, 0 failed" in done.stdout
    usage = run_cdms(cli_environment(shop, tmp_path), "etl", "run", "--fast")
    assert usage.returncode == 2 and usage.stderr.startswith("error[USAGE]: ")


def test_startup_load_brings_dw_up_to_date(shop: str) -> None:
    from api.cli.etl import load_on_startup

    load_on_startup(shop)
    load_on_startup(shop)  # idempotent: a restart loads nothing twice

    assert one(shop, "SELECT count(*) FROM dw.fact_orders") == one(
        shop, "SELECT count(*) FROM app.orders"
    )
    assert sql(shop, "SELECT DISTINCT status FROM dw.etl_run") == [("succeeded",)]
    runner.dispose(shop)
