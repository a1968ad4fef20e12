"""GraphQL types of support tickets."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from schema import catalog
from schema.context import Info
from schema.enums import TicketCategory, TicketChannel, TicketPriority, TicketStatus
from schema.nodes import aggregate_part, builder, load_one
from schema.predictions.resolvers import ticket_predicted_status
from schema.relay import Connection

if TYPE_CHECKING:
    from schema.customers.types import Customer
    from schema.orders.types import Order

_Customer = Annotated["Customer", strawberry.lazy("schema.customers.types")]
_Order = Annotated["Order", strawberry.lazy("schema.orders.types")]


@strawberry.type(description="A support ticket: open -> in_progress -> resolved -> closed.")
class SupportTicket:
    id: strawberry.ID
    category: TicketCategory
    priority: TicketPriority
    channel: TicketChannel
    status: TicketStatus
    subject: str
    opened_at: dt.datetime
    resolved_at: dt.datetime | None
    closed_at: dt.datetime | None
    satisfaction: int | None
    customer_id: strawberry.Private[int]
    order_id: strawberry.Private[int | None]
    predicted_status = strawberry.field(resolver=ticket_predicted_status)  # ml (issue 6)

    @strawberry.field
    async def customer(self, info: Info) -> _Customer:
        from schema.customers.types import build_customer

        row = await load_one(info, catalog.CUSTOMER, self.customer_id)
        assert row is not None  # NOT NULL foreign key
        return build_customer(row)

    @strawberry.field
    async def order(self, info: Info) -> _Order | None:
        from schema.orders.types import build_order

        row = await load_one(info, catalog.ORDER, self.order_id)
        return None if row is None else build_order(row)


build_ticket = builder(SupportTicket, catalog.SUPPORT_TICKET)


@strawberry.type
class SupportTicketSums:
    satisfaction: int | None


@strawberry.type
class SupportTicketAverages:
    satisfaction: Decimal | None


@strawberry.type
class SupportTicketMinMax:
    satisfaction: int | None
    opened_at: dt.datetime | None


@strawberry.type(description="Aggregates over the filtered tickets (paging ignored).")
class SupportTicketAggregate:
    count: int
    sum: SupportTicketSums
    avg: SupportTicketAverages
    min: SupportTicketMinMax
    max: SupportTicketMinMax


@strawberry.type
class SupportTicketConnection(Connection[SupportTicket]):
    @strawberry.field
    async def aggregate(self) -> SupportTicketAggregate:
        s = await self._h.stats(aggregates=True)
        e = catalog.SUPPORT_TICKET
        return SupportTicketAggregate(
            count=int(s["count"]),
            sum=aggregate_part(SupportTicketSums, s, "sum", e.sum_fields),
            avg=aggregate_part(SupportTicketAverages, s, "avg", e.sum_fields),
            min=aggregate_part(SupportTicketMinMax, s, "min", e.min_max_fields),
            max=aggregate_part(SupportTicketMinMax, s, "max", e.min_max_fields),
        )
