"""``cdms etl ...``: load the warehouse, check it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from api.cli.common import console, progress, resolve_url

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
        self.hooks: dict[str, TaskID] = {}

    def step_started(self, step: str, index: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task("loading", total=total)
        self.progress.update(self.task, description=f"loading {step}")

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

    def hook_progress(self, what: str, done: int, total: int | None) -> None:
        """A post-load hook's work (rollups, stored predictions): a bar per thing it does."""
        task = self.hooks.get(what)
        if task is None:
            task = self.hooks[what] = self.progress.add_task(f"  {what}", total=total)
        self.progress.update(task, completed=done, total=total)


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
    """Load changes since the last run (or everything with --full), then check."""
    from etl.runner import run as run_etl

    url = resolve_url()
    bars = _Bars()
    with bars.progress:
        result = run_etl(url, full=full, wait=wait, check=check, observer=bars)
    total = sum(s.counts.inserted + s.counts.updated + s.counts.deleted for s in result.steps)
    console.print(
        f"etl run [bold]{result.run_id}[/] ({result.mode}) succeeded in {result.seconds:.2f} s: "
        f"{total:,} row change(s), warehouse version {result.version}"
    )


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


def load_on_startup(url: str) -> None:
    """The ``cdms serve`` step after seeding: bring dw up to date (incremental, checked)."""
    from etl.runner import run as run_etl

    bars = _Bars()
    with bars.progress:
        result = run_etl(url, wait=True, observer=bars)
    console.print(
        f"warehouse loaded (run {result.run_id}, version {result.version}, {result.seconds:.2f} s)"
    )
