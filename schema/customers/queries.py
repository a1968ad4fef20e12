"""Query roots of customers: `customer(id)` (null when unknown, no error) and `customers(...)`."""

from __future__ import annotations

import strawberry

from schema import catalog
from schema.context import Info
from schema.customers.types import Customer, CustomerConnection, build_customer
from schema.fields import described
from schema.filters import parse_id
from schema.inputs import CustomerFilter, CustomerOrderBy
from schema.nodes import handle, load_one


@strawberry.type
class CustomerQueries:
    @described("The Customer with this id, or null if there is none.")
    async def customer(self, info: Info, id: strawberry.ID) -> Customer | None:
        row = await load_one(info, catalog.CUSTOMER, parse_id(id))
        return None if row is None else build_customer(row)

    @described("Customers matching the filter, one page at a time.")
    def customers(
        self,
        info: Info,
        filter: CustomerFilter | None = None,
        order_by: list[CustomerOrderBy] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> CustomerConnection:
        h = handle(info, "Query.customers", catalog.CUSTOMER, None, None,
                   build_customer, filter, order_by, first, after, last, before)  # fmt: skip
        return CustomerConnection(_h=h)
