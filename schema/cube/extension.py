"""``CubeReports``: puts what each ``cube`` field ran into the response's
``extensions.cube``: the SQL and its parameters, the rollups used, the
conformed-time re-targetings, the row count and whether the limit cut the answer, the
warehouse version and freshness (last successful ETL run), the newest shop change the
warehouse holds and the lag in seconds (``etl.status``, read at most every
``STATUS_TTL_S`` per database and process, and at once for an answer of a newer
version), whether the cache answered, and the time taken.

An operation of ``cube`` fields alone never reaches Strawberry: the executor
(``schema.execute``) answers it with ``schema.cube.fast`` and reports the same entries.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from typing import Any

from cachetools import TTLCache
from sqlalchemy.engine import Connection
from strawberry.extensions import SchemaExtension

from db.iso import iso
from etl.status import WarehouseStatus, warehouse_status
from semantic.service import CubeAnswer

STATUS_TTL_S = 0.25  # how old a reported lag may be (the status costs about a millisecond)

_reports: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "cube_reports", default=None
)


def report(entry: dict[str, Any]) -> None:
    """Called by the ``cube`` resolver; a no-op when the extension is not installed."""
    reports = _reports.get()
    if reports is not None:
        reports.append(entry)


_status_cache: TTLCache[str, WarehouseStatus] = TTLCache(maxsize=64, ttl=STATUS_TTL_S)
_status_lock = threading.Lock()


def status_of(conn: Connection, version: int) -> WarehouseStatus:
    """The warehouse's freshness for the report of an answer of warehouse ``version``, read
    in ``conn``'s transaction at most every ``STATUS_TTL_S`` per database, and again when
    the one held predates ``version`` (an answer of a new version never carries the lag
    and newest change of the previous one)."""
    key = conn.engine.url.render_as_string(hide_password=False)
    with _status_lock:
        held = _status_cache.get(key)
    if held is not None and held.version >= version:
        return held
    status = warehouse_status(conn)
    with _status_lock:
        _status_cache[key] = status
    return status


def report_entry(path: str, got: CubeAnswer, status: WarehouseStatus) -> dict[str, Any]:
    newest = status.newest_change_at
    return {
        "path": path,
        "sql": got.sql,
        "params": got.params,
        "rollups": list(got.rollups),
        "retargeted": list(got.retargeted),
        "rows": got.count,
        "truncated": got.truncated,
        "cached": got.cached,
        "warehouseVersion": got.version,
        "freshness": iso(got.freshness) if got.freshness else None,
        "newestChangeAt": iso(newest) if newest else None,
        "lagSeconds": status.lag_seconds,
        "ms": round(got.seconds * 1000, 3),
    }


class CubeReports(SchemaExtension):
    """``extensions.cube``: the reports of the operation's ``cube`` fields."""

    def __init__(self, *, execution_context: Any = None) -> None:
        super().__init__(execution_context=execution_context)
        self.reports: list[dict[str, Any]] = []

    def on_operation(self) -> Iterator[None]:
        self.reports = []
        token = _reports.set(self.reports)
        try:
            yield
        finally:
            _reports.reset(token)

    def get_results(self) -> dict[str, Any]:
        return {"cube": self.reports} if self.reports else {}
