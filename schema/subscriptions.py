"""``orderStatusChanged(customerId)``: status changes by any writer, via NOTIFY.

One LISTEN connection per process and channel (:func:`hub`) fans the notifications out to
the subscribers' asyncio queues; it starts with the first subscriber, reconnects with
back-off when the database drops it (notifications sent meanwhile are lost: NOTIFY is not
durable) and stops with the last one.

A notification is only a hint: PostgreSQL lets any role NOTIFY any channel (even
``cdms_customer``), so its payload is never believed. The hub passes payloads on as text;
a subscription takes from one only an order id (and the customer id, to skip other
customers' changes without a read), and skips a payload it cannot read (a warning, counted
in :attr:`NotifyHub.ignored`). What an event says is read from the database, on the
subscriber's connection and under its row-level security: the order's status-history rows
written since the last one told (the trigger writes one per change, in the transaction
that NOTIFYs; rows before the subscription are not told), dropped unless the subscriber
may read the order, it belongs to the customer subscribed to and the rows go on from the
last status told, one after the other, to the order's status. So a forged notification
tells nothing false, a replayed one nothing twice, and no payload ends a subscription.
Nor is a notification a unit of work: a subscription takes what is queued at once and
reads each order hinted once, in one statement, and what arrives meanwhile or within
:data:`GAP_S` of that read makes one more read at most (:func:`batch`); skipped payloads
are logged once a second with their count (``db.listen``).
The event's ``order`` is read by the statement compiler.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, cast

import psycopg
import sqlalchemy as sa
import strawberry
from psycopg import sql
from sqlalchemy.engine import Connection, Engine

from db.config import to_libpq_url
from db.listen import INTERVAL_S, SkipLog
from schema import types
from schema.catalog import ENTITIES
from schema.context import Info, typed
from schema.enums import OrderStatus
from schema.execute import read_node
from schema.gate import Gates, per_loop, subscription_permits
from schema.scalars import parse_id

log = logging.getLogger("cdms.api.notify")

CHANNEL = "cdms_order_status"
QUEUE_SIZE = 1_000
GAP_S = 0.25  # a subscription's least time between two reads while notifications keep coming


class NotifyHub:
    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.subscribers: set[asyncio.Queue[str]] = set()
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0
        self.skips = SkipLog(log, channel)
        self._flush: asyncio.TimerHandle | None = None
        # queues that overflowed (their payloads dropped): the subscriber reads all again
        self.overflowed: set[asyncio.Queue[str]] = set()

    @property
    def ignored(self) -> int:
        """Notifications skipped: unreadable, or not borne out by the database."""
        return self.skips.total

    def ignore(self, why: str, payload: str, count: int = 1) -> None:
        """Skip a notification (any role may NOTIFY): counted, and logged once an interval
        with the count of those skipped since (db.listen.SkipLog)."""
        self.skips.skip(why, payload, count)
        if self.skips.pending and self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(INTERVAL_S, self._flushed)

    def _flushed(self) -> None:
        self._flush = None
        self.skips.flush()
        if self.skips.pending:  # (a line was written less than an interval ago)
            self._flush = asyncio.get_running_loop().call_later(INTERVAL_S, self._flushed)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue of this channel's payloads, as sent (text: each subscriber reads them)."""
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"listen {self.channel}")
        try:
            await asyncio.wait_for(self.listening.wait(), timeout=10)
            yield queue
        finally:
            self.subscribers.discard(queue)
            self.overflowed.discard(queue)
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
        for queue in list(self.subscribers):
            if queue.full():  # a subscriber that does not keep up: it reads everything again
                dropped = queue.qsize()
                while not queue.empty():
                    queue.get_nowait()
                self.overflowed.add(queue)
                self.ignore(f"{QUEUE_SIZE:,} queued for one subscriber: dropped", "", dropped)
            queue.put_nowait(payload)


BIGINT_MAX = 2**63 - 1


def payload_ints(payload: str, *keys: str) -> tuple[int, ...] | None:
    """The values of ``keys`` in a JSON object payload when each is a positive bigint;
    None when the payload is not such an object (any role may NOTIFY anything)."""
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict):
        return None
    values = [event.get(k) for k in keys]
    if not all(type(v) is int and 0 < v <= BIGINT_MAX for v in values):
        return None
    return tuple(cast(int, v) for v in values)


