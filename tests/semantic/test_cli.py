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


def test_validate_names_a_file_it_cannot_read_without_a_traceback(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A cube file that is not UTF-8, or nested deeper than the parser recurses, was a
    UnicodeDecodeError / RecursionError traceback (so were the RFM rules beside the cubes);
    each is a MODEL_INVALID naming the file."""
    for name, content in (
        ("latin.yml", b"name: caf\xe9\ntitle: \xff\n"),
        ("deep.yml", b"[" * 100_000),
    ):
        folder = tmp_path / name.removesuffix(".yml")
        folder.mkdir()
        (folder / name).write_bytes(content)
        (folder / "rules").mkdir()
        (folder / "rules" / "rfm.yml").write_bytes(content)  # the RFM rules beside it
        out = run_cdms(cli_env, "semantic", "validate", "--models", str(folder))
        assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        lines = out.stderr.strip().splitlines()
        assert lines and all(line.startswith("error[MODEL_INVALID]: ") for line in lines), lines
        assert f"{name}:" in out.stderr and "rfm.yml:" in out.stderr, out.stderr
