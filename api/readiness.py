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

HTTP 200 when every gating part is ready, 503 (``Retry-After: 5``) before. A server with
no active model is ready (its other fields work) and says so here and in each prediction's
``MODEL_UNAVAILABLE``: in production models come from the ``cdms ml train`` job.

The answer holds no secrets (no error texts, no SQL, no settings) and is computed at most
once a second per process (three index lookups), so it stays open and unlimited like
``/healthz``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.status import health, warehouse_status
from ml.specs import SPECS

CACHE_S = 1.0
_ACTIVE = sa.text("SELECT name, version FROM ml.model_version WHERE active")
_REVISION = sa.text("SELECT version_num FROM alembic_version")


class ReadinessProbe:
    def __init__(self, engine: Engine, head: str, known: frozenset[str]) -> None:
        self.engine = engine
        self.head = head
        self.known = known
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, Any], bool] | None = None
        self._health: tuple[float, dict[str, Any] | None] | None = None

    def revision(self) -> str | None:
        with self.engine.begin() as conn:  # (COMMIT: see db.replicas.commit_lsn)
            rev = conn.execute(_REVISION).scalar()
            return None if rev is None else str(rev)

    def warehouse(self) -> dict[str, Any] | None:
        """``/healthz``'s warehouse detail, at most CACHE_S old: ``etl.status.health``
        without the error text (the endpoint is open); None when it cannot be read (a
        database at another revision). Raises SQLAlchemyError when the database is away."""
        now = time.monotonic()
        last = self._health
        if last is not None and now - last[0] < CACHE_S:
            return last[1]
        with self._lock:
            try:
                with self.engine.begin() as conn:  # (COMMIT: see db.replicas.commit_lsn)
                    detail: dict[str, Any] | None = health(conn)
            except sa.exc.ProgrammingError:  # dw not at this code's revision
                detail = None
            if detail is not None:
                detail.pop("error", None)
            self._health = (time.monotonic(), detail)
        return detail

    def check(self) -> tuple[dict[str, Any], bool]:
        """(the JSON body, ready), at most CACHE_S old."""
        now = time.monotonic()
        last = self._last
        if last is not None and now - last[0] < CACHE_S:
            return last[1], last[2]
        with self._lock:
            body, ready = self._check()
            self._last = (time.monotonic(), body, ready)
        return body, ready

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
            "lastRunAt": None if status.last_run_at is None else status.last_run_at.isoformat(),
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
