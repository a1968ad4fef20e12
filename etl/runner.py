"""One ETL run: lock, log, horizon, steps (one transaction each), checks, hooks, NOTIFY.

Crash safety: a step's writes, its ``dw.etl_run_step`` row and its watermark commit
together, so a run killed anywhere leaves every step either applied or not; the next run
continues from the watermarks (and marks the dead run failed). ``--full`` truncates the
warehouse and reloads every step in a single transaction.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.config import to_libpq_url, to_sqlalchemy_url
from db.errors import CdmsError
from etl import hooks, watermarks
from etl.checks import CheckResult, run_checks
from etl.errors import CheckFailedError, EtlBusyError, HookFailedError, StepFailedError
from etl.load import NEG_INF, Counts, effective_low, load_fact_full, run_step
from etl.steps import DIM_STEPS, FACT_STEPS, STEPS, Disposition, Step
from ml import feature_table, stored

APPLICATION_NAME = "cdms-etl"
LOCK_KEYS = (0x636D6473, 0x45544C)  # ('cdms', 'ETL') - two-int advisory lock space
NOTIFY_CHANNEL = "cdms_etl_done"


class Observer(Protocol):
    """What a caller (the CLI's progress bars) hears while a run proceeds."""

    def step_started(self, step: str, index: int, total: int) -> None: ...

    def step_finished(self, step: str, counts: Counts, seconds: float) -> None: ...

    def checks_started(self) -> None: ...

    def checks_finished(self, results: list[CheckResult], seconds: float) -> None: ...

    def hook_progress(self, what: str, done: int, total: int | None) -> None: ...


class _Silent:
    def step_started(self, step: str, index: int, total: int) -> None:
        pass

    def step_finished(self, step: str, counts: Counts, seconds: float) -> None:
        pass

    def checks_started(self) -> None:
        pass

    def checks_finished(self, results: list[CheckResult], seconds: float) -> None:
        pass

    def hook_progress(self, what: str, done: int, total: int | None) -> None:
        pass


@dataclass
class StepResult:
    step: str
    counts: Counts
    seconds: float


@dataclass
class RunResult:
    run_id: int
    mode: str
    horizon: datetime
    steps: list[StepResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    version: int = 0
    seconds: float = 0.0
    # rows written to the serving feature tables (ml.order_features, ml.ticket_features)
    features: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(s.counts.changed for s in self.steps)


_engines: dict[str, Engine] = {}


def etl_engine(url: str) -> Engine:
    """The ETL's own engine: named in pg_stat_activity, and its server sessions notice a
    vanished client within a second even while waiting on a lock."""
    engine = _engines.get(url)
    if engine is None:
        engine = sa.create_engine(
            to_sqlalchemy_url(url),
            pool_size=2,
            max_overflow=2,
            pool_pre_ping=True,
            connect_args={
                "application_name": APPLICATION_NAME,
                "options": "-c client_connection_check_interval=1000",
            },
        )
        _engines[url] = engine
    return engine


def dispose(url: str) -> None:
    engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


@contextmanager
def advisory_lock(url: str, *, wait: bool) -> Iterator[None]:
    """Hold the ETL lock for the block; busy and not waiting: EtlBusyError (CONFLICT)."""
    conn = psycopg.connect(
        to_libpq_url(url), autocommit=True, application_name=f"{APPLICATION_NAME} lock"
    )
    try:
        got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEYS).fetchone()
        if not (got and got[0]):
            if not wait:
                raise EtlBusyError(
                    f"another ETL run is in progress (pid {_holder_pid(conn)}); "
                    "wait for it or use --wait",
                    pid=_holder_pid(conn),
                )
            conn.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEYS)
        yield
    finally:
        conn.close()  # ends the session, which releases the lock


