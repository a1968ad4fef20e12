"""Admission to the database: how many requests of a process may hold a pooled connection
between statements, and how many may wait for that.

A request's reads share one transaction (schema.context.RequestDb): its connection is
taken in a worker thread and kept while the request awaits its next statement, which again
needs a worker thread, as its COMMIT does. Unbounded, more such requests than connections
(a lock wait, a slow cube) left every connection with a request waiting for a thread and
every thread with a request waiting for a connection, until the pool timed out for
everyone (30 s, then 503s; docs/security.md). So a request takes a permit of its engine's
:func:`request_gate` before its first connection of the engine's pool (its reads, a
write) and keeps it until its context closes; waiting for one takes no thread and no
connection. The gates of the requests and of the subscriptions' events
(:func:`subscription_permits`) add up to one connection less than the pool keeps, so a
connection is always left for what takes one for a single call (an API-key lookup, the
rate limiter, ``/healthz``, a write's commit position): every permit holder gets its
connections, and its threads, in turn.

A request waits for a permit at most the pool's timeout, with at most
``CDMS_DB_QUEUE_SIZE`` others: past either, it is refused with ``busy_error()`` (503
``SERVICE_UNAVAILABLE``, Retry-After), as a pool timeout was. The fast read lane
(schema/lane.py) takes no permit: its threads are fewer than its pool's connections and a
read takes and returns its connection within one call, so it waits on nobody.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from db.config import DbSettings
from db.errors import busy_error


class Permits(Protocol):
    """What :meth:`schema.context.Context.hold` takes: a gate or an asyncio.Semaphore."""

    async def acquire(self) -> bool: ...

    def release(self) -> None: ...


def pool_size(engine: Engine) -> int:
    """The connections ``engine``'s pool keeps (its overflow aside)."""
    return engine.pool.size() if isinstance(engine.pool, QueuePool) else 2


