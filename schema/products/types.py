"""GraphQL types of products."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from schema import catalog
from schema.context import Info
from schema.fields import described
from schema.inputs import FeedbackFilter, FeedbackOrderBy
from schema.nodes import aggregate_part, builder, handle
from schema.relay import Connection

if TYPE_CHECKING:
    from schema.feedback.types import FeedbackConnection

_FeedbackConnection = Annotated["FeedbackConnection", strawberry.lazy("schema.feedback.types")]


@strawberry.type(description="A catalogue item; stock is decremented by placeOrder only.")
class Product:
    id: strawberry.ID
    sku: str
    name: str
    category: str
    subcategory: str
    brand: str
    unit_price: Decimal
    stock: int

    @described("Feedback about this product (default: newest first).")
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

        h = handle(info, "Product.feedback", catalog.FEEDBACK, "Product.feedback", self.id,
                   build_feedback, filter, order_by, first, after, last, before)  # fmt: skip
        return FeedbackConnection(_h=h)


build_product = builder(Product, catalog.PRODUCT)


@strawberry.type
class ProductSums:
    unit_price: Decimal | None
    stock: int | None


@strawberry.type
class ProductAverages:
    unit_price: Decimal | None
    stock: Decimal | None


@strawberry.type
class ProductMinMax:
    unit_price: Decimal | None
    stock: int | None


@strawberry.type(description="Aggregates over the filtered products (paging ignored).")
class ProductAggregate:
    count: int
    sum: ProductSums
    avg: ProductAverages
    min: ProductMinMax
    max: ProductMinMax


@strawberry.type
class ProductConnection(Connection[Product]):
    @strawberry.field
    async def aggregate(self) -> ProductAggregate:
        s = await self._h.stats(aggregates=True)
        e = catalog.PRODUCT
        return ProductAggregate(
            count=int(s["count"]),
            sum=aggregate_part(ProductSums, s, "sum", e.sum_fields),
            avg=aggregate_part(ProductAverages, s, "avg", e.sum_fields),
            min=aggregate_part(ProductMinMax, s, "min", e.min_max_fields),
            max=aggregate_part(ProductMinMax, s, "max", e.min_max_fields),
        )
