"""The cube result cache: least-recently-used eviction by size (an entry counts its key
too), oversized answers and questions not kept."""

from __future__ import annotations

from dataclasses import dataclass

from semantic.cache import ENTRY_OVERHEAD, MAX_QUESTION_BYTES, ResultCache, footprint


@dataclass(frozen=True)
class Answer:
    size: int
    question: int = 0  # the part of size that is not the answer

    @property
    def answer_size(self) -> int:
        return self.size - self.question


def test_evicts_the_least_recently_used_past_the_size_budget() -> None:
    keys = [("db", f"q{i}") for i in range(5)]
    cache: ResultCache[Answer] = ResultCache(
        max_bytes=4 * (1000 + footprint(keys[0]) + ENTRY_OVERHEAD)
    )
    for k in keys[:4]:
        cache.put(k, Answer(1000))
    assert len(cache) == 4 and cache.held == cache.max_bytes
    assert cache.get(keys[0]) == Answer(1000)  # q0 is now the most recently used
    cache.put(keys[4], Answer(1000))
    assert cache.get(keys[1]) is None  # the least recently used went
    assert all(cache.get(k) is not None for k in (keys[0], keys[2], keys[3], keys[4]))


def test_an_answer_over_a_quarter_of_the_budget_is_not_kept() -> None:
    cache: ResultCache[Answer] = ResultCache(max_bytes=40_000)
    assert not cache.put(("db", "big"), Answer(10_000))
    assert cache.get(("db", "big")) is None and len(cache) == 0
    cache.put(("db", "small"), Answer(100))
    assert cache.get(("db", "small")) == Answer(100)
    cache.clear()
    assert len(cache) == 0


def test_the_key_counts_against_the_budget() -> None:
    key = ("db", "x" * 20_000)  # a question spelling many filter values
    cache: ResultCache[Answer] = ResultCache(max_bytes=1_000_000)
    assert cache.put(key, Answer(100))
    assert cache.held == footprint(key) + 100 + ENTRY_OVERHEAD > 20_000


def test_a_question_over_the_cap_is_not_kept_whatever_the_budget() -> None:
    cache: ResultCache[Answer] = ResultCache(max_bytes=1 << 30)
    huge = ("db", "x" * MAX_QUESTION_BYTES)
    assert not cache.keyable(huge)
    assert not cache.put(huge, Answer(100)) and len(cache) == 0
    # bound values and SQL count as question too, however short the key
    assert not cache.put(("db", "q"), Answer(MAX_QUESTION_BYTES + 100, MAX_QUESTION_BYTES))
    # a large answer to a small question is kept
    assert cache.put(("db", "q"), Answer(10 * MAX_QUESTION_BYTES, 100))
    assert len(cache) == 1
