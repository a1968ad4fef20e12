"""The prediction log: each distinct prediction served, written in batches off the request path.

A row is a prediction by a model version for an object (or a what-if input) served to a
principal: the key is (model, version, entity, entity id, actor, features hash), the hash a
digest of the input row the model scored (``ml.batch.digests``). A re-read of the same
prediction by the same principal adds nothing, so the log grows with the distinct
predictions served, not with the read rate (migration 0026: a unique index, and the insert
``ON CONFLICT DO NOTHING``); a new model version, changed features, a new what-if input or
another principal add a row.

A what-if's input is the client's own, so each distinct one is a row; a principal's what-ifs
beyond ``what_if_budget`` distinct inputs an hour (per process) are counted in
``over_budget`` and not logged (a warning says so once an hour).

Requests only append tuples to a bounded in-memory buffer (``PredictionLog.add``: a lock, a
set lookup per row and a list extend, no I/O); a row this process has already queued (a set
of the keys' hashes, cleared when it holds ``seen_capacity`` and at each retention tick) is
not queued again. A daemon thread flushes the buffer every ``interval`` seconds, or sooner
once ``batch`` rows wait, on a connection of its own (so reads stay in their read-only
transactions): one ``COPY`` into a temporary table, then one ``INSERT … ON CONFLICT DO
NOTHING`` (another process, or this one after a restart, may have logged the same row).
When the buffer is full (``capacity`` rows: the database is slow or gone), new rows are
dropped and counted in ``dropped``; a failed flush drops its batch and counts it too, and
forgets its keys (a later read logs them) (the log is an audit aid, never a reason to fail
or slow a read). ``close`` flushes what is left; ``close_logs`` (at exit, and when the model
store of a database is closed) closes every log of the process.

Retention: ``CDMS_PREDICTION_LOG_DAYS`` (default 90; 0 keeps everything; at most 36,500). The same
thread deletes older rows soon after it starts and then once an hour (:func:`prune`, in
batches, through the ``(model, requested_at)`` index); ``cdms ml prune-log`` does it
on demand. A prediction still served after its row was deleted is logged again.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import threading
import time
from collections.abc import Sequence
from operator import itemgetter

import psycopg
from pydantic import Field
from sqlalchemy.engine import Engine

from db.config import EnvSettings, read_env, to_libpq_url

log = logging.getLogger("cdms.ml.log")

# model, version, entity, entity_id, label, probability, value, actor, requested_at,
# features_hash (16 bytes: ml.batch.digests)
Row = tuple[
    str, int, str, int | None, str | None, float | None, float | None, str, dt.datetime, bytes
]
COLUMNS = (
    "model", "model_version", "entity", "entity_id", "label", "probability", "value",
    "actor", "requested_at", "features_hash",
)  # fmt: skip
TYPES = (
    "text", "int4", "text", "int8", "text", "float8", "float8", "text", "timestamptz", "bytea",
)  # fmt: skip
# a row's identity in the log (the unique index of 0026): all but the answer and the time
_KEY = itemgetter(0, 1, 2, 3, 7, 9)

# the staging table of a flush (dropped at its commit) and the insert that skips rows the
# log already holds (the unique index prediction_log_served_once)
_STAGE = (
    "CREATE TEMP TABLE _served (model text, model_version int4, entity text, entity_id int8,"
    " label text, probability float8, value float8, actor text, requested_at timestamptz,"
    " features_hash bytea) ON COMMIT DROP"
)
_INSERT = (
    f"INSERT INTO ml.prediction_log ({', '.join(COLUMNS)})"
    f" SELECT {', '.join(COLUMNS)} FROM _served ON CONFLICT DO NOTHING"
)


DEFAULT_RETENTION_DAYS = 90
# at most a century: past it ``now() - make_interval(days => …)`` leaves the timestamp range
# (and past 2**31 - 1 days make_interval has no bigint form): each prune failed
MAX_RETENTION_DAYS = 36_500
PRUNE_BATCH = 50_000
# distinct what-if inputs logged per principal and hour, per process: a what-if's input is
# the client's, so distinct ones cost it only bytes (30 aliases of ~350 bytes a request
# wrote ~1 byte of log per byte sent, ~12 GB a day on 2 cores); beyond it they are counted
# (``over_budget``), not logged. An hour of it is ~0.4 MB of log.
WHAT_IF_BUDGET = 1_000


class LogSettings(EnvSettings):
    # days of the log to keep (0: keep everything)
    retention_days: int = Field(
        DEFAULT_RETENTION_DAYS,
        ge=0,
        le=MAX_RETENTION_DAYS,
        validation_alias="CDMS_PREDICTION_LOG_DAYS",
    )

    @classmethod
    def from_env(cls) -> LogSettings:
        return read_env(cls)


def retention_days() -> int:
    """``CDMS_PREDICTION_LOG_DAYS``: days of the log to keep (0: keep everything; at most
    MAX_RETENTION_DAYS, else ConfigError)."""
    return LogSettings.from_env().retention_days


def prune(conn: psycopg.Connection[tuple[object, ...]], days: int) -> int:
    """Delete the log's rows older than ``days`` days (in batches of PRUNE_BATCH rows, one
    short transaction each, model by model through the ``(model, requested_at)`` index);
    returns the rows deleted. ``days`` 0 deletes nothing; past MAX_RETENTION_DAYS the server
    refuses the interval (callers bound it: the setting and ``cdms ml prune-log --days``)."""
    if days <= 0:
        return 0
    deleted = 0
    models = [r[0] for r in conn.execute("SELECT DISTINCT model FROM ml.prediction_log")]
    for model in models:
        while True:
            with conn.transaction():
                cur = conn.execute(
                    "DELETE FROM ml.prediction_log WHERE id IN (SELECT id FROM ml.prediction_log"
                    " WHERE model = %s AND requested_at < now() - make_interval(days => %s)"
                    " LIMIT %s)",
                    (model, days, PRUNE_BATCH),
                )
            deleted += cur.rowcount
            if cur.rowcount < PRUNE_BATCH:
                break
    return deleted


class PredictionLog:
    def __init__(
        self,
        url: str,
        *,
        capacity: int = 100_000,
        batch: int = 5_000,
        interval: float = 1.0,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        prune_every: float = 3600.0,
        seen_capacity: int = 200_000,
        what_if_budget: int = WHAT_IF_BUDGET,
    ) -> None:
        self.url = url
        self.capacity = capacity
        self.batch = batch
        self.interval = interval
        self.retention_days = retention_days
        self.prune_every = prune_every
        self.pruned = 0  # rows deleted by the retention
        self._next_prune = time.monotonic() + min(60.0, prune_every)  # not during start-up
        self.dropped = 0  # rows lost: buffer full, or a flush that failed
        self.written = 0  # rows the log did not hold yet
        self.repeated = 0  # rows not queued: this process had queued them already
        self.known = 0  # rows flushed that the log already held (another process's, ...)
        self.over_budget = 0  # what-ifs not logged: their principal's hour was spent
        self.seen_capacity = seen_capacity
        self.what_if_budget = what_if_budget
        self._what_ifs: dict[str, int] = {}  # what-ifs queued this hour, by principal
        self._hour = time.monotonic()
        # hashes of the keys of the rows queued (a set of ints: ~70 bytes a row; Python's
        # string hashing is keyed per process, so no client can aim for a collision)
        self._seen: set[int] = set()
        self._rows: list[Row] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="cdms-ml-log", daemon=True)
        self._thread.start()

    def add(self, rows: Sequence[Row]) -> None:
        """Queue the ``rows`` not queued before (never blocks on the database; drops and
        counts when full)."""
        if not rows:
            return
        with self._lock:
            seen = self._seen
            if len(seen) + len(rows) > self.seen_capacity:
                seen.clear()  # bounded; the log's unique key still skips what it holds
            if time.monotonic() - self._hour >= 3600:
                self._what_ifs.clear()
                self._hour = time.monotonic()
            fresh: list[Row] = []
            for row in rows:
                key = hash(_KEY(row))
                if key in seen:
                    self.repeated += 1
                elif row[2] == "what_if" and not self._spend(row[7]):
                    self.over_budget += 1
                else:
                    seen.add(key)
                    fresh.append(row)
            room = max(self.capacity - len(self._rows), 0)
            if room < len(fresh):
                self.dropped += len(fresh) - room
                seen.difference_update(_keys(fresh[room:]))
                fresh = fresh[:room]
            self._rows.extend(fresh)
            pending = len(self._rows)
        if pending >= self.batch:
            self._wake.set()

    def _spend(self, actor: str) -> bool:
        """Whether ``actor`` may log one more what-if this hour (under ``_lock``)."""
        spent = self._what_ifs.get(actor, 0)
        if spent >= self.what_if_budget:
            return False
        self._what_ifs[actor] = spent + 1
        if spent + 1 == self.what_if_budget:
            log.warning(
                "prediction log: %r logged %d what-if inputs this hour; further ones are"
                " counted, not logged",
                actor[:100],  # %r: a token's sub is the client's text (escaped, one line)
                spent + 1,
            )
        return True

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self) -> int:
        """Write what is buffered now (one COPY, one insert of the rows the log does not
        hold yet); returns the rows written."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                with (
                    psycopg.connect(
                        self.url, autocommit=True, application_name="cdms-ml-log"
                    ) as conn,
                    conn.transaction(),
                    conn.cursor() as cur,
                ):
                    cur.execute(_STAGE)
                    with cur.copy(
                        f"COPY _served ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
                    ) as cp:
                        # binary with declared types: ~0.4 us of CPU per row (text: ~2.5 us),
                        # and the flush runs in the server process, beside the requests
                        cp.set_types(TYPES)
                        for row in rows:
                            cp.write_row(row)
                    cur.execute(_INSERT)
                    written = max(cur.rowcount, 0)
            except psycopg.Error as exc:
                self.dropped += len(rows)
                with self._lock:  # not logged: a later read of them queues them again
                    self._seen.difference_update(_keys(rows))
                log.warning("prediction log: %d rows lost (%s)", len(rows), exc)
                return 0
            self.written += written
            self.known += len(rows) - written
            return written

    def prune_now(self) -> int:
        """Apply the retention now (on a connection of its own); returns rows deleted. The
        process forgets which rows it queued (a row the retention deleted is logged again
        when served again; one the log still holds is skipped by its unique key)."""
        self._next_prune = time.monotonic() + self.prune_every
        with self._lock:
            self._seen.clear()
        if self.retention_days <= 0:
            return 0
        try:
            with psycopg.connect(self.url, autocommit=True, application_name="cdms-ml-log") as conn:
                n = prune(conn, self.retention_days)
        except psycopg.Error as exc:
            log.warning("prediction log: retention not applied (%s)", exc)
            return 0
        self.pruned += n
        return n

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self.pending():
                self.flush()
            if time.monotonic() >= self._next_prune:
                self.prune_now()

    def close(self) -> None:
        """Stop the thread and flush what is left."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()


def _keys(rows: Sequence[Row]) -> list[int]:
    return [hash(_KEY(row)) for row in rows]


_logs: dict[str, PredictionLog] = {}
_logs_lock = threading.Lock()


def log_for(engine: Engine) -> PredictionLog:
    """The process's prediction log for ``engine``'s database (started on first use)."""
    key = engine.url.render_as_string(hide_password=False)
    found = _logs.get(key)
    if found is not None:
        return found
    with _logs_lock:
        found = _logs.get(key)
        if found is None:
            found = _logs[key] = PredictionLog(to_libpq_url(key), retention_days=retention_days())
    return found


def close_key(key: str) -> None:
    """Flush and stop the log of the engine URL ``key`` (rendered with its password)."""
    with _logs_lock:
        found = _logs.pop(key, None)
    if found is not None:
        found.close()


@atexit.register
def close_logs() -> None:
    """Flush every log of the process (at exit: a server's shutdown keeps its rows)."""
    with _logs_lock:
        logs = list(_logs.values())
        _logs.clear()
    for found in logs:
        found.close()
