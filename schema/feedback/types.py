"""GraphQL types of feedback (ratings with a review or a complaint)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from schema import catalog
from schema.context import Info
from schema.enums import FeedbackKind
from schema.nodes import aggregate_part, builder, load_one
from schema.relay import Connection

if TYPE_CHECKING:
    from schema.customers.types import Customer
    from schema.orders.types import Order
    from schema.products.types import Product

_Customer = Annotated["Customer", strawberry.lazy("schema.customers.types")]
_Order = Annotated["Order", strawberry.lazy("schema.orders.types")]
_Product = Annotated["Product", strawberry.lazy("schema.products.types")]


@strawberry.type(description="A rating (1-5) with a review or complaint.")
class Feedback:
    id: strawberry.ID
    kind: FeedbackKind
    rating: int
    comment: str | None
    created_at: dt.datetime
    customer_id: strawberry.Private[int]
    order_id: strawberry.Private[int | None]
    product_id: strawberry.Private[int | None]

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

    @strawberry.field
    async def product(self, info: Info) -> _Product | None:
        from schema.products.types import build_product

        row = await load_one(info, catalog.PRODUCT, self.product_id)
        return None if row is None else build_product(row)


build_feedback = builder(Feedback, catalog.FEEDBACK)


@strawberry.type
class FeedbackSums:
    rating: int | None


@strawberry.type
class FeedbackAverages:
    rating: Decimal | None


@strawberry.type
class FeedbackMinMax:
    rating: int | None
    created_at: dt.datetime | None


@strawberry.type(description="Aggregates over the filtered feedback (paging ignored).")
class FeedbackAggregate:
    count: int
    sum: FeedbackSums
    avg: FeedbackAverages
    min: FeedbackMinMax
    max: FeedbackMinMax


@strawberry.type
class FeedbackConnection(Connection[Feedback]):
    @strawberry.field
    async def aggregate(self) -> FeedbackAggregate:
        s = await self._h.stats(aggregates=True)
        e = catalog.FEEDBACK
        return FeedbackAggregate(
            count=int(s["count"]),
            sum=aggregate_part(FeedbackSums, s, "sum", e.sum_fields),
            avg=aggregate_part(FeedbackAverages, s, "avg", e.sum_fields),
            min=aggregate_part(FeedbackMinMax, s, "min", e.min_max_fields),
            max=aggregate_part(FeedbackMinMax, s, "max", e.min_max_fields),
        )