def _holder_pid(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    row = conn.execute(
        "SELECT pid FROM dw.etl_run WHERE status = 'running' ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    if row and row[0] is not None:
        return str(row[0])
    row = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = %s AND objid = %s AND objsubid = 2",
        LOCK_KEYS,
    ).fetchone()
    return f"backend {row[0]}" if row else "unknown"


def run(
    url: str,
    *,
    full: bool = False,
    wait: bool = False,
    check: bool = True,
    observer: Observer | None = None,
) -> RunResult:
    """Load ``app`` into ``dw``. Raises a CdmsError subclass (the run is logged as failed)."""
    obs: Observer = observer or _Silent()
    engine = etl_engine(url)
    t0 = time.perf_counter()
    with advisory_lock(url, wait=wait):
        full = full or _dimension_source_truncated(engine)
        run_id = _start_run(engine, "full" if full else "incremental")
        try:
            with engine.connect() as conn:
                hi = watermarks.horizon(conn)
                conn.execute(
                    sa.text("UPDATE dw.etl_run SET horizon = :h WHERE run_id = :r"),
                    {"h": hi, "r": run_id},
                )
                conn.commit()
            result = RunResult(run_id=run_id, mode="full" if full else "incremental", horizon=hi)
            if full:
                _full(engine, result, obs)
            else:
                for i, step in enumerate(STEPS):
                    _incremental_step(engine, result, step, i, obs)
                with _transaction(engine) as conn:
                    due = _features_due(conn, result)
                    result.features = _features(conn) if due else _NO_FEATURES
            with engine.begin() as conn:
                watermarks.prune_deletes(conn, [s.name for s in FACT_STEPS])
            if check:
                obs.checks_started()
                tc = time.perf_counter()
                result.checks = run_checks(engine)
                obs.checks_finished(result.checks, time.perf_counter() - tc)
                _store_checks(engine, run_id, result.checks)
                failed = [c for c in result.checks if not c.ok]
                if failed:
                    raise CheckFailedError(
                        f"{len(failed)} data-quality check(s) failed: "
                        + "; ".join(c.describe() for c in failed),
                        checks=[c.as_json() for c in failed],
                    )
            result.version = _version(engine)
            info = hooks.LoadInfo(run_id, result.mode, result.version, result.changed)
            for fn in hooks.registered():
                try:
                    name = getattr(fn, "__name__", "post-load hook")
                    obs.hook_progress(name.replace("_", " "), 0, None)
                    with hooks.reporting(obs.hook_progress):
                        fn(engine, info)
                except Exception as exc:
                    name = getattr(fn, "__qualname__", repr(fn))
                    raise HookFailedError(
                        f"post-load hook {name} failed: {exc}", hook=name
                    ) from exc
            _finish_run(engine, result)
        except BaseException as exc:
            _fail_run(engine, run_id, exc)
            raise
    result.seconds = time.perf_counter() - t0
    return result


def _dimension_source_truncated(engine: Engine) -> bool:
    """app.customers or app.products was truncated (a reseed) since its dimension loaded:
    the ids now name other entities, so SCD2 history would be fiction - rebuild instead."""
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text(
                    """
                    SELECT EXISTS (
                        SELECT 1 FROM dw.etl_source_delete AS d
                        JOIN dw.etl_watermark AS w ON w.step = 'dim_' || rtrim(d.source, 's')
                        WHERE d.source IN ('customers', 'products') AND d.key_id IS NULL
                          AND d.deleted_at >= w.high_water)
                    """
                )
            ).scalar_one()
        )


# ---------------------------------------------------------------------------------------
# run log
# ---------------------------------------------------------------------------------------
def _start_run(engine: Engine, mode: str) -> int:
    with engine.begin() as conn:
        # We hold the lock: any run still 'running' belongs to a process that died.
        conn.execute(
            sa.text(
                "UPDATE dw.etl_run SET status = 'failed', finished_at = clock_timestamp(),"
                " error = 'interrupted: the process ended before the run finished'"
                " WHERE status = 'running'"
            )
        )
        run_id = conn.execute(
            sa.text("INSERT INTO dw.etl_run (mode, pid) VALUES (:m, :p) RETURNING run_id"),
            {"m": mode, "p": os.getpid()},
        ).scalar_one()
    return int(run_id)


def _record_step(
    conn: Connection,
    run_id: int,
    step: Step,
    started: datetime,
    lo: datetime | str | None,
    hi: datetime,
    counts: Counts,
    *,
    error: str | None = None,
) -> None:
    conn.execute(
        sa.text(
            """
            INSERT INTO dw.etl_run_step (run_id, step, position, status, started_at,
                finished_at, watermark_from, watermark_to, rows_read, rows_inserted,
                rows_updated, rows_deleted, error)
            VALUES (:run, :step, :pos, :status, :started, clock_timestamp(), :lo, :hi,
                    :read, :ins, :upd, :del, :error)
            """
        ),
        {
            "run": run_id,
            "step": step.name,
            "pos": STEPS.index(step) + 1,
            "status": "failed" if error else "succeeded",
            "started": started,
            "lo": None if lo == NEG_INF else lo,
            "hi": hi,
            "read": counts.read,
            "ins": counts.inserted,
            "upd": counts.updated,
            "del": counts.deleted,
            "error": error,
        },
    )


