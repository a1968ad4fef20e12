"""The result cache's budget bounds the memory its entries keep: an entry counts its key,
its bound values, its SQL and its answer, and a question past ``MAX_QUESTION_BYTES`` is
answered but not kept. Measured with tracemalloc on real answers (the hostile probe: a
cube filtered by hundreds of long names, new ones each request)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from semantic import service
from semantic.cache import ResultCache
from semantic.checks import MAX_VALUE_CHARS
from semantic.query import Condition, CubeQuery, Op
from semantic.service import execute
from tests.semantic.conftest import m, mem

BUDGET = 1_000_000


@pytest.fixture
def small_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[ResultCache[service.Computed]]:
    cache: ResultCache[service.Computed] = ResultCache(max_bytes=BUDGET)
    monkeypatch.setattr(service, "CACHE", cache)
    yield cache


def _names(prefix: str, count: int) -> tuple[str, ...]:
    # as long as a cube filter's text may be (semantic.checks.MAX_VALUE_CHARS)
    return tuple(f"{prefix}-{i:04d}-".ljust(MAX_VALUE_CHARS, "x") for i in range(count))


def _ask(wh: Engine, prefix: str, count: int, limit: int) -> None:
    where = Condition(mem("products.name"), Op.IN, _names(prefix, count))
    query = CubeQuery(measures=(m("sales.revenue"),), filters=(where,), limit=limit)
    with wh.connect() as conn:
        execute(conn, query)


def _kept(wh: Engine, count: int, requests: int) -> int:
    """The bytes still allocated after ``requests`` requests of ten cube fields each (limits
    1..10) filtered by ``count`` new names of 254 characters per request."""
    _ask(wh, "warm", 1, 1)  # the process's other once-only state
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for r in range(requests):
            for limit in range(1, 11):
                _ask(wh, f"probe{r}", count, limit)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_huge_filters_do_not_grow_memory_past_the_budget(
    wh: Engine, small_cache: ResultCache[service.Computed]
) -> None:
    # the probe's request (950 names of ~1 KB: now refused) at the longest names taken
    kept = _kept(wh, 950, 4)  # 40 answers of ~240 KB questions
    seen = f"kept {kept:,} B, {len(small_cache)} entries, {small_cache.held:,} B counted"
    assert kept < BUDGET + 500_000, seen  # was 81.6 MB: 41 entries of ~2 MB
    assert small_cache.held <= BUDGET


def test_entries_under_the_cap_count_all_they_keep(
    wh: Engine, small_cache: ResultCache[service.Computed]
) -> None:
    kept = _kept(wh, 80, 8)  # 80 answers of ~20 KB questions: twice the budget
    seen = f"kept {kept:,} B, {len(small_cache)} entries, {small_cache.held:,} B counted"
    assert 0 < len(small_cache) < 80, seen  # kept, and evicted
    assert kept < BUDGET + 500_000, seen  # was 3.6 MB: 81 entries
    assert small_cache.held <= BUDGET
