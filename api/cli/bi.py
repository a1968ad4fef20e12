"""``cdms bi``: the cube model as SQL views for BI tools, and their read-only login role."""

from __future__ import annotations

import typer

from api.cli.common import app_engine, console, progress

app = typer.Typer(help="Access for BI tools over PostgreSQL (docs/bi.md).", no_args_is_help=True)


@app.command("publish")
def publish() -> None:
    """Create (or refresh) schema bi, one view per cube, and the login role CDMS_BI_ROLE
    that may read bi and nothing else. Idempotent; run it again after a model change (the
    ETL also does once bi is published)."""
    from api.settings import Settings
    from semantic import bi
    from semantic.validate import default_model

    settings = Settings.from_env()
    model = default_model()
    engine = app_engine()
    with progress() as bar:
        task = bar.add_task("publishing bi views", total=len(model.cubes) + 1)
        with engine.begin() as conn:
            done = bi.publish(conn, model, settings.bi_role, settings.bi_password)
            bar.advance(task, len(model.cubes) + 1)
    console.print(
        f"schema bi: {len(done.views)} views ({', '.join(done.views)}); "
        f"readable by {', '.join(done.readers)}; model {done.fingerprint[:12]}"
    )
    for warning in done.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if settings.bi_password is None:
        console.print(
            f"role {settings.bi_role} has no password (CDMS_BI_PASSWORD unset): "
            "it logs in only where pg_hba.conf trusts it"
        )
