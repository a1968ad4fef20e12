"""GraphQL types of orders, their lines and status history."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from schema import catalog
from schema.context import Info
from schema.enums import OrderChannel, OrderStatus, PaymentMethod
from schema.fields import described
from schema.inputs import ReturnFilter, ReturnOrderBy
from schema.nodes import aggregate_part, builder, handle, load_many, load_one
from schema.predictions.resolvers import order_predicted_status, order_predicted_total
from schema.relay import Connection

if TYPE_CHECKING:
    from schema.customers.types import Customer
    from schema.products.types import Product
    from schema.returns.types import ReturnConnection

_Customer = Annotated["Customer", strawberry.lazy("schema.customers.types")]
_Product = Annotated["Product", strawberry.lazy("schema.products.types")]
_ReturnConnection = Annotated["ReturnConnection", strawberry.lazy("schema.returns.types")]


@strawberry.type(description="One line of an order; unitPrice was copied when ordered.")
class OrderItem:
    line_no: int
    quantity: int
    unit_price: Decimal
    discount: Decimal
    line_total: Decimal
    order_id: strawberry.Private[int]
    product_id: strawberry.Private[int]
    # read with the line (schema/orders/loaders.py), so no resolver runs per line
    product: _Product


@strawberry.type(description="One status change of an order (audit written by a trigger).")
class OrderStatusChange:
    id: strawberry.ID
    from_status: OrderStatus | None
    to_status: OrderStatus
    changed_at: dt.datetime
    changed_by: str | None
    order_id: strawberry.Private[int]


@strawberry.type(description="An order: status, times, channel, payment, totals and lines.")
class Order:
    id: strawberry.ID
    status: OrderStatus
    ordered_at: dt.datetime
    paid_at: dt.datetime | None
    shipped_at: dt.datetime | None
    delivered_at: dt.datetime | None
    channel: OrderChannel
    payment_method: PaymentMethod
    item_count: int = strawberry.field(description="Sum of line quantities.")
    total_amount: Decimal = strawberry.field(description="Subtotal minus discounts.")
    customer_id: strawberry.Private[int]
    predicted_status = strawberry.field(resolver=order_predicted_status)  # ml (issue 6)
    predicted_total = strawberry.field(resolver=order_predicted_total)  # ml (issue 6)

    @strawberry.field
    async def customer(self, info: Info) -> _Customer:
        from schema.customers.types import build_customer

        row = await load_one(info, catalog.CUSTOMER, self.customer_id)
        assert row is not None  # orders.customer_id is a NOT NULL foreign key
        return build_customer(row)

    @described("The order's lines, by line number.")
    async def items(self, info: Info) -> list[OrderItem]:
        from schema.orders.loaders import load_items

        return await load_items(info, int(self.id))

    @described("Every status change, oldest first.")
    async def status_history(self, info: Info) -> list[OrderStatusChange]:
        rows = await load_many(info, catalog.ORDER_STATUS_CHANGE, "order_id", int(self.id))
        return [build_status_change(r) for r in rows]

    @described("Return requests on this order's lines.")
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

        h = handle(info, "Order.returns", catalog.RETURN, "Order.returns", self.id,
                   build_return, filter, order_by, first, after, last, before)  # fmt: skip
        return ReturnConnection(_h=h)


build_order = builder(Order, catalog.ORDER)
build_status_change = builder(OrderStatusChange, catalog.ORDER_STATUS_CHANGE)


@strawberry.type
class OrderSums:
    total_amount: Decimal | None
    item_count: int | None


@strawberry.type
class OrderAverages:
    total_amount: Decimal | None
    item_count: Decimal | None


@strawberry.type
class OrderMinMax:
    total_amount: Decimal | None
    item_count: int | None
    ordered_at: dt.datetime | None


@strawberry.type(description="Aggregates over the filtered orders (paging ignored).")
class OrderAggregate:
    count: int
    sum: OrderSums
    avg: OrderAverages
    min: OrderMinMax
    max: OrderMinMax


@strawberry.type
class OrderConnection(Connection[Order]):
    @strawberry.field
    async def aggregate(self) -> OrderAggregate:
        s = await self._h.stats(aggregates=True)
        e = catalog.ORDER
        return OrderAggregate(
            count=int(s["count"]),
            sum=aggregate_part(OrderSums, s, "sum", e.sum_fields),
            avg=aggregate_part(OrderAverages, s, "avg", e.sum_fields),
            min=aggregate_part(OrderMinMax, s, "min", e.min_max_fields),
            max=aggregate_part(OrderMinMax, s, "max", e.min_max_fields),
        )
