"""Query roots of orders: `order(id)` (null when unknown, no error) and `orders(...)`."""

from __future__ import annotations

import strawberry

from schema import catalog
from schema.context import Info
from schema.fields import described
from schema.filters import parse_id
from schema.inputs import OrderFilter, OrderOrderBy
from schema.nodes import handle, load_one
from schema.orders.types import Order, OrderConnection, build_order


@strawberry.type
class OrderQueries:
    @described("The Order with this id, or null if there is none.")
    async def order(self, info: Info, id: strawberry.ID) -> Order | None:
        row = await load_one(info, catalog.ORDER, parse_id(id))
        return None if row is None else build_order(row)

    @described("Orders matching the filter, one page at a time.")
    def orders(
        self,
        info: Info,
        filter: OrderFilter | None = None,
        order_by: list[OrderOrderBy] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> OrderConnection:
        h = handle(info, "Query.orders", catalog.ORDER, None, None,
                   build_order, filter, order_by, first, after, last, before)  # fmt: skip
        return OrderConnection(_h=h)