def subscription_permits(engine: Engine) -> int:
    """Subscription events using ``engine`` at once: half its pool (at least one)."""
    return max(1, pool_size(engine) // 2)


def request_permits(engine: Engine) -> int:
    """Requests holding ``engine``'s connections at once: what the subscriptions leave of
    its pool, less one (at least one)."""
    return max(1, pool_size(engine) - subscription_permits(engine) - 1)


_Waiter = tuple["asyncio.Future[None]", "str | None", bool]  # (future, key, heavy)


class Gate:
    """At most ``size`` holders; at most ``queue`` waiting, each at most ``wait_s`` seconds
    (else ``busy_error()``). Waiters are served in order, but one principal (a ``key`` of
    :meth:`of`) holds at most ``share`` permits and has at most ``queue_share`` waiting:
    one key's flood of slow requests (a stock cube, ~1 s each) queued every other
    principal's behind it, to a 503 (docs/security.md). No key (the shared demo
    principal): only the totals bound it. And ``heavy`` requests (cube fields: up to the
    statement timeout each) hold at most ``heavy_share`` permits together (half), whoever
    sends them: three analyst keys held every permit, and a customer's order waited 30 s
    for a 503. Within them the same fairness: one key leaves at least one heavy permit to
    the others (2 of 3 by default: alone, it still runs more than one cube at a time) and
    has at most a quarter of the heavy queue waiting (the review of 2026-12-07: one key's
    cubes took every heavy permit, the other analysts' cubes waited to a 503, and two keys
    filled the heavy queue)."""

    def __init__(self, size: int, queue: int, wait_s: float) -> None:
        self.size = size
        self.queue = queue
        self.wait_s = wait_s
        self.share = max(1, size // 2)
        self.queue_share = min(queue, max(1, queue // 4))
        self.heavy_share = max(1, size // 2)  # heavy permits of every key together
        self.heavy_queue = max(1, queue // 2)  # heavy waiters of every key together
        self.heavy_key_share = max(1, self.heavy_share - 1)
        self.heavy_queue_share = max(1, self.heavy_queue // 4)
        self.held = 0
        self.heavy_held = 0
        self.heavy_waiting = 0
        self.held_by: collections.Counter[str] = collections.Counter()
        self.waiting_by: collections.Counter[str] = collections.Counter()
        self.heavy_held_by: collections.Counter[str] = collections.Counter()
        self.heavy_waiting_by: collections.Counter[str] = collections.Counter()
        self._waiters: collections.deque[_Waiter] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def of(self, key: str | None, *, heavy: bool = False) -> Permits:
        """The permits of principal ``key`` (None: bound by the totals only), for a
        ``heavy`` request or not."""
        return _Keyed(self, key, heavy)

    async def acquire(self, key: str | None = None, heavy: bool = False) -> bool:
        # (no waiter fits while a permit is free: _hand_over gives it at once)
        if self.held < self.size and self._fits(key, heavy):
            self._take(key, heavy)
            return True
        if (
            len(self._waiters) >= self.queue
            or (key is not None and self.waiting_by[key] >= self.queue_share)
            or (heavy and self.heavy_waiting >= self.heavy_queue)
            or (heavy and key is not None and self.heavy_waiting_by[key] >= self.heavy_queue_share)
        ):
            raise busy_error()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (waiter, key, heavy)
        self._waiters.append(entry)
        self.heavy_waiting += heavy
        if key is not None:
            self.waiting_by[key] += 1
            if heavy:
                self.heavy_waiting_by[key] += 1
        try:
            self._hand_over()  # (a free permit its key's share kept from the first waiters)
            await asyncio.wait_for(asyncio.shield(waiter), self.wait_s)
        except TimeoutError:
            if not waiter.done():
                self._forget(entry)
                raise busy_error() from None
        except BaseException:  # cancelled: a permit handed over meanwhile goes on
            if waiter.done() and not waiter.cancelled():
                self.release(key, heavy)
            else:
                self._forget(entry)
            raise
        return True  # handed over by _hand_over(): counted in held already

    def release(self, key: str | None = None, heavy: bool = False) -> None:
        self.held -= 1
        self.heavy_held -= heavy
        if key is not None:
            self.held_by -= collections.Counter({key: 1})
            if heavy:
                self.heavy_held_by -= collections.Counter({key: 1})
        self._hand_over()

    def _fits(self, key: str | None, heavy: bool) -> bool:
        if heavy and (
            self.heavy_held >= self.heavy_share
            or (key is not None and self.heavy_held_by[key] >= self.heavy_key_share)
        ):
            return False
        return key is None or self.held_by[key] < self.share

    def _take(self, key: str | None, heavy: bool) -> None:
        self.held += 1
        self.heavy_held += heavy
        if key is not None:
            self.held_by[key] += 1
            if heavy:
                self.heavy_held_by[key] += 1

    def _forget(self, entry: _Waiter) -> None:
        if entry in self._waiters:
            self._waiters.remove(entry)
            self.heavy_waiting -= entry[2]
            if entry[1] is not None:
                self.waiting_by -= collections.Counter({entry[1]: 1})
                if entry[2]:
                    self.heavy_waiting_by -= collections.Counter({entry[1]: 1})

    def _hand_over(self) -> None:
        """Free permits to the first waiters whose principal is under its share."""
        while self.held < self.size:
            entry = next((e for e in self._waiters if self._fits(e[1], e[2])), None)
            if entry is None:
                return
            self._forget(entry)
            self._take(entry[1], entry[2])
            entry[0].set_result(None)


class _Keyed:
    """A gate's permits for one principal (what :meth:`Context.hold` takes)."""

    def __init__(self, gate: Gate, key: str | None, heavy: bool) -> None:
        self.gate = gate
        self.key = key
        self.heavy = heavy

    async def acquire(self) -> bool:
        return await self.gate.acquire(self.key, self.heavy)

    def release(self) -> None:
        self.gate.release(self.key, self.heavy)


T = TypeVar("T")
# engine -> event loop -> a gate. Weak keys, not ids: an engine or a loop gone (an app
# closed, a test's loop ended) could leave its id to a new one, which would then inherit a
# gate whose permits were never given back.
Gates = weakref.WeakKeyDictionary[Engine, "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T]"]


def per_loop(gates: Gates[T], engine: Engine, make: Callable[[], T]) -> T:
    """``gates``' entry for ``engine`` and the running event loop, made on first use."""
    loops = gates.get(engine)
    if loops is None:
        loops = gates[engine] = weakref.WeakKeyDictionary()
    loop = asyncio.get_running_loop()
    gate = loops.get(loop)
    if gate is None:
        gate = loops[loop] = make()
    return gate


_gates: Gates[Gate] = weakref.WeakKeyDictionary()


def request_gate(engine: Engine) -> Gate:
    """The gate of this process's requests (and event loop) using ``engine``'s pool."""

    def make() -> Gate:
        timeout = engine.pool.timeout() if isinstance(engine.pool, QueuePool) else 30.0
        return Gate(request_permits(engine), DbSettings.from_env().queue_size, timeout)

    return per_loop(_gates, engine, make)