def _now(conn: Connection) -> datetime:
    value = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    assert isinstance(value, datetime)
    return value


def _bump_version(conn: Connection) -> None:
    conn.execute(sa.text("UPDATE dw.etl_state SET version = version + 1"))


def _version(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT version FROM dw.etl_state")).scalar_one())


def _store_checks(engine: Engine, run_id: int, results: list[CheckResult]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE dw.etl_run SET checks = CAST(:c AS jsonb) WHERE run_id = :r"),
            {"c": json.dumps([c.as_json() for c in results]), "r": run_id},
        )


def _finish_run(engine: Engine, result: RunResult) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE dw.etl_run SET status = 'succeeded', finished_at = clock_timestamp()"
                " WHERE run_id = :r"
            ),
            {"r": result.run_id},
        )
        conn.execute(
            sa.text(
                "UPDATE dw.etl_state SET last_success_at = clock_timestamp(), last_run_id = :r"
            ),
            {"r": result.run_id},
        )
        payload = json.dumps(
            {"run_id": result.run_id, "version": result.version, "mode": result.mode}
        )
        conn.execute(sa.text("SELECT pg_notify(:ch, :p)"), {"ch": NOTIFY_CHANNEL, "p": payload})


def _fail_run(engine: Engine, run_id: int, exc: BaseException) -> None:
    message = exc.message if isinstance(exc, CdmsError) else f"{type(exc).__name__}: {exc}"
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE dw.etl_run SET status = 'failed', finished_at = clock_timestamp(),"
                    " error = :e WHERE run_id = :r AND status = 'running'"
                ),
                {"e": message[:4000], "r": run_id},
            )
    except sa.exc.SQLAlchemyError:
        pass  # the database is gone; the next run marks this one failed


