"""Mutations of orders, through the database procedures (so the rules hold for every
writer): ``placeOrder`` → ``app.place_order``, ``setOrderStatus`` → ``app.set_order_status``."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
import strawberry
from sqlalchemy.dialects.postgresql import JSONB

from schema import catalog
from schema.context import Info
from schema.enums import OrderChannel, OrderStatus, PaymentMethod
from schema.fields import mutation
from schema.filters import parse_id
from schema.orders.types import Order, build_order
from schema.writes import call_returning_id, write_and_read


@strawberry.input
class OrderItemInput:
    product_id: strawberry.ID
    quantity: int
    discount: Decimal | None = None


@strawberry.input
class PlaceOrderInput:
    customer_id: strawberry.ID
    items: list[OrderItemInput]
    channel: OrderChannel
    payment_method: PaymentMethod


@strawberry.type
class OrderMutations:
    @mutation(
        "Places an order atomically: locks stock (no oversell), copies prices. "
        "Errors: NOT_FOUND, BAD_USER_INPUT (empty basket, quantity < 1), OUT_OF_STOCK."
    )
    async def place_order(self, info: Info, input: PlaceOrderInput) -> Order:
        items = [
            {
                "product_id": parse_id(i.product_id, "productId"),
                "quantity": i.quantity,
                **({} if i.discount is None else {"discount": str(i.discount)}),
            }
            for i in input.items
        ]
        fn = sa.func.app.place_order(
            parse_id(input.customer_id, "customerId"),
            sa.bindparam("items", items, type_=JSONB),
            input.channel.value,
            input.payment_method.value,
        )
        write = call_returning_id(fn, composite=False)
        return await write_and_read(info, write, catalog.ORDER, build_order)

    @mutation(
        "pending -> paid -> shipped -> delivered; pending/paid -> cancelled; "
        "delivered -> returned. Anything else: INVALID_TRANSITION (from, to)."
    )
    async def set_order_status(
        self, info: Info, order_id: strawberry.ID, status: OrderStatus
    ) -> Order:
        fn = sa.func.app.set_order_status(parse_id(order_id, "orderId"), status.value)
        write = call_returning_id(fn, composite=True)
        return await write_and_read(info, write, catalog.ORDER, build_order)
