"""``cdms etl ...``: run the pipeline (load the warehouse and what follows it), check it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from api.cli.common import console, progress, resolve_url, task_per_key

if TYPE_CHECKING:
    from etl.checks import CheckResult
    from etl.load import Counts

app = typer.Typer(
    help="Warehouse load (app -> dw) and its data-quality checks.", no_args_is_help=True
)


class _Bars:
    """Rich progress: one bar over the steps, a line per finished step."""

    def __init__(self) -> None:
        from rich.progress import Progress, TaskID

        self.progress: Progress = progress()
        self.task: TaskID | None = None
        self.parts = task_per_key(self.progress, lambda what: f"  {what}")

    def step_started(self, step: str, index: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task("running", total=total)
        self.progress.update(self.task, description=f"step {step}")

    def step_finished(self, step: str, counts: Counts, seconds: float) -> None:
        assert self.task is not None
        self.progress.console.print(
            f"  {step:<13} read {counts.read:>9,} ins {counts.inserted:>9,} "
            f"upd {counts.updated:>8,} del {counts.deleted:>7,} {seconds:6.2f} s"
        )
        self.progress.advance(self.task)

    def checks_started(self) -> None:
        if self.task is not None:
            self.progress.update(self.task, description="checking")

    def checks_finished(self, results: list[CheckResult], seconds: float) -> None:
        failed = sum(1 for r in results if not r.ok)
        self.progress.console.print(f"  {len(results)} checks, {failed} failed ({seconds:.2f} s)")

    def step_progress(self, what: str, done: int, total: int | None) -> None:
        """A step's work after the load (rollups, stored predictions): a bar per part."""
        self.parts(what, done, total)


@app.command("run")
def run(
    full: bool = typer.Option(
        False, "--full", help="Truncate the warehouse and rebuild it (one transaction)."
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Wait for a run already in progress instead of failing."
    ),
    check: bool = typer.Option(True, help="Run the data-quality checks after the load."),
) -> None:
    """Load changes since the last run (or everything with --full), check them, then
    bring the rollups, features and stored predictions up to date (etl/pipeline.py)."""
    from etl.pipeline import run as run_pipeline

    url = resolve_url()
    bars = _Bars()
    with bars.progress:
        result = run_pipeline(url, full=full, wait=wait, check=check, observer=bars)
    console.print(
        f"etl run [bold]{result.run_id}[/] ({result.mode}) succeeded in {result.seconds:.2f} s: "
        f"{result.changes:,} row change(s), warehouse version {result.version}"
    )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")


@app.command("check")
def check() -> None:
    """Reconcile dw with app and check keys, SCD2 ranges and dim_date; fail on any issue."""
    from etl.checks import run_checks
    from etl.errors import CheckFailedError
    from etl.runner import etl_engine

    url = resolve_url()
    with console.status("checking the warehouse"):
        results = run_checks(etl_engine(url))
    for r in results:
        mark = "[green]ok[/]" if r.ok else "[red]FAILED[/]"
        console.print(f"  {mark}  {r.describe() if not r.ok else r.name}")
    failed = [r for r in results if not r.ok]
    if failed:
        raise CheckFailedError(
            f"{len(failed)} of {len(results)} check(s) failed: "
            + "; ".join(r.describe() for r in failed)
        )
    console.print(f"all {len(results)} checks passed")
