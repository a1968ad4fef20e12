"""``cdms ml ...``: train, list, activate and score the prediction models."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from api.cli.common import app_engine, console, progress, resolve_url, task_per_key

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

app = typer.Typer(
    help="Prediction models: train, list, activate, store their predictions;"
    " the prediction log's retention.",
    no_args_is_help=True,
)


def score_stored(engine: Engine, models: list[str] | None = None) -> dict[str, int]:
    """``ml.stored.refresh`` with a bar per table, then one line: predictions written
    (object x model) per table, seconds."""
    import time

    from ml.stored import refresh

    started = time.perf_counter()
    with progress() as bars:
        report = task_per_key(bars, lambda table: f"scoring {table}")
        written = refresh(engine, models=models, progress=report)
    seconds = time.perf_counter() - started
    console.print(
        "stored predictions: "
        + ", ".join(f"{table} {n:,} predictions" for table, n in written.items())
        + f" written in {seconds:.1f} s",
        soft_wrap=True,
    )
    return written


def train_models(url: str, names: list[str], *, force: bool = False) -> None:
    """Train, evaluate, export and register ``names``: one bar over the models, one over
    the phases of the model in hand (the fit advances per tree), a line per model with the
    time of each phase and its metric against the baseline."""
    import time

    from rich.progress import TaskID

    from db.engine import make_engine
    from ml.registry import register
    from ml.specs import spec
    from ml.train import FeatureCache, train

    specs = [spec(n) for n in names]  # unknown names fail before any work
    engine = make_engine(url)
    cache = FeatureCache()  # the two order models share one feature query
    activated: list[str] = []
    with progress() as bars:
        models = bars.add_task("training", total=len(specs))
        for s in specs:
            bars.update(models, description=f"training {s.name} ({s.algorithm})")
            phase = bars.add_task(f"  {s.name}: features", total=None)

            def report(
                name: str, done: int, total: int, model: str = s.name, task: TaskID = phase
            ) -> None:
                label = {"features": "feature query", "fit": "fit (trees)"}.get(name, name)
                shown = None if name == "features" and not done else total  # a query: no steps
                bars.update(task, description=f"  {model}: {label}", completed=done, total=shown)

            trained = train(engine, s, cache=cache, progress=report)
            bars.update(phase, description=f"  {s.name}: register", completed=0, total=None)
            started = time.perf_counter()
            result = register(engine, trained, force=force)
            registered = time.perf_counter() - started
            bars.remove_task(phase)
            m, t = trained.metrics, trained.seconds
            metric = s.headline_metric
            base = m.get(f"baseline_{metric}")
            bars.console.print(
                f"  {s.name} v{result.version}: {metric} {trained.headline:.4f}"
                + (f" (baseline {base:.4f})" if base is not None else "")
                + f", {trained.row_count:,} training / {trained.test_row_count:,} test rows,"
                f" {len(trained.onnx) / 1e6:.1f} MB, {t['total'] + registered:.1f} s"
                f" (features {t['features']:.1f}, fit {t['fit']:.1f},"
                f" evaluate {t['evaluate']:.1f}, export {t['export']:.1f},"
                f" register {registered:.1f}) - "
                + ("[green]activated[/]" if result.activated else "[yellow]not activated[/]")
                + f" ({result.reason})"
            )
            if result.activated:
                activated.append(s.name)
            bars.advance(models)
    if activated:
        console.print(f"storing the predictions of {', '.join(activated)} (new active versions)")
        score_stored(engine, activated)
    else:
        console.print("no version activated: stored predictions unchanged")


@app.command("train")
def train_cmd(
    model: list[str] = typer.Option(
        None, "--model", help="Model to train (repeatable; default: all four)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Activate the new version even if its headline metric is worse."
    ),
) -> None:
    """Train models on the warehouse, evaluate them on the newest 20%, register them.

    A version that is activated then scores every order and ticket (stored predictions,
    as `cdms ml score`); one that is not (its metric is worse) scores nothing."""
    from api.extras import require
    from ml.specs import SPECS

    require("train", "cdms ml train")
    train_models(resolve_url(), list(model or SPECS), force=force)


@app.command("list")
def list_cmd(
    model: str | None = typer.Option(None, "--model", help="Only this model's versions."),
) -> None:
    """Every registered version, newest first, with its metrics."""
    from rich.table import Table

    from ml.registry import list_versions
    from ml.specs import spec

    if model is not None:
        spec(model)
    with app_engine().connect() as conn:
        versions = list_versions(conn, model)
    if not versions:
        console.print("no models registered (run: cdms ml train)")
        return
    table = Table("model", "version", "active", "algorithm", "trained at", "rows", "metrics")
    for v in versions:
        keys = ("macro_f1", "roc_auc", "accuracy") if v.classes else ("mae", "rmse", "r2")
        shown = [
            f"{k} {v.metrics[k]:.4f} (baseline {v.metrics[f'baseline_{k}']:.4f})"
            for k in keys
            if v.metrics.get(k) is not None and v.metrics.get(f"baseline_{k}") is not None
        ]
        table.add_row(
            v.name,
            str(v.version),
            "yes" if v.active else "",
            v.algorithm,
            f"{v.trained_at:%Y-%m-%d %H:%M:%S}",
            f"{v.row_count:,}",
            "\n".join(shown),
        )
    console.print(table)


@app.command("activate")
def activate_cmd(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to activate (e.g. an older one)."),
) -> None:
    """Make VERSION the active one of NAME (validated first; servers swap at once), then
    store its predictions of every order or ticket (as `cdms ml score --model NAME`)."""
    from ml.registry import activate
    from ml.specs import spec

    spec(name)
    engine = app_engine()
    activate(engine, name, version)
    console.print(f"{name} version {version} is active; storing its predictions")
    score_stored(engine, [name])


@app.command("score")
def score_cmd(
    model: list[str] = typer.Option(
        None, "--model", help="Only this model's predictions (repeatable; default: all)."
    ),
) -> None:
    """Store the predictions of every order and ticket that has none by its model's active
    version (ml.order_predictions, ml.ticket_predictions; normally done after each ETL run
    and activation). Rows already current are left alone: a second run writes nothing."""
    from ml.specs import spec

    names = [spec(n).name for n in model] if model else None  # unknown names fail first
    score_stored(app_engine(), names)


@app.command("prune-log")
def prune_log_cmd(
    days: int | None = typer.Option(
        None,
        min=1,
        max=36_500,  # ml.prediction_log.MAX_RETENTION_DAYS (its import would load psycopg)
        help="Delete predictions logged more than DAYS days ago, 1 to 36500"
        " (default CDMS_PREDICTION_LOG_DAYS, 90).",
    ),
) -> None:
    """Apply the prediction log's retention now (the server also does it once an hour)."""
    import psycopg

    from db.config import to_libpq_url
    from ml.prediction_log import prune, retention_days

    keep = days if days is not None else retention_days()
    if keep == 0:
        console.print("CDMS_PREDICTION_LOG_DAYS is 0: the prediction log keeps everything")
        return
    with (
        console.status(f"deleting predictions logged more than {keep} days ago"),
        psycopg.connect(to_libpq_url(resolve_url()), autocommit=True) as conn,
    ):
        deleted = prune(conn, keep)
    console.print(f"prediction log: {deleted:,} rows older than {keep} days deleted")
