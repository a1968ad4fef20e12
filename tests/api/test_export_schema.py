"""The committed schema/schema.graphql matches the schema the API serves."""

from __future__ import annotations

from pathlib import Path

from api.cli.export_schema import schema_path, schema_sdl
from tests.cli import run_cdms


def test_committed_schema_is_current() -> None:
    assert schema_path().read_text() == schema_sdl(), (
        "schema.graphql is stale: run cdms export-schema"
    )


def test_export_schema_command(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "s.graphql"
    done = run_cdms(cli_env, "export-schema", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == schema_sdl()
    out.write_text("type Query { old: Int }\n")
    stale = run_cdms(cli_env, "export-schema", "-o", str(out), "--check")
    assert stale.returncode == 1
    assert stale.stderr.strip() == f"error[STALE_SCHEMA]: {out} is stale: run cdms export-schema"


def test_check_of_a_file_that_is_not_utf8_says_stale(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """Bytes that are not UTF-8 are not the schema: stale, in one line (a traceback before)."""
    out = tmp_path / "s.graphql"
    out.write_bytes(b"\xff\xfe type Query { old: Int }\n")
    stale = run_cdms(cli_env, "export-schema", "-o", str(out), "--check")
    assert stale.returncode == 1
    assert stale.stderr.strip() == f"error[STALE_SCHEMA]: {out} is stale: run cdms export-schema"
