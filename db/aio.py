"""A small pool of async psycopg connections for one event loop (the API's fast lane).

Why not ``psycopg_pool.AsyncConnectionPool``: it keeps a minimum of connections with
background workers that reconnect with backoff, and a checkout waits (up to its timeout)
while it cannot connect. The API must instead fail fast with SERVICE_UNAVAILABLE while
PostgreSQL is down and recover by itself afterwards. Here nothing runs in the background:
a checkout takes an idle connection or connects (a refused connect fails at once); at most
``size`` connections are out at a time (others wait up to ``timeout`` s, like the
SQLAlchemy pool); a connection comes back only if it is healthy and idle, else it is
closed; :meth:`discard_idle` drops every idle one (after one turned out dead, e.g. the
server restarted). Opened and closed with the app (its lifespan), on the app's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from db.errors import DatabaseUnavailableError


class AsyncPool:
    def __init__(self, conninfo: str, size: int = 10, timeout: float = 30.0) -> None:
        self.conninfo = conninfo
        self.size = size
        self.timeout = timeout
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for one unit of work; it must be idle (no transaction) at the end."""
        if self._closed:
            raise DatabaseUnavailableError("the server is shutting down")
        try:
            await asyncio.wait_for(self._slots.acquire(), self.timeout)
        except TimeoutError:
            raise DatabaseUnavailableError(
                "the server is busy (no database connection free); try again"
            ) from None
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            conn = self._idle.pop() if self._idle else await self._connect()
            yield conn
        finally:
            if conn is not None:
                await self._give_back(conn)
            self._slots.release()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(self.conninfo)
        except psycopg.OperationalError:
            raise DatabaseUnavailableError(
                "the database is unavailable; try again shortly"
            ) from None

    async def _give_back(self, conn: psycopg.AsyncConnection[Any]) -> None:
        healthy = (
            not conn.closed
            and not conn.broken
            and conn.info.transaction_status == TransactionStatus.IDLE
        )
        if healthy and not self._closed and len(self._idle) < self.size:
            self._idle.append(conn)
        else:
            await conn.close()

    async def discard_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def close(self) -> None:
        """Close the idle connections; those still out close when they come back."""
        self._closed = True
        await self.discard_idle()

    @property
    def idle(self) -> int:
        return len(self._idle)
