"""The cube result cache: least-recently-used eviction by size, oversized answers not kept."""

from __future__ import annotations

from dataclasses import dataclass

from semantic.cache import ENTRY_OVERHEAD, ResultCache


@dataclass(frozen=True)
class Answer:
    size: int


def test_evicts_the_least_recently_used_past_the_size_budget() -> None:
    cache: ResultCache[Answer] = ResultCache(max_bytes=4 * (1000 + ENTRY_OVERHEAD))
    keys = [("db", f"q{i}") for i in range(5)]
    for k in keys[:4]:
        cache.put(k, Answer(1000))
    assert len(cache) == 4
    assert cache.get(keys[0]) == Answer(1000)  # q0 is now the most recently used
    cache.put(keys[4], Answer(1000))
    assert cache.get(keys[1]) is None  # the least recently used went
    assert all(cache.get(k) is not None for k in (keys[0], keys[2], keys[3], keys[4]))


def test_an_answer_over_a_quarter_of_the_budget_is_not_kept() -> None:
    cache: ResultCache[Answer] = ResultCache(max_bytes=40_000)
    cache.put(("db", "big"), Answer(10_000))
    assert cache.get(("db", "big")) is None and len(cache) == 0
    cache.put(("db", "small"), Answer(100))
    assert cache.get(("db", "small")) == Answer(100)
    cache.clear()
    assert len(cache) == 0
