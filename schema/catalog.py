"""The single declarative description of each entity the API serves.

For every GraphQL type: its table, each scalar field's column and kind, which fields are
filterable/sortable (only those backed by an index, see db/sql/0002_app_tables.sql), the
relations to other entities (join columns), the default order of its connections, and
the columns its connection aggregates cover. Resolvers, filters, pagination and the
(future) compiled read path all read this one description.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from schema import enums, tables


class Kind(enum.Enum):
    ID = "id"
    INT = "int"
    DECIMAL = "decimal"
    TEXT = "text"
    ENUM = "enum"
    DATETIME = "datetime"
    DATE = "date"


@dataclass(frozen=True)
class Field:
    """A scalar field: python attribute ``name`` (GraphQL camelCase) ↔ column ``column``."""

    name: str
    column: str
    kind: Kind
    filterable: bool = False
    sortable: bool = False
    enum: type[enum.Enum] | None = None

    def expr(self, table: sa.FromClause) -> sa.ColumnElement[Any]:
        col: sa.ColumnElement[Any] = table.c[self.column]
        return col


@dataclass(frozen=True)
class Relation:
    """``source.local`` = ``target.remote``; ``many`` for one-to-many (a connection)."""

    name: str
    target: str
    local: str
    remote: str
    many: bool


@dataclass(frozen=True)
class Entity:
    name: str
    table: sa.Table
    fields: Mapping[str, Field]
    relations: Mapping[str, Relation]
    default_order: tuple[tuple[str, enums.SortDirection], ...]
    # extra columns every row carries (foreign keys the relation resolvers need)
    keys: tuple[str, ...] = ()
    sum_fields: tuple[str, ...] = ()
    min_max_fields: tuple[str, ...] = ()
    unique: tuple[str, ...] = ("id",)

    def columns(self, table: sa.FromClause) -> list[sa.ColumnElement[Any]]:
        """Every column a node of this entity is built from, labelled by attribute name."""
        cols: list[sa.ColumnElement[Any]] = [
            f.expr(table).label(f.name) for f in self.fields.values()
        ]
        cols += [table.c[k].label(k) for k in self.keys if k not in self.fields]
        return cols


D = enums.SortDirection


def _fields(*items: Field) -> dict[str, Field]:
    return {f.name: f for f in items}


def _rels(*items: Relation) -> dict[str, Relation]:
    return {r.name: r for r in items}


CUSTOMER = Entity(
    name="Customer",
    table=tables.customers,
    fields=_fields(
        Field("id", "id", Kind.ID, filterable=True, sortable=True),
        Field("email", "email", Kind.TEXT, filterable=True),
        Field("first_name", "first_name", Kind.TEXT),
        Field("last_name", "last_name", Kind.TEXT, filterable=True, sortable=True),
        Field("gender", "gender", Kind.ENUM, enum=enums.Gender),
        Field("birth_date", "birth_date", Kind.DATE),
        Field("segment", "segment", Kind.ENUM, filterable=True, sortable=True, enum=enums.Segment),
        Field("country", "country", Kind.TEXT, filterable=True, sortable=True),
        Field("region", "region", Kind.TEXT, filterable=True),
        Field("city", "city", Kind.TEXT, filterable=True),
        Field("signup_at", "signup_at", Kind.DATETIME, filterable=True, sortable=True),
    ),
    relations=_rels(
        Relation("orders", "Order", "id", "customer_id", many=True),
        Relation("feedback", "Feedback", "id", "customer_id", many=True),
        Relation("returns", "Return", "id", "customer_id", many=True),
        Relation("support_tickets", "SupportTicket", "id", "customer_id", many=True),
    ),
    default_order=(("id", D.ASC),),
    min_max_fields=("signup_at",),
)

ORDER = Entity(
    name="Order",
    table=tables.orders,
    fields=_fields(
        Field("id", "id", Kind.ID, filterable=True, sortable=True),
        Field("status", "status", Kind.ENUM, filterable=True, enum=enums.OrderStatus),
        Field("ordered_at", "ordered_at", Kind.DATETIME, filterable=True, sortable=True),
        Field("paid_at", "paid_at", Kind.DATETIME),
        Field("shipped_at", "shipped_at", Kind.DATETIME),
        Field("delivered_at", "delivered_at", Kind.DATETIME),
        Field("channel", "channel", Kind.ENUM, enum=enums.OrderChannel),
        Field("payment_method", "payment_method", Kind.ENUM, enum=enums.PaymentMethod),
        Field("item_count", "item_count", Kind.INT),
        Field("total_amount", "total_amount", Kind.DECIMAL, filterable=True, sortable=True),
    ),
    relations=_rels(
        Relation("customer", "Customer", "customer_id", "id", many=False),
        Relation("items", "OrderItem", "id", "order_id", many=True),
        Relation("returns", "Return", "id", "order_id", many=True),
    ),
    default_order=(("ordered_at", D.DESC),),
    keys=("customer_id",),
    sum_fields=("total_amount", "item_count"),
    min_max_fields=("total_amount", "item_count", "ordered_at"),
)

ORDER_ITEM = Entity(
    name="OrderItem",
    table=tables.order_items,
    fields=_fields(
        Field("line_no", "line_no", Kind.INT),
        Field("quantity", "quantity", Kind.INT, filterable=True),
        Field("unit_price", "unit_price", Kind.DECIMAL, filterable=True),
        Field("discount", "discount", Kind.DECIMAL),
        Field("line_total", "line_total", Kind.DECIMAL, filterable=True),
    ),
    relations=_rels(Relation("product", "Product", "product_id", "id", many=False)),
    default_order=(("line_no", D.ASC),),
    keys=("order_id", "product_id"),
    unique=("order_id", "line_no"),
)

PRODUCT = Entity(
    name="Product",
    table=tables.products,
    fields=_fields(
        Field("id", "id", Kind.ID, filterable=True, sortable=True),
        Field("sku", "sku", Kind.TEXT, filterable=True, sortable=True),
        Field("name", "name", Kind.TEXT, filterable=True, sortable=True),
        Field("category", "category", Kind.TEXT, filterable=True, sortable=True),
        Field("subcategory", "subcategory", Kind.TEXT, filterable=True),
        Field("brand", "brand", Kind.TEXT, filterable=True, sortable=True),
        Field("unit_price", "unit_price", Kind.DECIMAL, filterable=True, sortable=True),
        Field("stock", "stock", Kind.INT),
    ),
    relations=_rels(Relation("feedback", "Feedback", "id", "product_id", many=True)),
    default_order=(("id", D.ASC),),
    sum_fields=("unit_price", "stock"),
    min_max_fields=("unit_price", "stock"),
)

FEEDBACK = Entity(
    name="Feedback",
    table=tables.feedback,
    fields=_fields(
        Field("id", "id", Kind.ID, filterable=True, sortable=True),
        Field("kind", "kind", Kind.ENUM, enum=enums.FeedbackKind),
        Field("rating", "rating", Kind.INT),
        Field("comment", "comment", Kind.TEXT),
        Field("created_at", "created_at", Kind.DATETIME, filterable=True, sortable=True),
    ),
    relations=_rels(
        Relation("customer", "Customer", "customer_id", "id", many=False),
        Relation("order", "Order", "order_id", "id", many=False),
        Relation("product", "Product", "product_id", "id", many=False),
    ),
    default_order=(("created_at", D.DESC),),
    keys=("customer_id", "order_id", "product_id"),
    sum_fields=("rating",),
    min_max_fields=("rating", "created_at"),
)

RETURN = Entity(
    name="Return",
    table=tables.returns,
    fields=_fields(
        Field("id", "id", Kind.ID, filterable=True, sortable=True),
        Field("line_no", "line_no", Kind.INT),
        Field("reason", "reason", Kind.ENUM, enum=enums.ReturnReason),
        Field("quantity", "quantity", Kind.INT),
        Field("status", "status", Kind.ENUM, filterable=True, enum=enums.ReturnStatus),
        Field("refund_amount", "refund_amount", Kind.DECIMAL),
        Field("comment", "comment", Kind.TEXT),
        Field("requested_at", "requested_at", Kind.DATETIME, filterable=True, sortable=True),
        Field("decided_at", "decided_at", Kind.DATETIME),
    ),
    relations=_rels(
        Relation("customer", "Customer", "customer_id", "id", many=False),
        Relation("order", "Order", "order_id", "id", many=False),
    ),
    default_order=(("requested_at", D.DESC),),
    keys=("customer_id", "order_id"),
    sum_fields=("quantity", "refund_amount"),
    min_max_fields=("quantity", "refund_amount", "requested_at"),
)

SUPPORT_TICKET = Entity(
    name="SupportTicket",
    table=tables.support_tickets,
    fields=_fields(
        Field("id", "id", Kind.ID, filterable=True, sortable=True),
        Field("category", "category", Kind.ENUM, enum=enums.TicketCategory),
        Field("priority", "priority", Kind.ENUM, filterable=True, enum=enums.TicketPriority),
        Field("channel", "channel", Kind.ENUM, enum=enums.TicketChannel),
        Field("status", "status", Kind.ENUM, filterable=True, enum=enums.TicketStatus),
        Field("subject", "subject", Kind.TEXT),
        Field("opened_at", "opened_at", Kind.DATETIME, filterable=True, sortable=True),
        Field("resolved_at", "resolved_at", Kind.DATETIME),
        Field("closed_at", "closed_at", Kind.DATETIME),
        Field("satisfaction", "satisfaction", Kind.INT),
    ),
    relations=_rels(
        Relation("customer", "Customer", "customer_id", "id", many=False),
        Relation("order", "Order", "order_id", "id", many=False),
    ),
    default_order=(("opened_at", D.DESC),),
    keys=("customer_id", "order_id"),
    sum_fields=("satisfaction",),
    min_max_fields=("satisfaction", "opened_at"),
)

ORDER_STATUS_CHANGE = Entity(
    name="OrderStatusChange",
    table=tables.order_status_history,
    fields=_fields(
        Field("id", "id", Kind.ID),
        Field("from_status", "from_status", Kind.ENUM, enum=enums.OrderStatus),
        Field("to_status", "to_status", Kind.ENUM, enum=enums.OrderStatus),
        Field("changed_at", "changed_at", Kind.DATETIME),
        Field("changed_by", "changed_by", Kind.TEXT),
    ),
    relations={},
    default_order=(("changed_at", D.ASC),),
    keys=("order_id",),
)

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        CUSTOMER,
        ORDER,
        ORDER_ITEM,
        PRODUCT,
        FEEDBACK,
        RETURN,
        SUPPORT_TICKET,
        ORDER_STATUS_CHANGE,
    )
}


def entity(name: str) -> Entity:
    return ENTITIES[name]


def to_node_kwargs(ent: Entity, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row labelled by :meth:`Entity.columns` → constructor arguments of the node type."""
    out = dict(row)
    for f in ent.fields.values():
        if f.enum is not None:
            v = out[f.name]
            out[f.name] = None if v is None else f.enum(v)
    return out
