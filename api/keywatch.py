"""The watch on open WebSockets' API keys: one lookup per key and interval in a process,
shared by every socket of that key.

A socket of an API key waits on its key's watch (:meth:`KeyWatch.watching`). The watch
looks the key up in the database every ``max(CDMS_APIKEY_CACHE_SECONDS, MIN_INTERVAL_S)``
seconds, never from the process's key cache (an entry there may be a whole window old, so a
watch answered by it kept a revoked key's socket up to twice the window), and tells every
socket of the key at once when it finds the key revoked. So a revoked key's sockets close
within that interval of the revocation (and the lookup's own time), and the watch costs the
database one transaction per key and interval in a process whatever the number of its
sockets: a watch per socket, polling at most 5 times a second, made 100 idle sockets of one
key 920 transactions a second with the cache at 0, taking no rate-limit token.

What the watch finds active is remembered in the key cache (``api.apikeys.remember``), as
any lookup; what it finds revoked is forgotten there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from api.apikeys import find_active, forget, remember
from db.errors import CdmsError

log = logging.getLogger("cdms.api.keywatch")

# the shortest interval between two lookups of a watched key, whatever
# CDMS_APIKEY_CACHE_SECONDS says (0: every request looks its key up, a socket every second)
MIN_INTERVAL_S = 1.0


@dataclass(eq=False)
class _Watched:
    key_id: int
    token: str
    revoked: asyncio.Event = field(default_factory=asyncio.Event)
    sockets: int = 0  # sockets watching it
    task: asyncio.Task[None] | None = None


class KeyWatch:
    """The keys of one process's open sockets, each looked up every :attr:`every` seconds
    while a socket of it is open."""

    def __init__(self, engine: Engine, cache_s: float) -> None:
        self.engine = engine
        self.cache_s = cache_s  # CDMS_APIKEY_CACHE_SECONDS
        self.every = max(MIN_INTERVAL_S, cache_s)
        # by event loop too: a task and an event belong to their loop (tests run several)
        self._watched: dict[tuple[asyncio.AbstractEventLoop, int], _Watched] = {}

    @contextlib.asynccontextmanager
    async def watching(self, key_id: int, token: str) -> AsyncIterator[asyncio.Event]:
        """An event set once key ``key_id`` (secret ``token``) is found revoked; its watch
        runs while a socket is within this context."""
        where = (asyncio.get_running_loop(), key_id)
        entry = self._watched.get(where)
        if entry is None:
            entry = self._watched[where] = _Watched(key_id, token)
            entry.task = asyncio.create_task(self._poll(entry), name=f"API key {key_id} watch")
        entry.sockets += 1
        try:
            yield entry.revoked
        finally:
            entry.sockets -= 1
            if not entry.sockets:
                del self._watched[where]
                if entry.task is not None:
                    entry.task.cancel()

    async def _poll(self, entry: _Watched) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            # a lookup starts every `every` s (a slow one delays the next, never bunches them)
            due = max(due + self.every, loop.time())
            await asyncio.sleep(due - loop.time())
            try:
                found = await run_in_threadpool(find_active, self.engine, entry.token)
            except CdmsError:
                continue  # the database is away: operations say so; looked up again next time
            except Exception:  # the watch must go on: else its sockets stay open unwatched
                log.exception("looking API key %s up for its sockets failed", entry.key_id)
                continue
            if found is None:
                forget(entry.key_id)  # this process's requests refuse it at once too
                entry.revoked.set()
                return
            remember(self.engine, entry.token, found, self.cache_s)
