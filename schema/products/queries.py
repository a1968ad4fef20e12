"""Query roots of products: `product(id)` (null when unknown, no error) and `products(...)`."""

from __future__ import annotations

import strawberry

from schema import catalog
from schema.context import Info
from schema.fields import described
from schema.filters import parse_id
from schema.inputs import ProductFilter, ProductOrderBy
from schema.nodes import handle, load_one
from schema.products.types import Product, ProductConnection, build_product


@strawberry.type
class ProductQueries:
    @described("The Product with this id, or null if there is none.")
    async def product(self, info: Info, id: strawberry.ID) -> Product | None:
        row = await load_one(info, catalog.PRODUCT, parse_id(id))
        return None if row is None else build_product(row)

    @described("Products matching the filter, one page at a time.")
    def products(
        self,
        info: Info,
        filter: ProductFilter | None = None,
        order_by: list[ProductOrderBy] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> ProductConnection:
        h = handle(info, "Query.products", catalog.PRODUCT, None, None,
                   build_product, filter, order_by, first, after, last, before)  # fmt: skip
        return ProductConnection(_h=h)
