"""``orderStatusChanged(customerId)``: status changes by any writer, via NOTIFY.

One LISTEN connection per process and channel (:func:`hub`) fans the notifications out to
the subscribers' asyncio queues; it starts with the first subscriber, reconnects with
back-off when the database drops it (notifications sent meanwhile are lost: NOTIFY is not
durable) and stops with the last one.

Each event is decided like a read: the order is read on the subscriber's connection,
under its row-level security, and the event is dropped unless the subscriber may read
that order and the order belongs to the customer subscribed to (a notification is only a
hint: any writer may NOTIFY). The event's ``order`` is read by the statement compiler.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar, cast

import psycopg
import sqlalchemy as sa
import strawberry
from psycopg import sql
from sqlalchemy.engine import Connection

from db.config import to_libpq_url
from schema import types
from schema.catalog import ENTITIES
from schema.context import Info
from schema.enums import OrderStatus
from schema.execute import read_node
from schema.scalars import parse_id

log = logging.getLogger("cdms.api.notify")

CHANNEL = "cdms_order_status"
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
    if key not in _hubs:
        _hubs[key] = NotifyHub(url, channel)
    return _hubs[key]


F = TypeVar("F", bound=Callable[..., Any])
ORDER: Any = types.Order | None  # type: ignore[attr-defined]  # generated from the catalog
EVERYONE = frozenset({"admin", "analyst", "service", "customer"})


def _typed(decorator: Any) -> Callable[[F], F]:
    return cast(Callable[[F], F], decorator)


@strawberry.type(description="An order changed status.")
class OrderStatusEvent:
    order_id: strawberry.ID
    customer_id: strawberry.ID
    from_status: OrderStatus | None
    to_status: OrderStatus
    changed_at: dt.datetime

    @_typed(strawberry.field(description="The order as it is now.", graphql_type=ORDER))
    async def order(self, info: Info) -> Any:
        return await read_node(info, ENTITIES["Order"], int(self.order_id))


_OWNER = sa.text("SELECT customer_id FROM app.orders WHERE id = :id")


def _owner(order_id: int) -> Callable[[Connection], Any]:
    return lambda conn: conn.execute(_OWNER, {"id": order_id}).scalar()


@strawberry.type
class OrderSubscriptions:
    @_typed(strawberry.subscription(metadata={"roles": EVERYONE}))
    async def order_status_changed(
        self, info: Info, customer_id: strawberry.ID
    ) -> AsyncGenerator[OrderStatusEvent, None]:
        wanted = parse_id(customer_id, "customerId")
        ctx = info.context
        url = to_libpq_url(ctx.engine.url.render_as_string(hide_password=False))
        try:
            async with hub(url, CHANNEL).subscribe() as queue:
                while True:
                    event = await queue.get()
                    order_id = event.get("order_id")
                    if event.get("customer_id") != wanted or not isinstance(order_id, int):
                        continue
                    owner = await ctx.db.run(_owner(order_id))
                    if owner != wanted:  # invisible to this subscriber, or not this customer's
                        await ctx.close()
                        continue
                    yield OrderStatusEvent(
                        order_id=strawberry.ID(str(order_id)),
                        customer_id=strawberry.ID(str(wanted)),
                        from_status=None
                        if event.get("from") is None
                        else OrderStatus(event["from"]),
                        to_status=OrderStatus(event["to"]),
                        changed_at=dt.datetime.fromisoformat(event["changed_at"]),
                    )
                    await ctx.close()  # no transaction stays open between events
        finally:
            await ctx.close()
