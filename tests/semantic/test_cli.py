"""``cdms semantic rollups``: builds every declared rollup once per warehouse version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.cli import run_cdms
from tests.semantic.conftest import sql


def test_rollups_command_builds_then_skips_then_forces(
    fresh_database: Callable[[], str], cli_env: dict[str, str]
) -> None:
    url = fresh_database()
    env = cli_env | {"DATABASE_URL": url}
    first = run_cdms(env, "semantic", "rollups")
    assert first.returncode == 0, first.stderr
    assert "sales.monthlyByCategory: 0 rows" in first.stdout
    built = sql(url, "SELECT name, version FROM dw_rollup.build ORDER BY name")
    assert built == [
        ("orders.daily", 0),
        ("orders.monthlyByCustomer", 0),
        ("sales.daily", 0),
        ("sales.monthlyByCategory", 0),
    ]
    again = run_cdms(env, "semantic", "rollups")
    assert again.returncode == 0 and "every rollup is current" in again.stdout
    forced = run_cdms(env, "semantic", "rollups", "--force")
    assert forced.returncode == 0 and forced.stdout.count(" rows in ") == 4
    explained = run_cdms(env | {"COLUMNS": "220"}, "semantic", "rollups", "--explain")
    assert explained.returncode == 0, explained.stderr
    for name, _ in built:
        assert name in explained.stdout
    assert "compression" in explained.stdout and "no query has read it" in explained.stdout
    bad = run_cdms(env, "semantic", "validate", "--models", "/nonexistent")
    assert bad.returncode == 2 and bad.stderr.startswith("error[USAGE]: ")
    # a folder holding no cube files is not a valid model of no cubes
    empty = run_cdms(env, "semantic", "validate", "--models", str(Path(__file__).parent))
    assert empty.returncode == 1 and "no cube files" in empty.stderr, empty
