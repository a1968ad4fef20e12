"""The load of a run: lock, run log, horizon, the load steps (one transaction each), checks.

A run is driven by ``etl.pipeline.run``, which adds the steps after the load (rollups,
cache, features, scoring); this module knows nothing of them. Crash safety: a step's
writes, its ``dw.etl_run_step`` row, its watermark and its ``dw.etl_touched`` entries
commit together, so a run killed anywhere leaves every step either applied or not; the
next run continues from the watermarks (and marks the dead run failed). ``--full``
truncates the warehouse and reloads every step in a single transaction.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db import locks
from db.config import to_libpq_url, to_sqlalchemy_url
from db.errors import CdmsError
from etl import watermarks
from etl.checks import CheckResult, run_checks
from etl.errors import CheckFailedError, EtlBusyError, StepFailedError
from etl.load import NEG_INF, Counts, effective_low, load_fact_full, run_step
from etl.status import DIED, INTERRUPTED
from etl.steps import DIM_STEPS, FACT_STEPS, STEP_NAMES, STEPS, Disposition, Step

APPLICATION_NAME = "cdms-etl"
LOCK_KEYS = (0x636D6473, 0x45544C)  # ('cdms', 'ETL') - two-int advisory lock space


class Observer(Protocol):
    """What a caller (the CLI's progress bars) hears while a run proceeds."""

    def step_started(self, step: str, index: int, total: int) -> None: ...

    def step_finished(self, step: str, counts: Counts, seconds: float) -> None: ...

    def checks_started(self) -> None: ...

    def checks_finished(self, results: list[CheckResult], seconds: float) -> None: ...

    def step_progress(self, what: str, done: int, total: int | None) -> None:
        """A step after the load (rollups, features, scoring) reports its work."""


class Silent:
    def step_started(self, step: str, index: int, total: int) -> None:
        pass

    def step_finished(self, step: str, counts: Counts, seconds: float) -> None:
        pass

    def checks_started(self) -> None:
        pass

    def checks_finished(self, results: list[CheckResult], seconds: float) -> None:
        pass

    def step_progress(self, what: str, done: int, total: int | None) -> None:
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
    notes: list[str] = field(default_factory=list)  # what the run left for a later one

    @property
    def load_steps(self) -> list[StepResult]:
        """The results of the load steps (``steps`` also holds those after the load)."""
        return [s for s in self.steps if s.step in STEP_NAMES]

    @property
    def changes(self) -> int:
        """Rows the load inserted, updated or deleted in dw."""
        return sum(s.counts.inserted + s.counts.updated + s.counts.deleted for s in self.load_steps)

    @property
    def changed(self) -> bool:
        return self.changes > 0


_engines: dict[str, Engine] = {}


def etl_engine(url: str) -> Engine:
    """The ETL's own engine: named in pg_stat_activity, its server sessions notice a
    vanished client within a second even while waiting on a lock, and plan without JIT
    compilation (a run's statements touch few rows but are estimated costly enough for
    it: at 1M orders JIT took 2.7 s of the 4.3 s of fact_stock_daily's rebuild, every run,
    on a server built with LLVM)."""
    engine = _engines.get(url)
    if engine is None:
        engine = sa.create_engine(
            to_sqlalchemy_url(url),
            pool_size=2,
            max_overflow=2,
            pool_pre_ping=True,
            connect_args={
                "application_name": APPLICATION_NAME,
                "options": "-c client_connection_check_interval=1000 -c jit=off",
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
    held = False
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
        held = True
        yield
    finally:
        # Closing the session releases the lock too, but only once the server has ended the
        # backend, after close() returns: a run started at once could still find it taken.
        if held and not conn.closed:
            with suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", LOCK_KEYS)
        conn.close()


def _holder_pid(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    row = conn.execute(
        "SELECT pid FROM dw.etl_run WHERE status = 'running' ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    if row and row[0] is not None:
        return str(row[0])
    row = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = %s AND objid = %s AND objsubid = 2",
        LOCK_KEYS,
    ).fetchone()
    return f"backend {row[0]}" if row else "unknown"


def start(engine: Engine, *, full: bool) -> RunResult:
    """Log a new run (the caller holds the lock) and take its horizon. A reseed (app
    customers or products truncated) turns an incremental run into a full one."""
    full = full or _dimension_source_truncated(engine)
    mode = "full" if full else "incremental"
    run_id = _start_run(engine, mode)
    try:
        with engine.connect() as conn:
            hi = watermarks.horizon(conn)
            conn.execute(
                sa.text("UPDATE dw.etl_run SET horizon = :h WHERE run_id = :r"),
                {"h": hi, "r": run_id},
            )
            conn.commit()
    except BaseException as exc:
        fail(engine, run_id, exc)
        raise
    return RunResult(run_id=run_id, mode=mode, horizon=hi)


def load(engine: Engine, result: RunResult, obs: Observer, total: int = len(STEPS)) -> None:
    """The load steps: each incremental step in its own transaction; a full load in one.
    ``total``: the steps of the whole run, for the observer."""
    if result.mode == "full":
        _full(engine, result, obs, total)
    else:
        for i, step in enumerate(STEPS):
            _incremental_step(engine, result, step, i, obs, total)
    with engine.begin() as conn:
        watermarks.prune_deletes(conn, [s.name for s in FACT_STEPS])


def check(engine: Engine, result: RunResult, obs: Observer) -> None:
    """The data-quality checks, stored with the run; any failure is a CheckFailedError."""
    obs.checks_started()
    tc = time.perf_counter()
    result.checks = run_checks(engine)
    obs.checks_finished(result.checks, time.perf_counter() - tc)
    _store_checks(engine, result.run_id, result.checks)
    failed = [c for c in result.checks if not c.ok]
    if failed:
        raise CheckFailedError(
            f"{len(failed)} data-quality check(s) failed: "
            + "; ".join(c.describe() for c in failed),
            checks=[c.as_json() for c in failed],
        )


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
                " error = :e WHERE status = 'running'"
            ),
            {"e": DIED},
        )
        run_id = conn.execute(
            sa.text("INSERT INTO dw.etl_run (mode, pid) VALUES (:m, :p) RETURNING run_id"),
            {"m": mode, "p": os.getpid()},
        ).scalar_one()
    return int(run_id)


def record_step(
    conn: Connection,
    run_id: int,
    step: str,
    position: int,
    started: datetime,
    lo: datetime | str | None,
    hi: datetime | None,
    counts: Counts,
    *,
    error: str | None = None,
) -> None:
    """The run log's row of one step (a load step, or one after the load: no watermarks)."""
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
            "step": step,
            "pos": position,
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


def now(conn: Connection) -> datetime:
    value = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    assert isinstance(value, datetime)
    return value


def version(conn: Connection) -> int:
    return int(conn.execute(sa.text("SELECT version FROM dw.etl_state")).scalar_one())


def bump_version(conn: Connection) -> int:
    """A new warehouse version (in the caller's transaction); caches over dw key on it."""
    return int(
        conn.execute(
            sa.text("UPDATE dw.etl_state SET version = version + 1 RETURNING version")
        ).scalar_one()
    )


def _store_checks(engine: Engine, run_id: int, results: list[CheckResult]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE dw.etl_run SET checks = CAST(:c AS jsonb) WHERE run_id = :r"),
            {"c": json.dumps([c.as_json() for c in results]), "r": run_id},
        )


def finish(engine: Engine, result: RunResult) -> None:
    """Mark the run succeeded."""
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
        result.version = version(conn)


def fail(engine: Engine, run_id: int, exc: BaseException) -> None:
    """Mark the run failed with ``exc``'s message (best effort: the database may be gone,
    then the next run marks it failed); an interrupt (Ctrl-C) is logged as one, in the
    words the next run uses for a process that died mid-run."""
    if isinstance(exc, KeyboardInterrupt):
        message = INTERRUPTED
    elif isinstance(exc, CdmsError):
        message = exc.message
    else:
        message = f"{type(exc).__name__}: {exc}"
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
        pass


# ---------------------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------------------
@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One REPEATABLE READ transaction: all of a step's statements see one snapshot."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            conn.execute(sa.text("SET LOCAL work_mem = '64MB'"))
            yield conn


def _incremental_step(
    engine: Engine, result: RunResult, step: Step, index: int, obs: Observer, total: int
) -> None:
    obs.step_started(step.name, index, total)
    t = time.perf_counter()
    started: datetime | None = None
    lo: datetime | str = NEG_INF
    try:
        with transaction(engine) as conn:
            started = now(conn)
            lo = watermarks.get(conn, step.name) or NEG_INF
            lo = effective_low(conn, step, lo, result.horizon)
            counts = run_step(conn, step, lo, result.horizon, result.run_id)
            watermarks.advance(conn, step.name, result.horizon, result.run_id)
            _record_load_step(conn, result, step, started, lo, counts)
    except CdmsError as exc:
        _record_failed_step(engine, result, step, started, lo, step_error(exc))
        raise
    except sa.exc.DBAPIError as exc:
        _record_failed_step(engine, result, step, started, lo, step_error(exc))
        raise StepFailedError(f"{step.name} failed and was rolled back: {first_line(exc)}") from exc
    seconds = time.perf_counter() - t
    result.steps.append(StepResult(step.name, counts, seconds))
    obs.step_finished(step.name, counts, seconds)


def first_line(exc: sa.exc.DBAPIError) -> str:
    """The first line of the database's message (the operator's words, never a client's)."""
    return next(iter(str(getattr(exc, "orig", exc)).strip().splitlines()), "")


def step_error(exc: CdmsError | sa.exc.DBAPIError) -> str:
    """A failed step's ``dw.etl_run_step.error``: the operator's message after the code
    etl.status tells clients, ``SQLSTATE 23514: <the database's first line>`` or
    ``error[MISSING_DIMENSION]: <our message>``."""
    if isinstance(exc, CdmsError):
        return f"error[{exc.code}]: {exc.message}"
    state = getattr(exc.orig, "sqlstate", None)
    return f"SQLSTATE {state}: {first_line(exc)}" if state else first_line(exc)


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
            _record_load_step(
                conn, result, step, started or now(conn), lo, Counts(), error=message[:4000]
            )
    except sa.exc.SQLAlchemyError:
        pass


def _record_load_step(
    conn: Connection,
    result: RunResult,
    step: Step,
    started: datetime,
    lo: datetime | str | None,
    counts: Counts,
    *,
    error: str | None = None,
) -> None:
    position = STEPS.index(step) + 1
    record_step(
        conn, result.run_id, step.name, position, started, lo, result.horizon, counts, error=error
    )


def _full(engine: Engine, result: RunResult, obs: Observer, total: int) -> None:
    """Truncate and reload everything in one transaction; watermarks restart at the horizon.
    Facts and (their tables empty) dimensions are read whole, past the horizon too.

    The foreign keys from and to the facts and the facts' secondary indexes are dropped
    first and restored at the end, inside the same transaction (TRUNCATE locks the tables:
    readers wait for the commit). Rows of other tables pointing at the facts (the feature
    tables) stay; those whose fact is gone are deleted, as their ON DELETE CASCADE would
    have, before their foreign keys come back (their owners bring them up to date after)."""
    tables = [
        s.table for s in STEPS if s.disposition in (Disposition.SNAPSHOT, Disposition.MONTHLY)
    ]
    tables += [s.table for s in FACT_STEPS] + [s.table for s in DIM_STEPS] + ["dw.dim_date"]
    try:
        _full_load(engine, result, obs, total, tables)
    except _FullStepFailed as exc:  # rolled back: the failed step's row is written after
        cause = exc.cause
        _record_failed_step(engine, result, exc.step, exc.started, NEG_INF, step_error(cause))
        raise StepFailedError(
            f"{exc.step.name} failed; the full rebuild was rolled back: {first_line(cause)}"
        ) from cause


class _FullStepFailed(Exception):
    """A step of the full load failed: its transaction is to be rolled back first."""

    def __init__(self, step: Step, started: datetime, cause: sa.exc.DBAPIError) -> None:
        super().__init__(step.name)
        self.step, self.started, self.cause = step, started, cause


def _full_load(
    engine: Engine, result: RunResult, obs: Observer, total: int, tables: list[str]
) -> None:
    with transaction(engine) as conn:
        # whole-table hash joins and index builds: give them room (this transaction only)
        conn.execute(sa.text("SET LOCAL work_mem = '128MB'"))
        conn.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
        fks = _fact_foreign_keys(conn)
        _lock_for_full(conn, sorted({*tables, *(fk.table for fk in fks)}))
        for fk in fks:
            conn.execute(sa.text(f'ALTER TABLE {fk.table} DROP CONSTRAINT "{fk.name}"'))
        indexes = _fact_secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(sa.text(f"DROP INDEX {name}"))
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
        watermarks.reset(conn)
        for i, step in enumerate(STEPS):
            obs.step_started(step.name, i, total)
            t = time.perf_counter()
            started = now(conn)
            try:
                if step.disposition is not Disposition.MERGE:
                    counts = run_step(conn, step, NEG_INF, result.horizon, result.run_id)
                else:
                    counts = load_fact_full(conn, step, result.run_id)
            except sa.exc.DBAPIError as exc:
                raise _FullStepFailed(step, started, exc) from exc
            watermarks.advance(conn, step.name, result.horizon, result.run_id)
            _record_load_step(conn, result, step, started, None, counts)
            seconds = time.perf_counter() - t
            result.steps.append(StepResult(step.name, counts, seconds))
            obs.step_finished(step.name, counts, seconds)
        for _, definition in indexes:
            conn.execute(sa.text(definition))
        for fk in fks:
            if fk.table not in tables:
                conn.execute(sa.text(fk.orphans()))
            conn.execute(
                sa.text(f'ALTER TABLE {fk.table} ADD CONSTRAINT "{fk.name}" {fk.definition}')
            )
        conn.execute(
            sa.text("DELETE FROM dw.etl_source_delete WHERE deleted_at < :h"),
            {"h": result.horizon},
        )
        # cached cube results and rollups built before it no longer hold
        bump_version(conn)


FULL_LOCK_WAIT_S = 20.0  # short attempts, for the readers of the warehouse (BI's included)
# then in the queue, briefly: readers that keep it busy between them (each a second or
# so) let it through; readers queue behind it that long at most (the rebuild itself then
# holds them for its whole run)
FULL_LOCK_QUEUE_S = 5.0


def _lock_for_full(conn: Connection, tables: list[str]) -> None:
    """The tables a full load truncates or alters, before it starts. TRUNCATE waits for
    every reader; in the lock queue it would hold up every later one (the API's cubes)
    behind a BI session idle in a transaction over the views (probe 7): short attempts
    instead, then once in the queue for a bounded time (overlapping readers leave no gap
    for a short attempt), then CONFLICT naming who holds them (db/locks.py)."""
    statement = sa.text(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
    locks.attempt(
        conn,
        lambda: conn.execute(statement),
        wait_s=FULL_LOCK_WAIT_S,
        queue_s=FULL_LOCK_QUEUE_S,
        relations=tables,
        what="the full load did not start",
    )


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
        {"tables": [s.table for s in FACT_STEPS]},
    ).all()
    return [(str(n), str(d)) for n, d in rows]


@dataclass(frozen=True)
class ForeignKey:
    table: str
    name: str
    definition: str
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]

    def orphans(self) -> str:
        """DELETE the rows of ``table`` whose parent row does not exist."""
        match = " AND ".join(
            f"p.{pc} = r.{c}" for c, pc in zip(self.columns, self.parent_columns, strict=True)
        )
        return (
            f"DELETE FROM {self.table} AS r WHERE NOT EXISTS"
            f" (SELECT 1 FROM {self.parent} AS p WHERE {match})"
        )


def _fact_foreign_keys(conn: Connection) -> list[ForeignKey]:
    """The foreign keys of the facts and of the tables that point at them: dropped during
    a full load and re-added after it (one validating join each instead of a check per
    row)."""
    rows = conn.execute(
        sa.text(
            """
            SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid),
                   (SELECT array_agg(a.attname::text ORDER BY k.n)
                    FROM unnest(c.conkey) WITH ORDINALITY AS k(att, n)
                    JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.att),
                   c.confrelid::regclass::text,
                   (SELECT array_agg(a.attname::text ORDER BY k.n)
                    FROM unnest(c.confkey) WITH ORDINALITY AS k(att, n)
                    JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.att)
            FROM pg_constraint AS c
            WHERE c.contype = 'f' AND (c.conrelid = ANY(CAST(:tables AS regclass[]))
                                       OR c.confrelid = ANY(CAST(:tables AS regclass[])))
            ORDER BY 1, 2
            """
        ),
        {"tables": [s.table for s in FACT_STEPS]},
    ).all()
    return [
        ForeignKey(str(t), str(n), str(d), tuple(cols), str(parent), tuple(pcols))
        for t, n, d, cols, parent, pcols in rows
    ]
