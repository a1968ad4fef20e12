"""`cdms etl run` output."""

from __future__ import annotations

from pathlib import Path

from etl.pipeline import PIPELINE
from tests.cli import cli_environment, run_cdms


def test_cli_run_shows_every_step_and_the_outcome(shop: str, tmp_path: Path) -> None:
    done = run_cdms(cli_environment(shop, tmp_path), "etl", "run")
    assert done.returncode == 0, done.stderr
    for step in PIPELINE:
        assert step.name in done.stdout
    assert "succeeded" in done.stdout and "checks, 0 failed" in done.stdout
    usage = run_cdms(cli_environment(shop, tmp_path), "etl", "run", "--fast")
    assert usage.returncode == 2 and usage.stderr.startswith("error[USAGE]: ")
