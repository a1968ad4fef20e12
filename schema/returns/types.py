"""GraphQL types of return requests."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from schema import catalog
from schema.context import Info
from schema.enums import ReturnReason, ReturnStatus
from schema.nodes import aggregate_part, builder, load_one
from schema.relay import Connection

if TYPE_CHECKING:
    from schema.customers.types import Customer
    from schema.orders.types import Order

_Customer = Annotated["Customer", strawberry.lazy("schema.customers.types")]
_Order = Annotated["Order", strawberry.lazy("schema.orders.types")]


@strawberry.type(description="A return request for units of one order line.")
class Return:
    id: strawberry.ID
    line_no: int
    reason: ReturnReason
    quantity: int
    status: ReturnStatus
    refund_amount: Decimal | None
    comment: str | None
    requested_at: dt.datetime
    decided_at: dt.datetime | None
    customer_id: strawberry.Private[int]
    order_id: strawberry.Private[int]

    @strawberry.field
    async def customer(self, info: Info) -> _Customer:
        from schema.customers.types import build_customer

        row = await load_one(info, catalog.CUSTOMER, self.customer_id)
        assert row is not None  # NOT NULL foreign key
        return build_customer(row)

    @strawberry.field
    async def order(self, info: Info) -> _Order:
        from schema.orders.types import build_order

        row = await load_one(info, catalog.ORDER, self.order_id)
        assert row is not None  # NOT NULL foreign key
        return build_order(row)


build_return = builder(Return, catalog.RETURN)


@strawberry.type
class ReturnSums:
    quantity: int | None
    refund_amount: Decimal | None


@strawberry.type
class ReturnAverages:
    quantity: Decimal | None
    refund_amount: Decimal | None


@strawberry.type
class ReturnMinMax:
    quantity: int | None
    refund_amount: Decimal | None
    requested_at: dt.datetime | None


@strawberry.type(description="Aggregates over the filtered returns (paging ignored).")
class ReturnAggregate:
    count: int
    sum: ReturnSums
    avg: ReturnAverages
    min: ReturnMinMax
    max: ReturnMinMax


@strawberry.type
class ReturnConnection(Connection[Return]):
    @strawberry.field
    async def aggregate(self) -> ReturnAggregate:
        s = await self._h.stats(aggregates=True)
        e = catalog.RETURN
        return ReturnAggregate(
            count=int(s["count"]),
            sum=aggregate_part(ReturnSums, s, "sum", e.sum_fields),
            avg=aggregate_part(ReturnAverages, s, "avg", e.sum_fields),
            min=aggregate_part(ReturnMinMax, s, "min", e.min_max_fields),
            max=aggregate_part(ReturnMinMax, s, "max", e.min_max_fields),
        )
