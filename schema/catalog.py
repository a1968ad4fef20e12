"""Each entity the API serves, declared once: its table, fields, relations, filters,
orderings, aggregates, prediction fields and who may see what.

Everything else is generated from these declarations: the Strawberry types, connection,
edge and aggregate types and the filter / orderBy inputs (schema/types.py), the query
roots, and the SQL of every read (schema/plan.py, schema/sql.py). Adding a column to the
API is one ``Col`` line here plus its migration.

The values a client sees are PostgreSQL's own output (docs/api.md, "Formats"): ids as
strings, ``Decimal`` as text with two decimals, ``DateTime`` as ISO 8601 with an offset
(the API's sessions run in UTC), ``Date`` as ``YYYY-MM-DD``, enums upper case.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from db.errors import snake
from schema import enums


class Kind(enum.Enum):
    """What a column holds, and so its GraphQL type and its JSON."""

    ID = "id"
    INT = "int"
    FLOAT = "float"
    STRING = "string"
    MONEY = "money"  # numeric(14,2): its text is already two decimals (GraphQL Decimal)
    DECIMAL = "decimal"  # any numeric: rounded to two decimals (GraphQL Decimal)
    DATETIME = "datetime"
    DATE = "date"
    ENUM = "enum"


@dataclass(frozen=True)
class Col:
    """A scalar field: GraphQL ``name`` (its column is the name in snake case), what it
    holds, whether it may be null, and what it allows."""

    name: str
    kind: Kind
    null: bool = False
    enum: type[enum.Enum] | None = None
    filter: bool = False  # in the entity's filter input (indexed columns only)
    sort: bool = False  # in the entity's orderBy input (indexed columns only)
    sum: bool = False  # in aggregate.sum and aggregate.avg
    minmax: bool = False  # in aggregate.min and aggregate.max
    doc: str | None = None
    roles: frozenset[str] | None = None  # only these roles may select it (None: every role)
    # text: the most characters the column holds (its CHECK, migration 0019); a filter's
    # text longer than that could never match and cost PostgreSQL rows x its length
    chars: int | None = None

    def __post_init__(self) -> None:
        if self.kind is Kind.STRING and self.filter and self.chars is None:
            raise ValueError(f"{self.name}: a text column in a filter needs its chars")
        # roles are checked on selections only: such a column in a filter, an orderBy or an
        # aggregate input would answer other roles questions about it
        if self.roles is not None and (self.filter or self.sort or self.sum or self.minmax):
            raise ValueError(f"{self.name}: a column with roles cannot filter, sort or aggregate")

    @property
    def column(self) -> str:
        return snake(self.name)


class Shape(enum.Enum):
    ONE = "one"  # an object (null when the key is null or the row is invisible)
    LIST = "list"  # a plain list in the target's default order (bounded by the parent)
    CONNECTION = "connection"  # a Relay connection with filter, orderBy and paging


@dataclass(frozen=True)
class Rel:
    """``parent.local = target.remote``."""

    name: str
    target: str
    local: str
    remote: str
    shape: Shape
    filter: bool = True  # a some/none relation filter in the parent's filter input
    null: bool = False  # ONE: may be null
    doc: str | None = None


@dataclass(frozen=True)
class Prediction:
    """A prediction of a model about the row (its stored prediction, or computed)."""

    name: str
    kind: str  # ml.batch kind: "order", "ticket", "customer"
    model: str  # ml.specs model name
    result: str  # "StatusPrediction" | "ValuePrediction"
    roles: frozenset[str]
    doc: str | None = None


Field = Col | Rel | Prediction

STAFF = frozenset({"admin", "analyst", "service"})


@dataclass(frozen=True)
class Entity:
    name: str
    table: str  # schema-qualified
    fields: tuple[Field, ...]
    order: tuple[tuple[str, str], ...] = (("id", "asc"),)  # default ordering (column, dir)
    key: tuple[str, ...] = ("id",)  # columns that identify a row (the tie-breaker)
    by_id: str | None = None  # query root reading one row by id
    connection: str | None = None  # query root reading a connection
    doc: str | None = None
    plural: str = ""  # words in generated descriptions ("support tickets")
    filter_doc: str | None = None  # replaces the generated description of the filter

    @property
    def cols(self) -> dict[str, Col]:
        return {f.name: f for f in self.fields if isinstance(f, Col)}

    @property
    def rels(self) -> dict[str, Rel]:
        return {f.name: f for f in self.fields if isinstance(f, Rel)}

    @property
    def predictions(self) -> dict[str, Prediction]:
        return {f.name: f for f in self.fields if isinstance(f, Prediction)}

    def by_column(self, column: str) -> Col:
        """The field of a column (a key column the API does not expose, such as
        ``order_id`` of an order line, reads as an integer)."""
        for col in self.cols.values():
            if col.column == column:
                return col
        return Col(column, Kind.INT)


C, R, P = Col, Rel, Prediction
K = Kind
ONE, LIST, CONN = Shape.ONE, Shape.LIST, Shape.CONNECTION


def _newest_first(name: str, target: str, doc: str, remote: str = "customer_id") -> Rel:
    """A connection of the rows whose ``remote`` is this row's id, newest first."""
    return R(name, target, "id", remote, CONN, doc=f"{doc} (default: newest first).")


ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity(
            "Customer",
            "app.customers",
            (
                C("id", K.ID, filter=True, sort=True),
                C("email", K.STRING, filter=True, chars=254),
                C("firstName", K.STRING),
                C("lastName", K.STRING, filter=True, sort=True, chars=200),
                C("gender", K.ENUM, null=True, enum=enums.Gender),
                C("birthDate", K.DATE, null=True),
                C("segment", K.ENUM, enum=enums.Segment, filter=True, sort=True),
                C("country", K.STRING, filter=True, sort=True, chars=200),
                C("region", K.STRING, filter=True, chars=200),
                C("city", K.STRING, filter=True, chars=200),
                C("signupAt", K.DATETIME, filter=True, sort=True, minmax=True),
                P("expectedOrderValue", "customer", "order_value", "ValuePrediction", STAFF),
                P(
                    "churnRisk",
                    "customer",
                    "churn_risk",
                    "StatusPrediction",
                    STAFF,
                    doc="The risk that the customer places no order in the next 90 days "
                    "(churn_risk, from their orders up to now): `probability` is that risk "
                    "(of churned, whatever the label), `label` the likelier of churned and "
                    "active.",
                ),
                R("summary", "CustomerSummary", "id", "customer_id", ONE, filter=False),
                _newest_first("orders", "Order", "The customer's orders"),
                _newest_first("feedback", "Feedback", "The customer's feedback"),
                _newest_first("returns", "Return", "The customer's return requests"),
                _newest_first("supportTickets", "SupportTicket", "The customer's support tickets"),
            ),
            by_id="customer",
            connection="customers",
            doc="A person or company who buys.",
            plural="customers",
        ),
        Entity(
            "CustomerSummary",
            "app.customer_summary",
            (
                C("orderCount", K.INT),
                C("lifetimeValue", K.DECIMAL),
                C("averageOrderValue", K.DECIMAL, null=True),
                C("firstOrderAt", K.DATETIME, null=True),
                C("lastOrderAt", K.DATETIME, null=True),
                C("returnRate", K.FLOAT, null=True),
                C("averageRating", K.FLOAT, null=True),
                C("openTicketCount", K.INT),
            ),
            order=(("customer_id", "asc"),),
            key=("customer_id",),
            doc="Derived figures of one customer (view app.customer_summary). orderCount: "
            "orders not cancelled; lifetimeValue: orders once paid minus approved refunds; "
            "returnRate: approved returned units / delivered units (null if none delivered).",
        ),
        Entity(
            "Order",
            "app.orders",
            (
                C("id", K.ID, filter=True, sort=True),
                C("status", K.ENUM, enum=enums.OrderStatus, filter=True),
                C("orderedAt", K.DATETIME, filter=True, sort=True, minmax=True),
                C("paidAt", K.DATETIME, null=True),
                C("shippedAt", K.DATETIME, null=True),
                C("deliveredAt", K.DATETIME, null=True),
                C("channel", K.ENUM, enum=enums.OrderChannel),
                C("paymentMethod", K.ENUM, enum=enums.PaymentMethod),
                C("itemCount", K.INT, sum=True, minmax=True, doc="Sum of line quantities."),
                C(
                    "totalAmount",
                    K.MONEY,
                    filter=True,
                    sort=True,
                    sum=True,
                    minmax=True,
                    doc="Subtotal minus discounts.",
                ),
                P("predictedStatus", "order", "order_status", "StatusPrediction", STAFF),
                P("predictedTotal", "order", "order_value", "ValuePrediction", STAFF),
                R("customer", "Customer", "customer_id", "id", ONE),
                R(
                    "items",
                    "OrderItem",
                    "id",
                    "order_id",
                    LIST,
                    doc="The order's lines, by line number.",
                ),
                R(
                    "statusHistory",
                    "OrderStatusChange",
                    "id",
                    "order_id",
                    LIST,
                    filter=False,
                    doc="Every status change, oldest first.",
                ),
                R(
                    "returns",
                    "Return",
                    "id",
                    "order_id",
                    CONN,
                    doc="Return requests on this order's lines.",
                ),
            ),
            order=(("ordered_at", "desc"),),
            by_id="order",
            connection="orders",
            doc="An order: status, times, channel, payment, totals and lines.",
            plural="orders",
        ),
        Entity(
            "OrderItem",
            "app.order_items",
            (
                C("lineNo", K.INT),
                C("quantity", K.INT, filter=True),
                C("unitPrice", K.MONEY, filter=True),
                C("discount", K.MONEY),
                C("lineTotal", K.MONEY, filter=True),
                R("product", "Product", "product_id", "id", ONE),
            ),
            order=(("line_no", "asc"),),
            key=("order_id", "line_no"),
            doc="One line of an order; unitPrice was copied when ordered.",
            filter_doc="Filter on order lines, only inside an order's items (the join is the "
            "primary key): quantity, unitPrice, lineTotal; relation product.",
        ),
        Entity(
            "OrderStatusChange",
            "app.order_status_history",
            (
                C("id", K.ID),
                C("fromStatus", K.ENUM, null=True, enum=enums.OrderStatus),
                C("toStatus", K.ENUM, enum=enums.OrderStatus),
                C("changedAt", K.DATETIME),
                # who made the change (an API key's or a token's actor): staff only, a
                # customer never learns the shop's staff or integrations
                C(
                    "changedBy",
                    K.STRING,
                    null=True,
                    roles=STAFF,
                    doc="Who made the change (the API key's or token's actor). Staff roles only.",
                ),
            ),
            order=(("changed_at", "asc"),),
            doc="One status change of an order (audit written by a trigger).",
        ),
        Entity(
            "Product",
            "app.products",
            (
                C("id", K.ID, filter=True, sort=True),
                C("sku", K.STRING, filter=True, sort=True, chars=32),
                C("name", K.STRING, filter=True, sort=True, chars=200),
                C("category", K.STRING, filter=True, sort=True, chars=200),
                C("subcategory", K.STRING, filter=True, chars=200),
                C("brand", K.STRING, filter=True, sort=True, chars=200),
                C("unitPrice", K.MONEY, filter=True, sort=True, sum=True, minmax=True),
                C("stock", K.INT, sum=True, minmax=True),
                _newest_first("feedback", "Feedback", "Feedback about this product", "product_id"),
            ),
            by_id="product",
            connection="products",
            doc="A catalogue item; stock is decremented by placeOrder only.",
            plural="products",
        ),
        Entity(
            "SupportTicket",
            "app.support_tickets",
            (
                C("id", K.ID, filter=True, sort=True),
                C("category", K.ENUM, enum=enums.TicketCategory),
                C("priority", K.ENUM, enum=enums.TicketPriority, filter=True),
                C("channel", K.ENUM, enum=enums.TicketChannel),
                C("status", K.ENUM, enum=enums.TicketStatus, filter=True),
                C("subject", K.STRING),
                C("openedAt", K.DATETIME, filter=True, sort=True, minmax=True),
                C("resolvedAt", K.DATETIME, null=True),
                C("closedAt", K.DATETIME, null=True),
                C("satisfaction", K.INT, null=True, sum=True, minmax=True),
                P("predictedStatus", "ticket", "support_status", "StatusPrediction", STAFF),
                R("customer", "Customer", "customer_id", "id", ONE),
                R("order", "Order", "order_id", "id", ONE, null=True),
            ),
            order=(("opened_at", "desc"),),
            by_id="supportTicket",
            connection="supportTickets",
            doc="A support ticket: open -> in_progress -> resolved -> closed.",
            plural="support tickets",
        ),
        Entity(
            "Return",
            "app.returns",
            (
                C("id", K.ID, filter=True, sort=True),
                C("lineNo", K.INT),
                C("reason", K.ENUM, enum=enums.ReturnReason),
                C("quantity", K.INT, sum=True, minmax=True),
                C("status", K.ENUM, enum=enums.ReturnStatus, filter=True),
                C("refundAmount", K.MONEY, null=True, sum=True, minmax=True),
                C(
                    "comment",
                    K.STRING,
                    null=True,
                    doc="What the customer wrote when asking for the return; the shop never "
                    "rewrites it.",
                ),
                C("requestedAt", K.DATETIME, filter=True, sort=True, minmax=True),
                C("decidedAt", K.DATETIME, null=True),
                # the shop's note on its decision (probe 22, M1: it was written over the
                # customer's comment, which the customer reads): staff only, as changedBy
                C(
                    "decisionComment",
                    K.STRING,
                    null=True,
                    roles=STAFF,
                    doc="The shop's note on its decision (rejectReturn's comment), kept apart "
                    "from the customer's comment. Staff roles only: a customer is refused it.",
                ),
                R("customer", "Customer", "customer_id", "id", ONE),
                R("order", "Order", "order_id", "id", ONE),
            ),
            order=(("requested_at", "desc"),),
            connection="returns",
            doc="A return request for units of one order line.",
            plural="returns",
        ),
        Entity(
            "Feedback",
            "app.feedback",
            (
                C("id", K.ID, filter=True, sort=True),
                C("kind", K.ENUM, enum=enums.FeedbackKind),
                C("rating", K.INT, sum=True, minmax=True),
                C("comment", K.STRING, null=True),
                C("createdAt", K.DATETIME, filter=True, sort=True, minmax=True),
                R("customer", "Customer", "customer_id", "id", ONE),
                R("order", "Order", "order_id", "id", ONE, null=True),
                R("product", "Product", "product_id", "id", ONE, null=True),
            ),
            order=(("created_at", "desc"),),
            connection="feedback",
            doc="A rating (1-5) with a review or complaint.",
            plural="feedback",
        ),
    )
}

# the query roots: name -> (entity, is a connection)
ROOTS: Mapping[str, tuple[Entity, bool]] = {
    **{e.by_id: (e, False) for e in ENTITIES.values() if e.by_id},
    **{e.connection: (e, True) for e in ENTITIES.values() if e.connection},
}


# fields only some roles may select, by (type, field): the prediction fields and the
# columns declared with roles
FIELD_ROLES: Mapping[tuple[str, str], frozenset[str]] = {
    **{(e.name, p.name): p.roles for e in ENTITIES.values() for p in e.predictions.values()},
    **{(e.name, c.name): c.roles for e in ENTITIES.values() for c in e.cols.values() if c.roles},
}


def entity(name: str) -> Entity:
    return ENTITIES[name]