_hubs: dict[tuple[str, str, int], NotifyHub] = {}


def hub(engine: Engine, channel: str) -> NotifyHub:
    """The hub for ``channel`` on ``engine``'s database in this process (and event loop)."""
    url = to_libpq_url(engine.url.render_as_string(hide_password=False))
    key = (url, channel, id(asyncio.get_running_loop()))
    if key not in _hubs:
        _hubs[key] = NotifyHub(url, channel)
    return _hubs[key]


# engine -> event loop -> the gate of the subscriptions' event handlers
_gates: Gates[asyncio.Semaphore] = weakref.WeakKeyDictionary()


def db_gate(engine: Engine) -> asyncio.Semaphore:
    """How many subscription events of this process may use ``engine``'s pool at once:
    half its connections (at least one). An event holds a permit from its history read
    until its payload is resolved and its connection returned (Context.close); the others
    wait (their notifications stay queued, in order), so that subscriptions never take
    every connection, nor every worker thread with a connection awaited in each, from the
    HTTP requests and each other (docs/security.md). The requests' own gate
    (schema/gate.py) leaves these permits to the events."""
    return per_loop(_gates, engine, lambda: asyncio.Semaphore(subscription_permits(engine)))


ORDER: Any = types.Order | None  # type: ignore[attr-defined]  # generated from the catalog
EVERYONE = frozenset({"admin", "analyst", "service", "customer"})


@strawberry.type(description="An order changed status.")
class OrderStatusEvent:
    order_id: strawberry.ID
    customer_id: strawberry.ID
    from_status: OrderStatus | None
    to_status: OrderStatus
    changed_at: dt.datetime

    @typed(strawberry.field(description="The order as it is now.", graphql_type=ORDER))
    async def order(self, info: Info) -> Any:
        return await read_node(info, ENTITIES["Order"], int(self.order_id))


# each order of the customer and its newest history row, when the subscription begins: the
# changes up to there are not told
_ORDERS = sa.text("SELECT id FROM app.orders WHERE customer_id = :c")
_TOLD = sa.text(
    "SELECT DISTINCT ON (h.order_id) h.order_id, h.id, h.to_status"
    " FROM app.order_status_history AS h JOIN app.orders AS o ON o.id = h.order_id"
    " WHERE o.customer_id = :c ORDER BY h.order_id, h.id DESC"
)
# each order hinted, and its history rows after the last one told (none: one row, h.* null)
_SINCE = sa.text(
    "SELECT o.id AS order_id, o.customer_id, o.status, h.id, h.from_status, h.to_status,"
    " h.changed_at FROM unnest(CAST(:ids AS bigint[]), CAST(:afters AS bigint[])) AS t(id, after)"
    " JOIN app.orders AS o ON o.id = t.id LEFT JOIN app.order_status_history AS h"
    " ON h.order_id = o.id AND h.id > t.after ORDER BY o.id, h.id"
)

Told = dict[int, tuple[int, str | None]]  # order id -> (last history row told, its status)


def _told(customer_id: int) -> Callable[[Connection], Told]:
    return lambda conn: {
        int(o): (int(h), to) for o, h, to in conn.execute(_TOLD, {"c": customer_id})
    }


def _since(
    after: dict[int, int], customer_id: int | None = None, told: Told | None = None
) -> Callable[[Connection], dict[int, list[Any]]]:
    """The rows of :data:`_SINCE` by order, for each order id and the last row told of it
    (one statement for all the orders of a batch of notifications); with ``customer_id``,
    for each of its orders too, from the last row ``told`` of each (notifications were
    dropped: any may have changed)."""

    def read(conn: Connection) -> dict[int, list[Any]]:
        if customer_id is not None:
            for (o,) in conn.execute(_ORDERS, {"c": customer_id}):
                after.setdefault(int(o), (told or {}).get(int(o), (0, None))[0])
        rows: dict[int, list[Any]] = {}
        params = {"ids": list(after), "afters": list(after.values())}
        for r in conn.execute(_SINCE, params):
            rows.setdefault(int(r.order_id), []).append(r)
        return rows

    return read


