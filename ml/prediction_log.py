"""The prediction log: every prediction served, written in batches off the request path.

Requests only append tuples to a bounded in-memory buffer (``PredictionLog.add``: a
lock and a list extend, no I/O); a daemon thread flushes the buffer with one ``COPY``
into ``ml.prediction_log`` every ``interval`` seconds, or sooner once ``batch`` rows
wait, on a connection of its own (so reads stay in their read-only transactions). When
the buffer is full (``capacity`` rows: the database is slow or gone), new rows are
dropped and counted in ``dropped``; a failed flush drops its batch and counts it too
(the log is an audit aid, never a reason to fail or slow a read). ``close`` flushes what
is left; ``close_logs`` (at exit, and when the model store of a database is closed)
closes every log of the process.

Retention: ``CDMS_PREDICTION_LOG_DAYS`` (default 90; 0 keeps everything; at most 36,500). The same
thread deletes older rows soon after it starts and then once an hour (:func:`prune`, in
batches, through the ``(model, requested_at)`` index); ``cdms ml prune-log`` does it
on demand.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import threading
import time
from collections.abc import Sequence

import psycopg
from pydantic import Field
from sqlalchemy.engine import Engine

from db.config import EnvSettings, read_env, to_libpq_url

log = logging.getLogger("cdms.ml.log")

# model, version, entity, entity_id, label, probability, value, actor, requested_at
Row = tuple[str, int, str, int | None, str | None, float | None, float | None, str, dt.datetime]
COLUMNS = (
    "model", "model_version", "entity", "entity_id", "label", "probability", "value",
    "actor", "requested_at",
)  # fmt: skip
TYPES = ("text", "int4", "text", "int8", "text", "float8", "float8", "text", "timestamptz")


DEFAULT_RETENTION_DAYS = 90
# at most a century: past it ``now() - make_interval(days => …)`` leaves the timestamp range
# (and past 2**31 - 1 days make_interval has no bigint form): each prune failed
MAX_RETENTION_DAYS = 36_500
PRUNE_BATCH = 50_000


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
        self.written = 0
        self._rows: list[Row] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="cdms-ml-log", daemon=True)
        self._thread.start()

    def add(self, rows: Sequence[Row]) -> None:
        """Queue ``rows`` (never blocks on the database; drops and counts when full)."""
        if not rows:
            return
        with self._lock:
            room = self.capacity - len(self._rows)
            if room < len(rows):
                self.dropped += len(rows) - max(room, 0)
                rows = rows[: max(room, 0)]
            self._rows.extend(rows)
            pending = len(self._rows)
        if pending >= self.batch:
            self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self) -> int:
        """Write what is buffered now (one COPY); returns the rows written."""
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
                    conn.cursor() as cur,
                    cur.copy(
                        f"COPY ml.prediction_log ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
                    ) as cp,
                ):
                    # binary with declared types: ~0.4 us of CPU per row (text: ~2.5 us), and
                    # the flush runs in the server process, beside the requests
                    cp.set_types(TYPES)
                    for row in rows:
                        cp.write_row(row)
            except psycopg.Error as exc:
                self.dropped += len(rows)
                log.warning("prediction log: %d rows lost (%s)", len(rows), exc)
                return 0
            self.written += len(rows)
            return len(rows)

    def prune_now(self) -> int:
        """Apply the retention now (on a connection of its own); returns rows deleted."""
        self._next_prune = time.monotonic() + self.prune_every
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
