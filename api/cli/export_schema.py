"""``cdms export-schema``: write the GraphQL SDL to schema/schema.graphql."""

from __future__ import annotations

from pathlib import Path

import typer

from api.cli.common import console
from db.errors import CdmsError


class StaleSchemaError(CdmsError):
    code = "STALE_SCHEMA"


def schema_path() -> Path:
    import schema as schema_pkg

    return Path(schema_pkg.__file__).parent / "schema.graphql"


def schema_sdl() -> str:
    from strawberry.printer import print_schema

    from schema.app import schema

    return print_schema(schema) + "\n"


def export_schema(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Where to write (default: schema/schema.graphql)."
    ),
    check: bool = typer.Option(
        False, "--check", help="Only check that the file is up to date (fails if stale)."
    ),
) -> None:
    """Write the GraphQL schema (SDL) that the API serves."""
    target = output or schema_path()
    sdl = schema_sdl()
    if check:
        # compared as bytes: a file that is not UTF-8 text is stale, not a decoding error
        current = target.read_bytes() if target.exists() else b""
        if current != sdl.encode("utf-8"):
            raise StaleSchemaError(f"{target} is stale: run cdms export-schema")
        console.print(f"{target} is up to date")
        return
    target.write_text(sdl, encoding="utf-8")
    console.print(f"wrote {target} ({len(sdl.splitlines())} lines)")