async def batch(hub: NotifyHub, queue: asyncio.Queue[str], last: float) -> tuple[list[str], bool]:
    """The payloads queued (waiting for one), and whether some were dropped (the queue
    overflowed: the subscriber reads all it watches). A notification is a hint, so whatever
    arrives while the subscriber reads, or within :data:`GAP_S` of its last read (``last``,
    a loop time), makes one more read at most; a flood costs a read per GAP_S."""
    payloads = [await queue.get()]
    wait = last + GAP_S - asyncio.get_running_loop().time()
    if wait > 0:
        await asyncio.sleep(wait)
    while not queue.empty():
        payloads.append(queue.get_nowait())
    overflowed = queue in hub.overflowed
    hub.overflowed.discard(queue)
    return payloads, overflowed


def _status(value: Any) -> OrderStatus | None:
    try:
        return OrderStatus(value)
    except ValueError:
        return None


def _events(
    order_id: int, customer_id: int, told: Told, rows: list[Any]
) -> tuple[list[OrderStatusEvent], str | None]:
    """The changes in ``rows`` (:data:`_SINCE`) not told yet, or why the notification is
    not borne out by them; ``told`` moves past them either way."""
    if not rows:
        return [], None  # an order the subscriber may not read (or gone): as a read
    if rows[0].customer_id != customer_id:
        return [], "the order is another customer's"
    changes = [r for r in rows if r.id is not None]
    if not changes:
        return [], None  # nothing since the last event (told already, or a replay)
    # an order new since the subscription began goes on from its first row
    last = told[order_id][1] if order_id in told else changes[0].from_status
    told[order_id] = (changes[-1].id, rows[0].status)
    events = []
    for r in changes:  # each row goes on from the one before, to a status the API knows
        before, to = _status(r.from_status), _status(r.to_status)
        if r.from_status != last or r.to_status == last or to is None:
            return [], "the order's history does not go on from the last status told"
        last = r.to_status
        if r.from_status is None:
            continue  # the order's first status: written on insert, not a change
        if before is None:
            return [], "a status the API does not know"
        events.append(
            OrderStatusEvent(
                order_id=strawberry.ID(str(order_id)),
                customer_id=strawberry.ID(str(customer_id)),
                from_status=before,
                to_status=to,
                changed_at=r.changed_at,
            )
        )
    if last != rows[0].status:
        return [], "the order's history does not end at its status"
    return events, None


@strawberry.type
class OrderSubscriptions:
    @typed(strawberry.subscription(metadata={"roles": EVERYONE}))
    async def order_status_changed(
        self, info: Info, customer_id: strawberry.ID
    ) -> AsyncGenerator[OrderStatusEvent, None]:
        wanted = parse_id(customer_id, "customerId")
        ctx = info.context
        try:
            # before listening: a change committed in between is told with the next one
            gate = db_gate(ctx.engine)
            await ctx.hold(gate)
            told = await ctx.db.run(_told(wanted))
            await ctx.close()
            notes = hub(ctx.engine, CHANNEL)
            async with notes.subscribe() as queue:
                last = float("-inf")
                while True:
                    after: dict[int, int] = {}  # the orders hinted, each read once
                    payloads, overflowed = await batch(notes, queue, last)
                    for payload in payloads:
                        hint = payload_ints(payload, "order_id", "customer_id")
                        if hint is None:
                            notes.ignore("no order_id and customer_id", payload)
                        elif hint[1] == wanted:  # (another's: skipped; the read decides)
                            after[hint[0]] = told.get(hint[0], (0, None))[0]
                    if not after and not overflowed:
                        continue
                    await ctx.hold(gate)  # released by ctx.close(), below or by the caller
                    rows = await ctx.db.run(_since(after, wanted if overflowed else None, told))
                    await ctx.close()  # no transaction stays open between events
                    last = asyncio.get_running_loop().time()
                    for order_id in after:
                        events, why = _events(order_id, wanted, told, rows.get(order_id, []))
                        if why is not None:
                            notes.ignore(why, f"order {order_id}")
                        for event in events:
                            # its payload is resolved (on a connection of its own) while the
                            # permit is held; the caller closes the context once it is
                            await ctx.hold(gate)
                            yield event
                            await ctx.close()
        finally:
            await ctx.close()
