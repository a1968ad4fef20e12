"""Filter and orderBy inputs of every entity (one module: they refer to each other).

Attribute names match :mod:`schema.catalog` field and relation names; only indexed columns
appear here (tests/api/test_catalog.py checks both).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import strawberry
from strawberry import UNSET

from schema import enums
from schema.enums import SortDirection
from schema.filters import EnumFilter, Filter, StringFilter

IDFilter = Filter[strawberry.ID]
IntFilter = Filter[int]
DecimalFilter = Filter[Decimal]
DateTimeFilter = Filter[dt.datetime]


def _and() -> object:
    return strawberry.field(default=UNSET, name="and", description="All of these hold.")


def _or() -> object:
    return strawberry.field(default=UNSET, name="or", description="At least one holds.")


def _not() -> object:
    return strawberry.field(default=UNSET, name="not", description="This does not hold.")


@strawberry.input(
    description="Filter on customers. Indexed fields only: id, email, lastName, segment, "
    "country, region, city, signupAt; relations orders, feedback, returns, supportTickets."
)
class CustomerFilter:
    id: IDFilter | None = UNSET
    email: StringFilter | None = UNSET
    last_name: StringFilter | None = UNSET
    segment: EnumFilter[enums.Segment] | None = UNSET
    country: StringFilter | None = UNSET
    region: StringFilter | None = UNSET
    city: StringFilter | None = UNSET
    signup_at: DateTimeFilter | None = UNSET
    orders: OrderRelationFilter | None = UNSET
    feedback: FeedbackRelationFilter | None = UNSET
    returns: ReturnRelationFilter | None = UNSET
    support_tickets: SupportTicketRelationFilter | None = UNSET
    and_: list[CustomerFilter] | None = _and()  # type: ignore[assignment]
    or_: list[CustomerFilter] | None = _or()  # type: ignore[assignment]
    not_: CustomerFilter | None = _not()  # type: ignore[assignment]


@strawberry.input(
    description="Filter on orders. Indexed fields only: id, status, orderedAt, totalAmount; "
    "relations customer, items, returns."
)
class OrderFilter:
    id: IDFilter | None = UNSET
    status: EnumFilter[enums.OrderStatus] | None = UNSET
    ordered_at: DateTimeFilter | None = UNSET
    total_amount: DecimalFilter | None = UNSET
    customer: CustomerRelationFilter | None = UNSET
    items: OrderItemRelationFilter | None = UNSET
    returns: ReturnRelationFilter | None = UNSET
    and_: list[OrderFilter] | None = _and()  # type: ignore[assignment]
    or_: list[OrderFilter] | None = _or()  # type: ignore[assignment]
    not_: OrderFilter | None = _not()  # type: ignore[assignment]


@strawberry.input(
    description="Filter on order lines, only inside an order's items (the join is the "
    "primary key): quantity, unitPrice, lineTotal; relation product."
)
class OrderItemFilter:
    quantity: IntFilter | None = UNSET
    unit_price: DecimalFilter | None = UNSET
    line_total: DecimalFilter | None = UNSET
    product: ProductRelationFilter | None = UNSET
    and_: list[OrderItemFilter] | None = _and()  # type: ignore[assignment]
    or_: list[OrderItemFilter] | None = _or()  # type: ignore[assignment]
    not_: OrderItemFilter | None = _not()  # type: ignore[assignment]


@strawberry.input(
    description="Filter on products. Indexed fields only: id, sku, name, category, "
    "subcategory, brand, unitPrice; relation feedback."
)
class ProductFilter:
    id: IDFilter | None = UNSET
    sku: StringFilter | None = UNSET
    name: StringFilter | None = UNSET
    category: StringFilter | None = UNSET
    subcategory: StringFilter | None = UNSET
    brand: StringFilter | None = UNSET
    unit_price: DecimalFilter | None = UNSET
    feedback: FeedbackRelationFilter | None = UNSET
    and_: list[ProductFilter] | None = _and()  # type: ignore[assignment]
    or_: list[ProductFilter] | None = _or()  # type: ignore[assignment]
    not_: ProductFilter | None = _not()  # type: ignore[assignment]


@strawberry.input(
    description="Filter on feedback. Indexed fields only: id, createdAt; "
    "relations customer, order, product."
)
class FeedbackFilter:
    id: IDFilter | None = UNSET
    created_at: DateTimeFilter | None = UNSET
    customer: CustomerRelationFilter | None = UNSET
    order: OrderRelationFilter | None = UNSET
    product: ProductRelationFilter | None = UNSET
    and_: list[FeedbackFilter] | None = _and()  # type: ignore[assignment]
    or_: list[FeedbackFilter] | None = _or()  # type: ignore[assignment]
    not_: FeedbackFilter | None = _not()  # type: ignore[assignment]


@strawberry.input(
    description="Filter on returns. Indexed fields only: id, status, requestedAt; "
    "relations customer, order."
)
class ReturnFilter:
    id: IDFilter | None = UNSET
    status: EnumFilter[enums.ReturnStatus] | None = UNSET
    requested_at: DateTimeFilter | None = UNSET
    customer: CustomerRelationFilter | None = UNSET
    order: OrderRelationFilter | None = UNSET
    and_: list[ReturnFilter] | None = _and()  # type: ignore[assignment]
    or_: list[ReturnFilter] | None = _or()  # type: ignore[assignment]
    not_: ReturnFilter | None = _not()  # type: ignore[assignment]


@strawberry.input(
    description="Filter on support tickets. Indexed fields only: id, priority, status, "
    "openedAt; relations customer, order."
)
class SupportTicketFilter:
    id: IDFilter | None = UNSET
    priority: EnumFilter[enums.TicketPriority] | None = UNSET
    status: EnumFilter[enums.TicketStatus] | None = UNSET
    opened_at: DateTimeFilter | None = UNSET
    customer: CustomerRelationFilter | None = UNSET
    order: OrderRelationFilter | None = UNSET
    and_: list[SupportTicketFilter] | None = _and()  # type: ignore[assignment]
    or_: list[SupportTicketFilter] | None = _or()  # type: ignore[assignment]
    not_: SupportTicketFilter | None = _not()  # type: ignore[assignment]


_SOME = "At least one related row matches."
_NONE = "No related row matches."


@strawberry.input(description="Relation filter (EXISTS / NOT EXISTS).")
class CustomerRelationFilter:
    some: CustomerFilter | None = strawberry.field(default=UNSET, description=_SOME)
    none: CustomerFilter | None = strawberry.field(default=UNSET, description=_NONE)


@strawberry.input(description="Relation filter (EXISTS / NOT EXISTS).")
class OrderRelationFilter:
    some: OrderFilter | None = strawberry.field(default=UNSET, description=_SOME)
    none: OrderFilter | None = strawberry.field(default=UNSET, description=_NONE)


@strawberry.input(description="Relation filter (EXISTS / NOT EXISTS).")
class OrderItemRelationFilter:
    some: OrderItemFilter | None = strawberry.field(default=UNSET, description=_SOME)
    none: OrderItemFilter | None = strawberry.field(default=UNSET, description=_NONE)


@strawberry.input(description="Relation filter (EXISTS / NOT EXISTS).")
class ProductRelationFilter:
    some: ProductFilter | None = strawberry.field(default=UNSET, description=_SOME)
    none: ProductFilter | None = strawberry.field(default=UNSET, description=_NONE)


@strawberry.input(description="Relation filter (EXISTS / NOT EXISTS).")
class FeedbackRelationFilter:
    some: FeedbackFilter | None = strawberry.field(default=UNSET, description=_SOME)
    none: FeedbackFilter | None = strawberry.field(default=UNSET, description=_NONE)


@strawberry.input(description="Relation filter (EXISTS / NOT EXISTS).")
class ReturnRelationFilter:
    some: ReturnFilter | None = strawberry.field(default=UNSET, description=_SOME)
    none: ReturnFilter | None = strawberry.field(default=UNSET, description=_NONE)


@strawberry.input(description="Relation filter (EXISTS / NOT EXISTS).")
class SupportTicketRelationFilter:
    some: SupportTicketFilter | None = strawberry.field(default=UNSET, description=_SOME)
    none: SupportTicketFilter | None = strawberry.field(default=UNSET, description=_NONE)


_ONE = "Exactly one field per item; id is appended as the tie-breaker."


@strawberry.input(
    description=f"Sortable (indexed): id, lastName, segment, country, signupAt. {_ONE}"
)
class CustomerOrderBy:
    id: SortDirection | None = UNSET
    last_name: SortDirection | None = UNSET
    segment: SortDirection | None = UNSET
    country: SortDirection | None = UNSET
    signup_at: SortDirection | None = UNSET


@strawberry.input(description=f"Sortable (indexed): id, orderedAt, totalAmount. {_ONE}")
class OrderOrderBy:
    id: SortDirection | None = UNSET
    ordered_at: SortDirection | None = UNSET
    total_amount: SortDirection | None = UNSET


@strawberry.input(
    description=f"Sortable (indexed): id, sku, name, category, brand, unitPrice. {_ONE}"
)
class ProductOrderBy:
    id: SortDirection | None = UNSET
    sku: SortDirection | None = UNSET
    name: SortDirection | None = UNSET
    category: SortDirection | None = UNSET
    brand: SortDirection | None = UNSET
    unit_price: SortDirection | None = UNSET


@strawberry.input(description=f"Sortable (indexed): id, createdAt. {_ONE}")
class FeedbackOrderBy:
    id: SortDirection | None = UNSET
    created_at: SortDirection | None = UNSET


@strawberry.input(description=f"Sortable (indexed): id, requestedAt. {_ONE}")
class ReturnOrderBy:
    id: SortDirection | None = UNSET
    requested_at: SortDirection | None = UNSET


@strawberry.input(description=f"Sortable (indexed): id, openedAt. {_ONE}")
class SupportTicketOrderBy:
    id: SortDirection | None = UNSET
    opened_at: SortDirection | None = UNSET
