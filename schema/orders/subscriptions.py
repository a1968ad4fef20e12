"""``orderStatusChanged(customerId)``: status changes by any writer, via NOTIFY.

Fed by the process's single ``LISTEN cdms_order_status`` connection (schema.notify). Each
event is decided like a read: the order is read on the subscriber's connection, under its
row-level security, and the event is dropped unless the subscriber may read that order and
the order belongs to the customer subscribed to (a notification is only a hint: any
writer may NOTIFY).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator

import strawberry

from db.config import to_libpq_url
from schema import catalog
from schema.context import Info
from schema.enums import OrderStatus
from schema.fields import described
from schema.filters import parse_id
from schema.nodes import load_one
from schema.notify import hub
from schema.orders.types import Order, build_order

CHANNEL = "cdms_order_status"


@strawberry.type(description="An order changed status.")
class OrderStatusEvent:
    order_id: strawberry.ID
    customer_id: strawberry.ID
    from_status: OrderStatus | None
    to_status: OrderStatus
    changed_at: dt.datetime

    @described("The order as it is now.")
    async def order(self, info: Info) -> Order | None:
        row = await load_one(info, catalog.ORDER, int(self.order_id))
        return None if row is None else build_order(row)


@strawberry.type
class OrderSubscriptions:
    @strawberry.subscription
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
                    if event.get("customer_id") != wanted:
                        continue
                    ctx.loaders.clear()  # each event reads the order afresh
                    order_id = event.get("order_id")
                    row = await load_one(info, catalog.ORDER, order_id)
                    if row is None or row.customer_id != wanted:
                        await ctx.close()
                        continue  # not this subscriber's to see
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
