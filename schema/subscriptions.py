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


class NotifyHub:
    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.subscribers: set[asyncio.Queue[str]] = set()
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0
        self.ignored = 0  # notifications skipped: unreadable, or not borne out by the database

    def ignore(self, why: str, payload: str) -> None:
        """Skip a notification (any role may NOTIFY): a warning, and counted."""
        self.ignored += 1
        log.warning("ignoring a notification on %s (%s): %.200r", self.channel, why, payload)

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
            if queue.full():  # a subscriber that stopped reading loses its oldest event
                queue.get_nowait()
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
_TOLD = sa.text(
    "SELECT DISTINCT ON (h.order_id) h.order_id, h.id, h.to_status"
    " FROM app.order_status_history AS h JOIN app.orders AS o ON o.id = h.order_id"
    " WHERE o.customer_id = :c ORDER BY h.order_id, h.id DESC"
)
# the order, and its history rows after the last one told (none: one row, h.* null)
_SINCE = sa.text(
    "SELECT o.customer_id, o.status, h.id, h.from_status, h.to_status, h.changed_at"
    " FROM app.orders AS o LEFT JOIN app.order_status_history AS h"
    " ON h.order_id = o.id AND h.id > :after WHERE o.id = :id ORDER BY h.id"
)

Told = dict[int, tuple[int, str | None]]  # order id -> (last history row told, its status)


def _told(customer_id: int) -> Callable[[Connection], Told]:
    return lambda conn: {
        int(o): (int(h), to) for o, h, to in conn.execute(_TOLD, {"c": customer_id})
    }


def _since(order_id: int, after: int) -> Callable[[Connection], list[Any]]:
    return lambda conn: list(conn.execute(_SINCE, {"id": order_id, "after": after}))


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
                while True:
                    payload = await queue.get()
                    hint = payload_ints(payload, "order_id", "customer_id")
                    if hint is None:
                        notes.ignore("no order_id and customer_id", payload)
                        continue
                    order_id, customer = hint
                    if customer != wanted:
                        continue  # another customer's (a read decides when it says ours)
                    after = told.get(order_id, (0, None))[0]
                    await ctx.hold(gate)  # released by ctx.close(), below or by the caller
                    rows = await ctx.db.run(_since(order_id, after))
                    await ctx.close()  # no transaction stays open between events
                    events, why = _events(order_id, wanted, told, rows)
                    if why is not None:
                        notes.ignore(why, payload)
                    for event in events:
                        # its payload is resolved (on a connection of its own) while the
                        # permit is held; the caller closes the context once it is
                        await ctx.hold(gate)
                        yield event
                        await ctx.close()
        finally:
            await ctx.close()
