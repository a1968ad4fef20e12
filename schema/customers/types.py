"""GraphQL types of customers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from schema import catalog
from schema.context import Info
from schema.enums import Gender, Segment
from schema.fields import described
from schema.inputs import (
    FeedbackFilter,
    FeedbackOrderBy,
    OrderFilter,
    OrderOrderBy,
    ReturnFilter,
    ReturnOrderBy,
    SupportTicketFilter,
    SupportTicketOrderBy,
)
from schema.nodes import builder, handle
from schema.predictions.resolvers import customer_expected_order_value
from schema.relay import Connection

if TYPE_CHECKING:
    from schema.feedback.types import FeedbackConnection
    from schema.orders.types import OrderConnection
    from schema.returns.types import ReturnConnection
    from schema.tickets.types import SupportTicketConnection

_OrderConnection = Annotated["OrderConnection", strawberry.lazy("schema.orders.types")]
_FeedbackConnection = Annotated["FeedbackConnection", strawberry.lazy("schema.feedback.types")]
_ReturnConnection = Annotated["ReturnConnection", strawberry.lazy("schema.returns.types")]
_TicketConnection = Annotated["SupportTicketConnection", strawberry.lazy("schema.tickets.types")]


@strawberry.type(
    description="Derived figures of one customer (view app.customer_summary). orderCount: "
    "orders not cancelled; lifetimeValue: orders once paid minus approved refunds; "
    "returnRate: approved returned units / delivered units (null if none delivered)."
)
class CustomerSummary:
    order_count: int
    lifetime_value: Decimal
    average_order_value: Decimal | None
    first_order_at: dt.datetime | None
    last_order_at: dt.datetime | None
    return_rate: float | None
    average_rating: float | None
    open_ticket_count: int


@strawberry.type(description="A person or company who buys.")
class Customer:
    id: strawberry.ID
    email: str
    first_name: str
    last_name: str
    gender: Gender | None
    birth_date: dt.date | None
    segment: Segment
    country: str
    region: str
    city: str
    signup_at: dt.datetime
    expected_order_value = strawberry.field(resolver=customer_expected_order_value)  # ml

    @strawberry.field
    async def summary(self, info: Info) -> CustomerSummary:
        from schema.customers.loaders import load_summary

        return await load_summary(info, int(self.id))

    @described("The customer's orders (default: newest first).")
    def orders(
        self,
        info: Info,
        filter: OrderFilter | None = None,
        order_by: list[OrderOrderBy] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> _OrderConnection:
        from schema.orders.types import OrderConnection, build_order

        h = handle(info, "Customer.orders", catalog.ORDER, "Customer.orders", self.id,
                   build_order, filter, order_by, first, after, last, before)  # fmt: skip
        return OrderConnection(_h=h)

    @described("The customer's feedback (default: newest first).")
    def feedback(
        self,
        info: Info,
        filter: FeedbackFilter | None = None,
        order_by: list[FeedbackOrderBy] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> _FeedbackConnection:
        from schema.feedback.types import FeedbackConnection, build_feedback

        h = handle(info, "Customer.feedback", catalog.FEEDBACK, "Customer.feedback", self.id,
                   build_feedback, filter, order_by, first, after, last, before)  # fmt: skip
        return FeedbackConnection(_h=h)

    @described("The customer's return requests (default: newest first).")
    def returns(
        self,
        info: Info,
        filter: ReturnFilter | None = None,
        order_by: list[ReturnOrderBy] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> _ReturnConnection:
        from schema.returns.types import ReturnConnection, build_return

        h = handle(info, "Customer.returns", catalog.RETURN, "Customer.returns", self.id,
                   build_return, filter, order_by, first, after, last, before)  # fmt: skip
        return ReturnConnection(_h=h)

    @described("The customer's support tickets (default: newest first).")
    def support_tickets(
        self,
        info: Info,
        filter: SupportTicketFilter | None = None,
        order_by: list[SupportTicketOrderBy] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> _TicketConnection:
        from schema.tickets.types import SupportTicketConnection, build_ticket

        h = handle(info, "Customer.supportTickets", catalog.SUPPORT_TICKET,
                   "Customer.support_tickets", self.id, build_ticket,
                   filter, order_by, first, after, last, before)  # fmt: skip
        return SupportTicketConnection(_h=h)


build_customer = builder(Customer, catalog.CUSTOMER)


@strawberry.type
class CustomerMinMax:
    signup_at: dt.datetime | None


@strawberry.type(description="Aggregates over the filtered customers (paging ignored).")
class CustomerAggregate:
    count: int
    min: CustomerMinMax
    max: CustomerMinMax


@strawberry.type
class CustomerConnection(Connection[Customer]):
    @strawberry.field
    async def aggregate(self) -> CustomerAggregate:
        s = await self._h.stats(aggregates=True)
        return CustomerAggregate(
            count=int(s["count"]),
            min=CustomerMinMax(signup_at=s.get("min__signup_at")),
            max=CustomerMinMax(signup_at=s.get("max__signup_at")),
        )
