"""Result cache: keyed by the database, the normalized query and the warehouse version.

The warehouse version (``dw.etl_state.version``) is bumped by every ETL run that changed
``dw``, so a run invalidates every entry by construction; the post-ETL hook also clears
the cache to free memory at once. Entries are evicted least-recently-used, past a number
of entries or a total size (an answer's size is its JSON text's length); an answer larger
than a quarter of the budget is not kept at all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    @property
    def size(self) -> int: ...


V = TypeVar("V", bound=Sized)
Key = tuple[str, str, int]  # (database, normalized query, warehouse version)


class ResultCache(Generic[V]):
    def __init__(self, max_entries: int = 512, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[Key, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Key) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Key, value: V) -> None:
        if value.size > self.max_bytes // 4:
            return
        with self._lock:
            old = self._data.pop(key, None)
            self._bytes -= old.size if old is not None else 0
            self._data[key] = value
            self._bytes += value.size
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self._bytes -= dropped.size

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._data)
