"""Result cache: keyed by the database and the normalized query.

An entry is the answer as of a warehouse version (``dw.etl_state.version``, bumped by every
pipeline run that changed ``dw``), with what it read; ``semantic.service`` serves it at a
later version only when none of the versions since changed what it read
(``semantic/scope.py``), and then re-stamps it with the version it checked. Entries are
evicted least-recently-used past a total size, so the budget bounds the memory the cache
keeps: an entry counts every byte it holds (:func:`footprint`: its key, which spells every
filter value, its bound values, its SQL, its answer, what it read) plus ``ENTRY_OVERHEAD``,
the LRU's own bookkeeping. Not kept at all: an entry whose *question* (all of it but the
answer) is over ``MAX_QUESTION_BYTES`` (answered, computed again when asked again), or
that is over a quarter of the budget. The LRU itself is cachetools'; this module adds the
lock and the size rules.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Generic, Protocol, TypeVar

from cachetools import LRUCache


class Sized(Protocol):
    @property
    def size(self) -> int:
        """The bytes the value keeps (:func:`footprint` of what it holds)."""
        ...

    @property
    def answer_size(self) -> int:
        """The part of ``size`` that is the answer itself (the rest is the question)."""
        ...


V = TypeVar("V", bound=Sized)
Key = tuple[str, str]  # (database, normalized query)
# the LRU's bookkeeping per entry besides its key and value (cachetools' three dict slots
# and order node, the (weight, value) pair): 210 B measured with tracemalloc, rounded up
ENTRY_OVERHEAD = 512
# The largest question (key, bound values, SQL: an entry without its answer) kept. The
# representative cube queries (tests/snapshots) measure 3.5-10 KB, an `in` filter of 100
# ids 17 KB (each bound value costs ~110 B: its value, its parameter name, its SQL
# placeholder); 64 KB, six times the largest, still keeps a filter of ~450 values. Past it
# a question is not a dashboard's, seldom asked twice, and would hold the room of dozens
# of ordinary answers (the hostile probe's: 950 names of ~1 KB, ~2 MB each).
MAX_QUESTION_BYTES = 64 * 1024


def footprint(value: object) -> int:
    """The bytes ``value`` holds: its ``sys.getsizeof`` and, for a container, that of what
    it holds (an object held twice counts twice: an upper bound)."""
    size = sys.getsizeof(value)
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return size
    if isinstance(value, Mapping):
        return size + sum(footprint(k) + footprint(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return size + sum(footprint(v) for v in value)
    return size


class ResultCache(Generic[V]):
    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._data: LRUCache[Key, tuple[int, V]] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda entry: entry[0]
        )
        self._lock = threading.Lock()

    def get(self, key: Key) -> V | None:
        with self._lock:
            entry = self._data.get(key)
        return None if entry is None else entry[1]

    def put(self, key: Key, value: V) -> bool:
        """Keep ``value`` under ``key``, unless it is too large to (then False)."""
        weight = footprint(key) + value.size + ENTRY_OVERHEAD
        if weight - value.answer_size > MAX_QUESTION_BYTES or weight > self.max_bytes // 4:
            return False
        with self._lock:
            self._data[key] = (weight, value)
        return True

    @staticmethod
    def keyable(key: Key) -> bool:
        """Whether an entry under ``key`` could be kept (its key alone is not too large)."""
        return footprint(key) + ENTRY_OVERHEAD <= MAX_QUESTION_BYTES

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    @property
    def held(self) -> int:
        """The bytes the entries keep, as counted against ``max_bytes``."""
        return int(self._data.currsize)

    def __len__(self) -> int:
        return len(self._data)
