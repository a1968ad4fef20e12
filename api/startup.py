"""What ``cdms serve`` does around listening.

Before it listens, only what is quick whatever the data size (:func:`prepare`): the
migrations, and the demo seed when the database is empty (a few seconds at the demo scale).
Everything heavy runs after, in the background (:class:`Background`, in the pipeline's own
process: api.pipeline_process), while the API answers:
the warehouse load (the pipeline, one runner across processes by its advisory lock), the
training of missing models (only where training is on: not in production, where
``cdms ml train`` is a job) and the scoring of what has no stored predictions yet. Until
the warehouse is loaded, cube fields answer ``WAREHOUSE_LOADING``; until a model is
active, its predictions answer ``MODEL_UNAVAILABLE``; ``/readyz`` says which parts are
ready. Each step finds out first whether it has anything to do, so a restart that finds
everything current does no heavy work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from api.cli.common import console
from api.settings import Settings
from db.config import to_libpq_url
from etl.load import Counts
from etl.runner import Silent

TRAIN_LOCK = (0x636D6473, 0x4D4C)  # ('cdms', 'ML'): one process trains at a time


def prepare(url: str, settings: Settings, *, seed_demo: bool = True) -> None:
    """Migrations, and the demo seed of an empty database: before listening."""
    from db.migrate import upgrade

    with console.status("applying migrations"):
        before, after = upgrade(url)
    console.print(
        f"database at revision [bold]{after}[/]" + ("" if before == after else f" (was {before})")
    )
    if seed_demo:
        from api.cli.seed import seed_demo_if_empty

        seed_demo_if_empty(url, settings)


class _Lines(Silent):
    """The pipeline's steps as log lines (a live bar would fight uvicorn's log)."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.report = report

    def step_started(self, step: str, index: int, total: int) -> None:
        self.report(f"warehouse: step {index + 1}/{total} {step}")

    def step_finished(self, step: str, counts: Counts, seconds: float) -> None:
        self.report(
            f"warehouse:   {step} read {counts.read:,} ins {counts.inserted:,}"
            f" upd {counts.updated:,} del {counts.deleted:,} in {seconds:.2f} s"
        )


class Background:
    """The start-up work after listening, in a daemon thread: load the warehouse if
    anything is pending, train the missing models (``train``), score what is unscored;
    then ``then()`` (the continuous scheduler). ``done`` is set when it is over."""

    def __init__(
        self,
        url: str,
        *,
        train: bool,
        report: Callable[[str], None] = console.print,
        then: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.train = train
        self.report = report
        self.then = then
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="cdms-startup", daemon=True)

    def start(self) -> Background:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _main(self) -> None:
        started = time.perf_counter()
        try:
            self._load()
            self._models()
            self.report(f"start-up work done in {time.perf_counter() - started:.1f} s")
        except Exception as exc:  # keep serving: the scheduler retries the load
            self.error = exc
            self.report(f"[yellow]start-up work stopped[/]: {type(exc).__name__}: {exc}")
        finally:
            self.done.set()
            if self.then is not None:
                self.then()

    def _load(self) -> None:
        from etl import runner
        from etl.pipeline import run
        from etl.status import warehouse_status

        with runner.etl_engine(self.url).connect() as conn:
            status = warehouse_status(conn)
        if status.caught_up and status.state == "succeeded":
            self.report(f"warehouse: current (version {status.version})")
            return
        self.report("warehouse: loading in the background (the API is serving already)")
        t = time.perf_counter()
        result = run(self.url, wait=True, check=False, observer=_Lines(self.report))
        self.report(
            f"warehouse: loaded (run {result.run_id}, version {result.version},"
            f" {time.perf_counter() - t:.1f} s)"
        )

    def _models(self) -> None:
        from api.cli.ml import score_stored
        from db.engine import make_engine
        from ml import stored
        from ml.registry import unregistered
        from ml.specs import SPECS

        engine = make_engine(self.url)
        with engine.connect() as conn:
            missing = unregistered(conn, SPECS)
        if missing and not self.train:
            self.report(
                f"[yellow]models: {', '.join(missing)} not registered[/]: training is a job"
                " here (`cdms ml train`); their predictions answer MODEL_UNAVAILABLE until"
                " they are"
            )
        elif missing:  # all on a first start; the rest after one stopped while training
            self._train_once(missing)
        with engine.connect() as conn:
            # index lookups, not a count of every object; the customers' churn risks of a
            # new day are left to the pipeline's runs (etl.pipeline.DAY_CUSTOMERS a run), not
            # scored all at once here (~12 s at 100,000, the first run waiting for it)
            complete = stored.current(conn, customers=False)
        if complete:
            self.report("stored predictions: current")
            return
        score_stored(engine)

    def _train_once(self, names: list[str]) -> None:
        """Train ``names`` unless another process holds the training lock."""
        from api.cli.ml import train_models
        from api.extras import hint, installed
        from ml.errors import InsufficientDataError

        if not installed("train"):
            self.report(
                "[yellow]models not trained[/]: the 'train' extra is not installed"
                f" ({hint('train')}, then `cdms ml train`) - predictions unavailable"
            )
            return
        with psycopg.connect(to_libpq_url(self.url), autocommit=True) as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", TRAIN_LOCK).fetchone()
            if not (row and row[0]):
                self.report("models: another process is training them")
                return
            self.report("models: training in the background (`cdms ml train` in production)")
            t = time.perf_counter()
            try:
                train_models(self.url, names)
            except InsufficientDataError as exc:
                self.report(f"[yellow]models not trained[/]: {exc} - predictions unavailable")
                return
            self.report(f"models: trained in {time.perf_counter() - t:.1f} s")
