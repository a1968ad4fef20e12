"""Post-load callbacks: other packages (semantic/ rollups, caches) register here.

    from etl.hooks import after_load

    @after_load
    def refresh_rollups(engine: Engine, run: LoadInfo) -> None: ...

Callbacks run in registration order after every successful run (full or incremental),
outside the ETL's transactions; one that raises marks the run failed (error[ETL_HOOK_FAILED]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class LoadInfo:
    run_id: int
    mode: str  # "incremental" | "full"
    version: int  # dw.etl_state.version after the run
    changed: bool  # did the run insert, update or delete anything


AfterLoad = Callable[[Engine, LoadInfo], None]

_callbacks: list[AfterLoad] = []


def after_load(fn: AfterLoad) -> AfterLoad:
    """Register ``fn`` (idempotent: registering the same function twice keeps one)."""
    if fn not in _callbacks:
        _callbacks.append(fn)
    return fn


def remove(fn: AfterLoad) -> None:
    if fn in _callbacks:
        _callbacks.remove(fn)


def registered() -> tuple[AfterLoad, ...]:
    return tuple(_callbacks)
