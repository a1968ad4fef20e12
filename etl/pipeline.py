"""The pipeline: every step of a run, declared in one place, in order, with its inputs.

=============  =========================================  ==================================
step           reads                                      writes
=============  =========================================  ==================================
dim_customer   dw.dim_customer_source (app.customers)     dw.dim_customer, dw.etl_touched,
                                                          dw.fact_delta (re-keyed facts)
dim_product    dw.dim_product_source (app.products)       dw.dim_product, dw.etl_touched, ...
fact_sales     dw.fact_sales_source (app.order_items ...) dw.fact_sales, dw.etl_touched,
                                                          dw.fact_delta
fact_orders    ...                                        ...
fact_returns
fact_feedback
fact_support
fact_stock_daily
fact_customer_  dw.fact_orders (loaded just before),      dw.fact_customer_rfm
  rfm           semantic/models/rules/rfm.yml
publish        the facts, dw.etl_touched, dw.fact_delta,  dw_rollup.* (rollups), dw.fact_delta
               the cube model                             (consumed),
                                                          dw.etl_state.version (cache), NOTIFY,
                                                          bi.* (if published, on a model change)
features       the facts and dimensions, dw.etl_touched   ml.order_features, ticket_features
scoring        the feature tables, ml.model_version,      ml.order_predictions,
               dw.etl_touched                             ml.ticket_predictions,
                                                          ml.customer_predictions
=============  =========================================  ==================================

The load steps are ``etl.steps.STEPS`` (``etl.runner``: each one transaction, in which its
writes, its watermark, its run-log row and the facts it touched commit together). Each step
after the load keeps the last run whose changes it applied in ``dw.etl_applied``, advanced
in the transaction that applies them, and redoes only what the load touched since: the
rollup rows the changed facts fall in (their deltas added up; the buckets of the touched
days re-aggregated for a rollup that cannot add up), the features and predictions of the
touched orders
and tickets (everything after a full load, a step that re-read a whole table, or the first
time). A run that stops between two steps therefore leaves the next run to catch up, by
construction rather than by retry.

``publish`` is the rollups and the cache in one transaction: it brings the rollups up to
the facts (``semantic.rollups.refresh``), bumps the warehouse version (which cached cube
results and rollup freshness key on, so readers switch to the new rollups and away from
cached results at once) and sends
``NOTIFY cdms_etl_done`` with the warehouse status (``etl.status``). It comes before the
features and scoring so that cubes see new data first; a new order has its predictions
from online features meanwhile (``ml.online``).

Nothing joins the pipeline by being imported: this module composes the ETL's load, the
semantic layer's rollups and the ML feature tables and stored predictions, and is the only
place that does (``ml`` and ``semantic`` import nothing from ``etl``).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.errors import CdmsError
from db.locks import LockBusyError
from etl import runner
from etl.errors import StepFailedError
from etl.load import Counts
from etl.runner import Observer, RunResult, Silent
from etl.status import UPDATED_CHANNEL, warehouse_status
from etl.steps import DIM_STEPS, FACT_STEPS, STEPS
from etl.steps import Step as LoadStep
from ml import feature_table, stored, stored_customers
from semantic import bi, rollup_delta, rollups
from semantic.rollup_delta import DeltaSources
from semantic.validate import default_model


@dataclass(frozen=True)
class Work:
    """What a step after the load has to apply: the runs since the last it applied."""

    since: int  # the last run it applied (0: never)
    whole: bool  # redo everything: a full load, a table re-read whole, or the first time
    changed_steps: frozenset[str]  # the load steps that changed dw since
    touched: dict[str, list[tuple[int, int]]]  # fact step -> (key, date_key) touched since

    @property
    def changed(self) -> bool:
        """A load step changed dw since."""
        return bool(self.changed_steps)

    def keys(self, *facts: str) -> list[int]:
        return sorted({k for f in facts for k, _ in self.touched.get(f, ())})


@dataclass
class Context:
    url: str
    engine: Engine
    result: RunResult
    obs: Observer


Apply = Callable[[Context, Connection, Work], Counts]


@dataclass(frozen=True)
class Step:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    # a step after the load: what it does, in the transaction that marks it applied
    # (None: a load step, run by etl.runner)
    apply: Apply | None = None


def _publish(ctx: Context, conn: Connection, work: Work) -> Counts:
    """Rollups and cache: bring the rollups up to the facts (their deltas added up, or the
    touched buckets re-aggregated) and publish a new version; the BI views again when the
    cube model changed since they were published (last: their locks are held until the
    commit), unless a BI session reads them: then they stay and a later run tries again."""
    if not (work.changed or work.whole):
        return Counts(updated=_republish(ctx, conn))
    previous = runner.version(conn)
    version = runner.bump_version(conn)
    days: dict[str, set[int]] = defaultdict(set)
    for fact, entries in work.touched.items():
        days[_TABLE[fact]].update(d for _, d in entries)
    model = default_model()
    total = sum(len(c.pre_aggregations) for c in model.cubes)
    ctx.obs.step_progress("rollups", 0, total)
    built = rollups.refresh(
        conn,
        model,
        None if work.whole else days,
        previous=previous,
        version=version,
        deltas=DELTA_SOURCES,
    )
    ctx.obs.step_progress("rollups", total, total)
    status = warehouse_status(conn)
    payload = {**status.as_json(), "runId": ctx.result.run_id}
    conn.execute(
        sa.text("SELECT pg_notify(:c, :p)"), {"c": UPDATED_CHANNEL, "p": json.dumps(payload)}
    )
    _record_changes(conn, ctx.result.run_id, version, work, days)
    updated = len(built) + _republish(ctx, conn)
    return Counts(read=sum(len(d) for d in days.values()), updated=updated)


def _republish(ctx: Context, conn: Connection) -> int:
    """The BI views again after a model change: how many. One short attempt at their
    locks (db/locks.py): a BI session idle in a transaction over them never holds up the
    pipeline (probe 7); the run notes it and the next run tries again."""
    try:
        republished = bi.republish_if_changed(conn, default_model())
    except LockBusyError as exc:
        ctx.result.notes.append(f"{exc.message}; a later run republishes them")
        return 0
    return len(republished.views) if republished else 0


MAX_CHANGED_DAYS = 2000  # more days changed in a table than this: recorded as the whole


def _record_changes(
    conn: Connection, run_id: int, version: int, work: Work, days: dict[str, set[int]]
) -> None:
    """What ``version`` changed, for the cube cache (``semantic/scope.py``): the touched
    days of each fact table, every other table a load step of the runs since changed
    whole; everything after a full load or a table re-read whole."""
    changes: dict[str, list[int] | None] | None = None
    if not work.whole:
        changes = {
            t: sorted(d) if len(d) <= MAX_CHANGED_DAYS else None for t, d in days.items() if d
        }
        for step in work.changed_steps:
            table = _TABLE[step]
            if table not in changes or step not in _FACT_STEPS:
                changes[table] = None
    conn.execute(
        sa.text(
            "INSERT INTO dw.etl_version (version, run_id, changes)"
            " VALUES (:v, :r, CAST(:c AS jsonb))"
        ),
        {"v": version, "r": run_id, "c": json.dumps(changes)},
    )


def _features(ctx: Context, conn: Connection, work: Work) -> Counts:
    """The features of the touched orders and tickets; predictions whose features changed
    or whose object is gone are forgotten (the scoring step scores them again)."""
    touched = {
        "dw.fact_orders": work.keys("fact_orders", "fact_sales"),
        "dw.fact_support": work.keys("fact_support"),
    }
    if work.whole:
        done = [feature_table.refresh(conn)]
    else:
        done = [feature_table.refresh(conn, touched)]
        # a fact table whose newest key still has no features (a warehouse loaded before
        # the feature tables, a lost row): every fact without features
        if feature_table.lacking(conn):
            done.append(feature_table.refresh(conn, {}, missing=True))
    for t in feature_table.TABLES:
        changed = [k for d in done for k in d[t.name].changed]
        stored.forget(conn, t.fact, changed, touched.get(t.fact, ()))
    # customers whose histories changed (all of them after a full load)
    stored_customers.forget(conn, None if work.whole else touched["dw.fact_orders"])
    return Counts(
        read=sum(len(k) for k in touched.values()),
        inserted=sum(r.inserted for d in done for r in d.values()),
        updated=sum(len(r.changed) for d in done for r in d.values()),
    )


def _scoring(ctx: Context, conn: Connection, work: Work) -> Counts:
    """Store the predictions of the touched orders and tickets that lack one (by the models
    this process serves: ``ml.serving``), in chunks of their own transactions."""
    from db.engine import make_engine
    from ml.serving import store_for

    keys = None
    if not work.whole:
        keys = {
            "dw.fact_orders": work.keys("fact_orders", "fact_sales"),
            "dw.fact_support": work.keys("fact_support"),
        }
        if not any(keys.values()):
            return Counts()
    active = {
        str(n): int(v)
        for n, v in conn.execute(sa.text("SELECT name, version FROM ml.model_version WHERE active"))
    }
    if not active:
        return Counts()  # nothing to score with (and no model listener to start)
    # the process's models, on its shared engine (a server's are already loaded)
    store = store_for(make_engine(ctx.url))
    if store.loaded() != active:
        store.reload()  # an activation its listener has not heard yet
    scorers = [store.get(name) for name in store.loaded()]
    day = conn.execute(sa.text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar_one()
    loaded = store.loaded()
    checked = (day, *(loaded.get(m) for m in stored.CUSTOMERS.models))
    customers = None  # every current customer: the day's first look, or a new version's
    if keys is not None and _CUSTOMERS_CHECKED.get(ctx.url) == checked:
        customers = _customers_since(conn, keys["dw.fact_orders"], work.since)
    at_most = DAY_CUSTOMERS if keys is not None and customers is None else None
    to_score: dict[str, int] = {}  # per table: the objects it scores (customers: at most the cap)

    def progress(table: str, done: int, total: int) -> None:
        to_score[table] = total
        ctx.obs.step_progress(f"scoring {table}", done, total)

    written = stored.refresh(
        ctx.engine,
        keys=keys,
        scorers=scorers,
        customers=customers,
        customers_at_most=at_most,
        progress=progress,
    )
    # fewer customers lacking than the cap: every one is scored (the written predictions are
    # customers x models, so they cannot tell)
    if customers is None and (at_most is None or to_score.get(stored.CUSTOMERS.table, 0) < at_most):
        _CUSTOMERS_CHECKED[ctx.url] = checked
    return Counts(inserted=sum(written.values()))


# per database: the (UTC day, order_value and churn_risk versions) for which this process has
# looked at every current customer's predictions; later runs that day look only at the
# customers they moved
_CUSTOMERS_CHECKED: dict[str, tuple[object, ...]] = {}
# A new UTC day (or model version) leaves every customer's stored predictions stale:
# an incremental run scores at most this many of them, and the next runs go on until none
# is left (meanwhile the others are computed on request, the same answer). All 100,000 in
# one run took ~13 s: the first run after midnight held the lag for as long.
DAY_CUSTOMERS = 2_000


def _customers_since(conn: Connection, orders: list[int], since: int) -> list[int]:
    """The customers whose predictions runs after ``since`` can have made lacking: those of
    the touched orders (their histories changed: the features step forgot them) and those
    with a new current version (new customers, a new customer_key)."""
    rows = conn.execute(
        sa.text(
            "SELECT customer_id FROM dw.fact_orders WHERE order_id = ANY(:orders)"
            " UNION SELECT customer_id FROM dw.dim_customer WHERE is_current AND run_id > :since"
        ),
        {"orders": orders, "since": since},
    )
    return sorted(int(r[0]) for r in rows)


_TABLE = {s.name: s.table for s in STEPS}
# what the load records in dw.fact_delta (etl.load): the rollups add those up
DELTA_SOURCES = DeltaSources(
    facts=frozenset(s.table for s in FACT_STEPS),
    dimensions=frozenset(s.table for s in DIM_STEPS),
)
_FACTS = tuple(s.table for s in STEPS if s.name.startswith("fact_"))
_TOUCHED = "dw.etl_touched"
_DELTA = rollup_delta.DELTAS


def _delta_output(step: LoadStep) -> tuple[str, ...]:
    """The load steps that record fact deltas: the facts, and the dimensions (re-keys)."""
    return (_DELTA,) if step in (*FACT_STEPS, *DIM_STEPS) else ()


# what the feature queries read (ml/sql/orders.sql, tickets.sql)
_FEATURE_INPUTS = (*_FACTS, "dw.dim_customer", "dw.dim_product", "dw.dim_date")

PIPELINE: tuple[Step, ...] = (
    *(Step(s.name, s.reads, (s.table, _TOUCHED, *_delta_output(s))) for s in STEPS),
    Step(
        "publish",
        inputs=(*_FACTS, _TOUCHED, _DELTA),
        outputs=(
            "dw_rollup.*",
            "dw.etl_state.version",
            f"NOTIFY {UPDATED_CHANNEL}",
            "bi.* (after a model change)",
        ),
        apply=_publish,
    ),
    Step(
        "features",
        inputs=(*_FEATURE_INPUTS, _TOUCHED),
        outputs=("ml.order_features", "ml.ticket_features", "ml.customer_predictions (forgotten)"),
        apply=_features,
    ),
    Step(
        "scoring",
        inputs=("ml.order_features", "ml.ticket_features", "ml.model_version", _TOUCHED),
        outputs=("ml.order_predictions", "ml.ticket_predictions", "ml.customer_predictions"),
        apply=_scoring,
    ),
)
AFTER_LOAD: tuple[Step, ...] = tuple(s for s in PIPELINE if s.apply is not None)


def run(
    url: str,
    *,
    full: bool = False,
    wait: bool = False,
    check: bool = True,
    observer: Observer | None = None,
) -> RunResult:
    """One run of the whole pipeline. Raises a CdmsError subclass (the run is logged as
    failed): EtlBusyError (CONFLICT) when another run holds the lock and ``wait`` is
    False, StepFailedError, MissingDimensionError, CheckFailedError."""
    obs: Observer = observer or Silent()
    engine = runner.etl_engine(url)
    t0 = time.perf_counter()
    with runner.advisory_lock(url, wait=wait):
        result = runner.start(engine, full=full)
        try:
            runner.load(engine, result, obs, len(PIPELINE))
            if check:
                runner.check(engine, result, obs)
            ctx = Context(url, engine, result, obs)
            for step in AFTER_LOAD:
                _after_load(ctx, step)
            _prune(engine)
            runner.finish(engine, result)
        except BaseException as exc:
            runner.fail(engine, result.run_id, exc)
            raise
    result.seconds = time.perf_counter() - t0
    return result


def _after_load(ctx: Context, step: Step) -> None:
    assert step.apply is not None
    position = PIPELINE.index(step) + 1
    ctx.obs.step_started(step.name, position - 1, len(PIPELINE))
    t = time.perf_counter()
    started: datetime | None = None
    run_id = ctx.result.run_id
    try:
        with runner.transaction(ctx.engine) as conn:
            started = runner.now(conn)
            counts = step.apply(ctx, conn, _work(conn, step.name, run_id))
            conn.execute(
                sa.text(
                    "INSERT INTO dw.etl_applied (step, run_id) VALUES (:s, :r)"
                    " ON CONFLICT (step) DO UPDATE SET run_id = :r, applied_at = now()"
                ),
                {"s": step.name, "r": run_id},
            )
            runner.record_step(conn, run_id, step.name, position, started, None, None, counts)
    except CdmsError as exc:
        _record_failed(ctx, step, position, started, runner.step_error(exc))
        raise
    except sa.exc.DBAPIError as exc:
        _record_failed(ctx, step, position, started, runner.step_error(exc))
        raise StepFailedError(
            f"{step.name} failed and was rolled back: {runner.first_line(exc)}"
        ) from exc
    seconds = time.perf_counter() - t
    ctx.result.steps.append(runner.StepResult(step.name, counts, seconds))
    ctx.obs.step_finished(step.name, counts, seconds)


def _record_failed(
    ctx: Context, step: Step, position: int, started: datetime | None, message: str
) -> None:
    try:
        with ctx.engine.begin() as conn:
            runner.record_step(
                conn,
                ctx.result.run_id,
                step.name,
                position,
                started or runner.now(conn),
                None,
                None,
                Counts(),
                error=message[:4000],
            )
    except sa.exc.SQLAlchemyError:
        pass


_LOAD_STEPS = [s.name for s in STEPS]
_FACT_STEPS = [s.name for s in STEPS if s.name.startswith("fact_")]


def _work(conn: Connection, step: str, run_id: int) -> Work:
    """What ``step`` has to apply: the load's changes of the runs after the last it applied,
    up to ``run_id``."""
    since = conn.execute(
        sa.text("SELECT run_id FROM dw.etl_applied WHERE step = :s"), {"s": step}
    ).scalar()
    lo = 0 if since is None else int(since)
    whole, changed = conn.execute(
        sa.text(
            """
            SELECT bool_or(r.mode = 'full'
                           OR (s.step = ANY(:facts) AND s.watermark_from IS NULL
                               AND s.rows_inserted + s.rows_updated + s.rows_deleted > 0)),
                   array_agg(DISTINCT s.step) FILTER (
                       WHERE s.step = ANY(:load)
                         AND s.rows_inserted + s.rows_updated + s.rows_deleted > 0)
            FROM dw.etl_run AS r JOIN dw.etl_run_step AS s USING (run_id)
            WHERE r.run_id > :lo AND r.run_id <= :hi
            """
        ),
        {"lo": lo, "hi": run_id, "facts": _FACT_STEPS, "load": _LOAD_STEPS},
    ).one()
    touched: dict[str, list[tuple[int, int]]] = defaultdict(list)
    if not whole:
        rows = conn.execute(
            sa.text(
                "SELECT fact, key_id, date_key FROM dw.etl_touched"
                " WHERE run_id > :lo AND run_id <= :hi"
            ),
            {"lo": lo, "hi": run_id},
        )
        for fact, key, day in rows:
            touched[str(fact)].append((int(key), int(day)))
    return Work(lo, since is None or bool(whole), frozenset(changed or ()), dict(touched))


STEP_LOG_DAYS = 7  # dw.etl_run_step, dw.etl_version rows kept (runs are kept: lineage)


def _prune(engine: Engine) -> None:
    """Drop the touched facts every step after the load has applied, and the per-step run
    log older than STEP_LOG_DAYS (under a steady write load a run every second or two
    writes ten of those rows)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                DELETE FROM dw.etl_run_step WHERE run_id < (
                    SELECT min(run_id) FROM dw.etl_run
                    WHERE started_at > now() - make_interval(days => :days))
                """
            ),
            {"days": STEP_LOG_DAYS},
        )
        conn.execute(
            sa.text(
                "DELETE FROM dw.etl_version"
                " WHERE published_at < now() - make_interval(days => :days)"
            ),
            {"days": STEP_LOG_DAYS},
        )
        conn.execute(
            sa.text(
                """
                DELETE FROM dw.etl_touched WHERE run_id <= (
                    SELECT CASE WHEN count(*) = :n THEN min(run_id) END
                    FROM dw.etl_applied WHERE step = ANY(:steps))
                """
            ),
            {"n": len(AFTER_LOAD), "steps": [s.name for s in AFTER_LOAD]},
        )
