"""Result cache: keyed by the database and the normalized query.

An entry is the answer as of a warehouse version (``dw.etl_state.version``, bumped by every
pipeline run that changed ``dw``), with what it read; ``semantic.service`` serves it at a
later version only when none of the versions since changed what it read
(``semantic/scope.py``), and then re-stamps it with the version it checked. Entries are
evicted least-recently-used past a total size: an answer counts its JSON text's length plus
``ENTRY_OVERHEAD`` (its key and bookkeeping), which also bounds the number of entries; an
answer larger than a quarter of the budget is not kept at all. The LRU itself is
cachetools'; this module adds the lock and the size rule.
"""

from __future__ import annotations

import threading
from typing import Generic, Protocol, TypeVar

from cachetools import LRUCache


class Sized(Protocol):
    @property
    def size(self) -> int: ...


V = TypeVar("V", bound=Sized)
Key = tuple[str, str]  # (database, normalized query)
ENTRY_OVERHEAD = 4096  # bytes counted per entry besides its answer


class ResultCache(Generic[V]):
    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._data: LRUCache[Key, V] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda v: v.size + ENTRY_OVERHEAD
        )
        self._lock = threading.Lock()

    def get(self, key: Key) -> V | None:
        with self._lock:
            return self._data.get(key)

    def put(self, key: Key, value: V) -> None:
        if value.size + ENTRY_OVERHEAD > self.max_bytes // 4:
            return
        with self._lock:
            self._data[key] = value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