# ---------------------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------------------
@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    """One REPEATABLE READ transaction: all of a step's statements see one snapshot."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            conn.execute(sa.text("SET LOCAL work_mem = '64MB'"))
            yield conn


def _incremental_step(
    engine: Engine, result: RunResult, step: Step, index: int, obs: Observer
) -> None:
    obs.step_started(step.name, index, len(STEPS))
    t = time.perf_counter()
    started: datetime | None = None
    lo: datetime | str = NEG_INF
    try:
        with _transaction(engine) as conn:
            started = _now(conn)
            lo = watermarks.get(conn, step.name) or NEG_INF
            lo = effective_low(conn, step, lo, result.horizon)
            counts = run_step(conn, step, lo, result.horizon)
            watermarks.advance(conn, step.name, result.horizon, result.run_id)
            _record_step(conn, result.run_id, step, started, lo, result.horizon, counts)
            if counts.changed:
                _bump_version(conn)
    except CdmsError as exc:
        _record_failed_step(engine, result, step, started, lo, exc.message)
        raise
    except sa.exc.DBAPIError as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        _record_failed_step(engine, result, step, started, lo, first)
        raise StepFailedError(f"{step.name} failed and was rolled back: {first}") from exc
    seconds = time.perf_counter() - t
    result.steps.append(StepResult(step.name, counts, seconds))
    obs.step_finished(step.name, counts, seconds)


def _record_failed_step(
    engine: Engine,
    result: RunResult,
    step: Step,
    started: datetime | None,
    lo: datetime | str,
    message: str,
) -> None:
    try:
        with engine.begin() as conn:
            _record_step(
                conn,
                result.run_id,
                step,
                started or _now(conn),
                lo,
                result.horizon,
                Counts(),
                error=message[:4000],
            )
    except sa.exc.SQLAlchemyError:
        pass


def _full(engine: Engine, result: RunResult, obs: Observer) -> None:
    """Truncate and reload everything in one transaction; watermarks restart at the horizon.

    The facts' foreign keys and secondary indexes are dropped first and restored at the
    end, inside the same transaction (TRUNCATE locks the tables: readers wait for the commit)."""
    tables = [s.table for s in STEPS if s.disposition is Disposition.SNAPSHOT]
    tables += [s.table for s in FACT_STEPS] + [s.table for s in DIM_STEPS] + ["dw.dim_date"]
    tables += [t.name for t in feature_table.TABLES]  # they follow the facts (foreign keys)
    tables += [s.table for s in stored.STORED]  # they follow the feature tables (ml.hooks refills)
    with _transaction(engine) as conn:
        # whole-table hash joins and index builds: give them room (this transaction only)
        conn.execute(sa.text("SET LOCAL work_mem = '128MB'"))
        conn.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
        fks = _fact_foreign_keys(conn)
        for table, name, _ in fks:
            conn.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
        indexes = _fact_secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(sa.text(f"DROP INDEX {name}"))
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
        watermarks.reset(conn)
        for i, step in enumerate(STEPS):
            obs.step_started(step.name, i, len(STEPS))
            t = time.perf_counter()
            started = _now(conn)
            try:
                if step.disposition is not Disposition.MERGE:
                    counts = run_step(conn, step, NEG_INF, result.horizon)
                else:
                    counts = load_fact_full(conn, step)
            except sa.exc.DBAPIError as exc:
                first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
                raise StepFailedError(
                    f"{step.name} failed; the full rebuild was rolled back: {first}"
                ) from exc
            watermarks.advance(conn, step.name, result.horizon, result.run_id)
            _record_step(conn, result.run_id, step, started, None, result.horizon, counts)
            seconds = time.perf_counter() - t
            result.steps.append(StepResult(step.name, counts, seconds))
            obs.step_finished(step.name, counts, seconds)
        for _, definition in indexes:
            conn.execute(sa.text(definition))
        # the feature tables are refilled before their foreign keys come back, as the facts
        result.features = _features(conn)
        for table, name, definition in fks:
            conn.execute(sa.text(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'))
        conn.execute(
            sa.text("DELETE FROM dw.etl_source_delete WHERE deleted_at < :h"),
            {"h": result.horizon},
        )
        _bump_version(conn)


_FEATURE_FACTS = {s.name for s in STEPS if s.table in {t.fact for t in feature_table.TABLES}}
_NO_FEATURES = {t.name: 0 for t in feature_table.TABLES}


def _features_due(conn: Connection, result: RunResult) -> bool:
    """Whether the features step has work: this run inserted orders or tickets, the run
    before it did not succeed (it may have stopped between its facts and its features), or
    a fact table's newest key has no features (e.g. a warehouse loaded before the feature
    tables existed). Otherwise every fact already has its features: the anti-join is skipped."""
    if any(s.counts.inserted for s in result.steps if s.step in _FEATURE_FACTS):
        return True
    previous = conn.execute(
        sa.text("SELECT status FROM dw.etl_run WHERE run_id < :r ORDER BY run_id DESC LIMIT 1"),
        {"r": result.run_id},
    ).scalar()
    if previous != "succeeded":
        return True
    newest = " OR ".join(
        f"(SELECT max({t.key}) FROM {t.fact}) IS DISTINCT FROM (SELECT max({t.key}) FROM {t.name})"
        for t in feature_table.TABLES
    )
    return bool(conn.execute(sa.text(f"SELECT {newest}")).scalar_one())


def _features(conn: Connection) -> dict[str, int]:
    """The last step: features of the facts that have none yet, for serving predictions
    (``ml.feature_table``; the features of an event never change once it is loaded)."""
    try:
        return feature_table.refresh(conn)
    except sa.exc.DBAPIError as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise StepFailedError(f"ml_features failed and was rolled back: {first}") from exc


def _fact_secondary_indexes(conn: Connection) -> list[tuple[str, str]]:
    """(qualified name, CREATE INDEX statement) of the facts' indexes other than their
    primary keys: dropped during a full load and built once after it (a sort each, instead
    of a tree insertion per row)."""
    rows = conn.execute(
        sa.text(
            """
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index AS i
            WHERE i.indrelid = ANY(CAST(:tables AS regclass[]))
              AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c
                              WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
            ORDER BY 1
            """
        ),
        {"tables": [s.table for s in FACT_STEPS] + [t.name for t in feature_table.TABLES]},
    ).all()
    return [(str(n), str(d)) for n, d in rows]


def _fact_foreign_keys(conn: Connection) -> list[tuple[str, str, str]]:
    """(table, constraint, definition) of the facts' and the feature tables' foreign keys:
    dropped during a full load and re-added after it (one validating join each instead of
    a check per row)."""
    rows = conn.execute(
        sa.text(
            """
            SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
            FROM pg_constraint
            WHERE contype = 'f' AND conrelid = ANY(CAST(:tables AS regclass[]))
            ORDER BY 1, 2
            """
        ),
        {"tables": [s.table for s in FACT_STEPS] + [t.name for t in feature_table.TABLES]},
    ).all()
    return [(str(t), str(n), str(d)) for t, n, d in rows]
