"""Post-load callbacks: other packages (semantic/ rollups, caches) register here.

    from etl.hooks import after_load

    @after_load
    def refresh_rollups(engine: Engine, run: LoadInfo) -> None: ...

Callbacks run in registration order after every successful run (full or incremental),
outside the ETL's transactions; one that raises marks the run failed (error[ETL_HOOK_FAILED]).
A long one reports its progress with :func:`report` (the CLI shows it as a bar).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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


Reporter = Callable[[str, int, int | None], None]  # (what, done, total or None)
_reporter: ContextVar[Reporter | None] = ContextVar("cdms_etl_hook_reporter", default=None)


def report(what: str, done: int, total: int | None) -> None:
    """Progress of a callback's work (``what``: e.g. "scoring ml.order_predictions"), for
    whoever runs the ETL (``cdms etl run`` shows a bar); nothing when nobody listens."""
    fn = _reporter.get()
    if fn is not None:
        fn(what, done, total)


@contextmanager
def reporting(fn: Reporter) -> Iterator[None]:
    """Route :func:`report` to ``fn`` while the callbacks run."""
    token = _reporter.set(fn)
    try:
        yield
    finally:
        _reporter.reset(token)
