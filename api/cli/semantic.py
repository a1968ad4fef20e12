"""``cdms semantic``: check the cube model, (re)build its rollups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from api.cli.common import app_engine, console, err_console, progress

app = typer.Typer(help="The semantic (cube) model.", no_args_is_help=True)


@app.command("validate")
def validate(
    models: Path = typer.Option(
        None, "--models", help="Folder of cube YAML files (default: the shipped model)."
    ),
) -> None:
    """Load and validate the cube model and the RFM rules beside it (``rules/rfm.yml``);
    print every issue (file:line) and exit 1 if any."""
    from semantic.loader import MODELS_DIR
    from semantic.validate import check

    folder = models or MODELS_DIR
    if not folder.is_dir():
        raise typer.BadParameter(f"not a folder: {folder}", param_hint="--models")
    model, issues = check(folder)
    rules_file = folder / "rules" / "rfm.yml"
    if rules_file.is_file():  # the RFM rule table beside the cube model
        from semantic import rfm

        issues += rfm.read(rules_file)[1]
    for issue in issues:
        err_console.print(
            f"error[MODEL_INVALID]: {issue}", markup=False, highlight=False, soft_wrap=True
        )
    if issues:
        raise typer.Exit(1)
    members = sum(len(c.dimensions) + len(c.measures) for c in model.cubes)
    rollups = sum(len(c.pre_aggregations) for c in model.cubes)
    console.print(f"model ok: {len(model.cubes)} cubes, {members} members, {rollups} rollups")


@app.command("rollups")
def rollups(
    force: bool = typer.Option(False, "--force", help="Rebuild even if current."),
    explain: bool = typer.Option(
        False,
        "--explain",
        help="Build nothing; report each rollup's compression (fact rows per rollup row) and "
        "hits (queries that read it), and whether it pays for itself.",
    ),
) -> None:
    """Build the declared rollups in schema dw_rollup (normally done after each ETL run)."""
    from semantic.rollups import build_all
    from semantic.validate import default_model

    model = default_model()
    engine = app_engine()
    if explain:
        _explain(engine, model)
        return
    total = sum(len(c.pre_aggregations) for c in model.cubes)
    with progress() as bar:
        task = bar.add_task("building rollups", total=total)
        built = build_all(engine, model, force=force, on_done=lambda _: bar.advance(task))
    for b in built:
        console.print(f"{b.name}: {b.rows} rows in {b.seconds:.2f}s")
    if not built:
        console.print("every rollup is current")


def _explain(engine: Any, model: Any) -> None:
    from rich.table import Table

    from semantic.rollup_report import explain

    table = Table("rollup", "rows", "fact rows", "compression", "hits", "built", "verdict")
    for r in explain(engine, model):
        built = r.built_at.strftime("%Y-%m-%d %H:%M") if r.built_at else "-"
        table.add_row(
            r.name,
            f"{r.rows:,}",
            f"{r.source_rows:,}",
            f"{r.compression:,.1f}x",
            f"{r.hits:,}",
            built,
            r.verdict,
        )
    console.print(table)
