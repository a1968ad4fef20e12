"""One LISTEN connection per process and channel, fanned out to subscribers.

``hub(url, channel)`` returns the process's :class:`NotifyHub`; ``subscribe()`` gives an
asyncio queue of decoded JSON payloads. The listening task starts with the first
subscriber (psycopg async connection, ``LISTEN <channel>``), reconnects with back-off if
the database goes away (notifications sent meanwhile are lost: NOTIFY is not durable),
and stops when the last subscriber leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger("cdms.api.notify")

QUEUE_SIZE = 1_000


class NotifyHub:
    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"listen {self.channel}")
        try:
            await asyncio.wait_for(self.listening.wait(), timeout=10)
            yield queue
        finally:
            self.subscribers.discard(queue)
            if not self.subscribers and self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
                self._task = None
                self.listening.clear()

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.listening.set()
                    delay = 0.2
                    async for note in conn.notifies():
                        self._fan_out(note.payload)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                self.reconnects += 1
                log.warning("LISTEN %s lost (%s); reconnecting in %.1fs", self.channel, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _fan_out(self, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            log.warning("ignoring a non-JSON payload on %s", self.channel)
            return
        for queue in list(self.subscribers):
            if queue.full():  # a subscriber that stopped reading loses its oldest event
                queue.get_nowait()
            queue.put_nowait(event)


_hubs: dict[tuple[str, str, int], NotifyHub] = {}


def hub(url: str, channel: str) -> NotifyHub:
    """The hub for ``channel`` on ``url`` in this process (and this event loop)."""
    key = (url, channel, id(asyncio.get_running_loop()))
    found = _hubs.get(key)
    if found is None:
        found = _hubs[key] = NotifyHub(url, channel)
    return found
