"""Puts what each ``cube`` field ran into the response's ``extensions.cube``: the SQL and
its parameters, the rollups used, the warehouse version and freshness (last successful
ETL run), whether the cache answered, and the time taken."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any

from strawberry.extensions import SchemaExtension

_reports: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "cube_reports", default=None
)


def report(entry: dict[str, Any]) -> None:
    """Called by the ``cube`` resolver; a no-op when the extension is not installed."""
    reports = _reports.get()
    if reports is not None:
        reports.append(entry)


class CubeExtensions(SchemaExtension):
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
