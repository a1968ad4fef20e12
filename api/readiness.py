"""``/readyz``: which parts of the server are ready, and whether it should get traffic.

==============  ==========================================================  ======
part            ready when                                                  gates
==============  ==========================================================  ======
``api``         the database answers and is at this code's migration head,  yes
                or at a revision this code does not know (a newer version
                migrated it during a rolling upgrade: expand-then-contract
                keeps it compatible)
``warehouse``   it was loaded once (a run published a version, or           yes
                succeeded); its version, lag and last run state are shown
``models``      each model: an active version is registered                 no
==============  ==========================================================  ======

The ``api`` part is not ready either while the process's pool has had no connection free
(none idle, its overflow used up) on every probe for :data:`BUSY_S` seconds
(``"database": "busy"``): every request then waits out the pool's timeout for a 503. The
probe takes no connection from a pool with none free (it would wait as long): it answers
from what it last read meanwhile.

HTTP 200 when every gating part is ready, 503 (``Retry-After: 5``) before. A server with
no active model is ready (its other fields work) and says so here and in each prediction's
``MODEL_UNAVAILABLE``: in production models come from the ``cdms ml train`` job.

The answer holds no secrets (no error texts, no SQL, no settings) and is computed at most
once a second per process (three index lookups), so it stays open and unlimited like
``/healthz``. In production a caller without a staff token (admin, service, analyst) gets
only the ready flags (:func:`public`): the versions, times and lag tell when the shop last
changed and which code it runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from db.iso import iso
from etl.status import health, warehouse_status
from ml.specs import SPECS

CACHE_S = 1.0
BUSY_S = 5.0  # a pool seen without a free connection this long: not ready
T = TypeVar("T")
_ACTIVE = sa.text("SELECT name, version FROM ml.model_version WHERE active")
_REVISION = sa.text("SELECT version_num FROM alembic_version")


class ReadinessProbe:
    def __init__(self, engine: Engine, head: str, known: frozenset[str]) -> None:
        self.engine = engine
        self.head = head
        self.known = known
        self._lock = threading.Lock()
        self._held: dict[str, tuple[float, Any]] = {}  # what -> (when read, value)
        self._full_since: float | None = None  # first probe that found the pool full

    def _fresh(self, what: str, read: Callable[[], T]) -> T:
        """``read()``, at most CACHE_S old: one caller reads at a time, the others take
        its value (probes poll every second, from every load balancer)."""
        held = self._held.get(what)
        if held is None or time.monotonic() - held[0] >= CACHE_S:
            with self._lock:
                held = self._held.get(what)
                if held is None or time.monotonic() - held[0] >= CACHE_S:
                    held = self._held[what] = (time.monotonic(), read())
        value: T = held[1]
        return value

    def revision(self) -> str | None:
        with self.engine.begin() as conn:  # (COMMIT: see db.replicas.commit_lsn)
            rev = conn.execute(_REVISION).scalar()
            return None if rev is None else str(rev)

    def warehouse(self) -> dict[str, Any] | None:
        """``/healthz``'s warehouse detail, at most CACHE_S old: ``etl.status.health``
        without the error text (the endpoint is open); None when it cannot be read (a
        database at another revision). Raises SQLAlchemyError when the database is away."""
        return self._fresh("warehouse", self._warehouse)

    def _warehouse(self) -> dict[str, Any] | None:
        try:
            with self.engine.begin() as conn:  # (COMMIT: see db.replicas.commit_lsn)
                detail = health(conn)
        except sa.exc.ProgrammingError:  # dw not at this code's revision
            return None
        detail.pop("error", None)
        return detail

    def check(self) -> tuple[dict[str, Any], bool]:
        """(the JSON body, ready), at most CACHE_S old; with a pool that has no connection
        free, the last answer until BUSY_S have passed so, then not ready."""
        if pool_exhausted(self.engine):
            now = time.monotonic()
            if self._full_since is None:
                self._full_since = now
            held = self._held.get("check")
            if now - self._full_since < BUSY_S and held is not None:
                answer: tuple[dict[str, Any], bool] = held[1]
                return answer
            body = {
                "ready": False,
                "api": {"ready": False, "database": "busy"},
                "warehouse": {"ready": False},
                "models": {},
            }
            return body, False
        self._full_since = None
        return self._fresh("check", self._check)

    def _check(self) -> tuple[dict[str, Any], bool]:
        try:
            with self.engine.begin() as conn:  # (COMMIT: see db.replicas.commit_lsn)
                rev = conn.execute(_REVISION).scalar()
                status = warehouse_status(conn)
                active = {str(n): int(v) for n, v in conn.execute(_ACTIVE)}
        except sa.exc.SQLAlchemyError:
            body = {
                "ready": False,
                "api": {"ready": False, "database": "unreachable"},
                "warehouse": {"ready": False},
                "models": {},
            }
            return body, False
        revision = None if rev is None else str(rev)
        api_ready = revision == self.head or (revision is not None and revision not in self.known)
        loaded = status.version > 0 or status.state == "succeeded"  # semantic.service.loaded
        warehouse = {
            "ready": loaded,
            "loading": not loaded,
            "version": status.version,
            "lagSeconds": status.lag_seconds,
            "state": status.state,
            "lastRunAt": None if status.last_run_at is None else iso(status.last_run_at),
            "failures": status.failures,
        }
        models = {
            name: {"ready": name in active, "version": active.get(name)} for name in sorted(SPECS)
        }
        ready = api_ready and loaded
        body = {
            "ready": ready,
            "api": {
                "ready": api_ready,
                "database": "ok",
                "revision": revision,
                "expectedRevision": self.head,
            },
            "warehouse": warehouse,
            "models": models,
        }
        return body, ready


def public(body: dict[str, Any]) -> dict[str, Any]:
    """What ``/healthz`` or ``/readyz`` tells a caller who is not staff, in production: only
    whether each part is up (and a failing load's streak). The rest says when the shop last
    changed (``newestChangeAt``: the newest row any customer wrote, to the microsecond), how
    often it loads (``version``, ``lastRunId``, the lag) and which code runs (the revision):
    GraphQL's ``warehouseStatus`` is for staff only, and so is this."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in {"status", "database", "ready", "loading", "ok", "failures"}:
            out[key] = value
        elif key in {"api", "warehouse"} and isinstance(value, dict):
            out[key] = public(value)
        elif key == "models" and isinstance(value, dict):
            out[key] = {name: {"ready": m.get("ready")} for name, m in value.items()}
    return out


def pool_exhausted(engine: Engine) -> bool:
    """Whether ``engine``'s pool has no connection to give now: none idle, and its overflow
    used up (a checkout would wait, up to the pool's timeout)."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return False
    limit: int = getattr(pool, "_max_overflow", -1)  # (no public accessor; -1: unbounded)
    return limit > -1 and pool.checkedin() == 0 and pool.overflow() >= limit
