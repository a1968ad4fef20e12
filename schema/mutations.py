"""Mutations: the mutation fields of an operation run in ONE transaction with the request's
session settings (role, row-level security; ``Context.run_write``), committed after the
last has answered, else rolled back whole (schema.execute.Executor.run): an operation is
written all or nothing. Each writes through the database's procedures (placeOrder, order
status, returns, tickets: their rules hold for every writer) or plain INSERT/UPDATE whose
constraints give the errors, and reads its payload in that transaction, compiled like any
other read (schema.execute.read_node): a committed write always has its answer.

``placeOrder`` takes an idempotency key (``input.idempotencyKey`` or the request's
``Idempotency-Key`` header): written in the order's transaction, and rolled back with it
(``app.idempotency_keys``, per customer for a customer principal, whichever of its token
and API keys sends it, else per principal: ``app.idempotency_scope()``), so a retry with
the same key returns the first order and never places a second one; the same key with
another basket is a CONFLICT.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import strawberry
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from strawberry import UNSET

from db.errors import BadUserInputError, ConflictError, NotFoundError, camel
from schema.catalog import ENTITIES
from schema.context import F, Info
from schema.enums import (
    FeedbackKind,
    Gender,
    OrderChannel,
    OrderStatus,
    PaymentMethod,
    ReturnReason,
    Segment,
    TicketCategory,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from schema.execute import completed, node_reader
from schema.scalars import parse_id

ADMIN = frozenset({"admin"})
OPERATORS = frozenset({"admin", "service"})
ORDERING = frozenset({"admin", "service", "customer"})
MAX_LINES = 100  # lines of one order: the query cost counts an order's items as 10
# units a customer key's unpaid (pending) orders hold together: the stock they take is
# the shop's until paid or cancelled (one key held every product's stock in one order)
MAX_PENDING_UNITS = 100

Write = Callable[[Connection], int]


async def _write_and_read(info: Info, write: Write, entity: str) -> Any:
    """Run ``write`` (returns the changed row's id) and read its payload, in the operation's
    write transaction (its predictions too: :meth:`Context.read`)."""
    payload = node_reader(info, ENTITIES[entity])
    stmt, data = await info.context.run_write(lambda conn: payload(conn, write(conn)))
    return await completed(info.context, stmt, data)


def _call(fn: sa.Function[Any], *, composite: bool = False) -> Write:
    """A procedure that returns an id (or, with ``composite``, a row with an id)."""

    def run(conn: Connection) -> int:
        stmt = sa.select(fn.table_valued("id").c.id) if composite else sa.select(fn)
        return int(conn.execute(stmt).scalar_one())

    return run


def _int(value: int | None) -> sa.ColumnElement[Any]:
    """A GraphQL ``Int`` as an ``integer`` procedure argument (untyped, SQLAlchemy types
    -2**31 as BIGINT, and no function with an ``integer`` parameter matches it)."""
    return sa.literal(value, sa.Integer)


def _maybe_id(value: strawberry.ID | None, what: str) -> int | None:
    return None if value is None else parse_id(value, what)


def _values(obj: Any) -> dict[str, Any]:
    """The fields of an input object that were given (not UNSET), by column."""
    return {
        spec.name: value.value if isinstance(value, enum.Enum) else value
        for spec in dataclasses.fields(obj)
        if (value := getattr(obj, spec.name)) is not UNSET
    }


# the numeric columns of a table and the values their types hold, read once per process:
# PostgreSQL refuses a number its column cannot hold (22003) without naming the column
_NUMERIC_COLUMNS = sa.text(
    "SELECT column_name, data_type, numeric_precision, numeric_scale"
    " FROM information_schema.columns WHERE table_schema = :s AND table_name = :t"
    " AND data_type IN ('smallint', 'integer', 'bigint', 'numeric')"
    " AND numeric_precision IS NOT NULL"
)
_RANGES: dict[str, dict[str, tuple[Decimal, Decimal]]] = {}


def _ranges(conn: Connection, table: str) -> dict[str, tuple[Decimal, Decimal]]:
    """Per numeric column of ``table``, the least and the greatest value it holds."""
    found = _RANGES.get(table)
    if found is None:
        schema_name, name = table.split(".")
        found = {}
        for column, kind, precision, scale in conn.execute(
            _NUMERIC_COLUMNS, {"s": schema_name, "t": name}
        ):
            if kind == "numeric":  # numeric(12,2): 9,999,999,999.99
                top = Decimal(10) ** (precision - scale) - Decimal(10) ** -scale
                found[str(column)] = (-top, top)
            else:  # smallint: precision 16 (bits)
                half = Decimal(2) ** (precision - 1)
                found[str(column)] = (-half, half - 1)
        _RANGES[table] = found
    return found


def _check_ranges(conn: Connection, table: str, values: dict[str, Any]) -> None:
    """BAD_USER_INPUT naming the field of a number its column cannot hold."""
    ranges = _ranges(conn, table)
    for column, value in values.items():
        if column not in ranges or isinstance(value, bool) or not isinstance(value, int | Decimal):
            continue
        least, greatest = ranges[column]
        if not least <= value <= greatest:
            field = camel(column)
            bound = f"at most {greatest:,}" if value > greatest else f"at least {least:,}"
            raise BadUserInputError(
                f"invalid {field}: {value} is out of range ({bound})",
                field=field,
                reason="out of range",
                value=str(value),
            )


def _table(table: str, values: dict[str, Any]) -> sa.TableClause:
    schema_name, name = table.split(".")
    return sa.table(name, *(sa.column(c) for c in values), sa.column("id"), schema=schema_name)


def _insert(table: str, values: dict[str, Any]) -> Write:
    t = _table(table, values)

    def run(conn: Connection) -> int:
        _check_ranges(conn, table, values)
        return int(conn.execute(sa.insert(t).values(**values).returning(t.c.id)).scalar_one())

    return run


def _update(table: str, entity: str, row_id: int, values: dict[str, Any]) -> Write:
    if not values:
        raise BadUserInputError("nothing to update: give at least one field", field="input")
    t = _table(table, values)

    def run(conn: Connection) -> int:
        _check_ranges(conn, table, values)
        found = conn.execute(
            sa.update(t).where(t.c.id == row_id).values(**values).returning(t.c.id)
        ).scalar_one_or_none()
        if found is None:
            raise NotFoundError(f"{entity} {row_id} not found", entity=entity, id=row_id)
        return int(found)

    return run


# --- inputs ----------------------------------------------------------------------------------


@strawberry.input
class CreateCustomerInput:
    email: str
    first_name: str
    last_name: str
    country: str
    region: str
    city: str
    segment: Segment = Segment.CONSUMER
    gender: Gender | None = None
    birth_date: dt.date | None = None


@strawberry.input(description="Only the fields given are changed.")
class UpdateCustomerInput:
    email: str | None = UNSET
    first_name: str | None = UNSET
    last_name: str | None = UNSET
    country: str | None = UNSET
    region: str | None = UNSET
    city: str | None = UNSET
    segment: Segment | None = UNSET
    gender: Gender | None = UNSET
    birth_date: dt.date | None = UNSET


@strawberry.input
class CreateProductInput:
    sku: str
    name: str
    category: str
    subcategory: str
    brand: str
    unit_price: Decimal
    cost: Decimal
    stock: int = 0


@strawberry.input(description="Only the fields given are changed.")
class UpdateProductInput:
    name: str | None = UNSET
    category: str | None = UNSET
    subcategory: str | None = UNSET
    brand: str | None = UNSET
    unit_price: Decimal | None = UNSET
    cost: Decimal | None = UNSET
    stock: int | None = UNSET


@strawberry.input
class OrderItemInput:
    product_id: strawberry.ID
    quantity: int
    discount: Decimal | None = strawberry.field(
        default=None,
        description="Admin and service principals only; at most the line's quantity x price.",
        metadata={"roles": OPERATORS},
    )


@strawberry.input
class PlaceOrderInput:
    customer_id: strawberry.ID
    items: list[OrderItemInput]
    channel: OrderChannel
    payment_method: PaymentMethod
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Retrying with the same key returns the first order instead of placing"
        " another (kept 24 hours, per principal; or the Idempotency-Key header).",
    )


@strawberry.input
class RequestReturnInput:
    order_id: strawberry.ID
    line_no: int
    quantity: int
    reason: ReturnReason
    comment: str | None = None


@strawberry.input
class SubmitFeedbackInput:
    customer_id: strawberry.ID
    rating: int
    kind: FeedbackKind = FeedbackKind.REVIEW
    order_id: strawberry.ID | None = None
    product_id: strawberry.ID | None = None
    comment: str | None = None


@strawberry.input(description="Only the fields given are changed.")
class UpdateFeedbackInput:
    rating: int | None = UNSET
    comment: str | None = UNSET


@strawberry.input
class OpenSupportTicketInput:
    customer_id: strawberry.ID
    category: TicketCategory
    channel: TicketChannel
    subject: str
    priority: TicketPriority = TicketPriority.MEDIUM
    order_id: strawberry.ID | None = None


# --- placeOrder's idempotency keys -------------------------------------------------------

_KEY_MAX = 200
_KEYS = sa.text(
    "INSERT INTO app.idempotency_keys (principal, key, request_sha256)"
    " VALUES (app.idempotency_scope(), :k, :h) ON CONFLICT DO NOTHING RETURNING 1"
)
_KEY_FOUND = sa.text(
    "SELECT request_sha256, order_id FROM app.idempotency_keys"
    " WHERE principal = app.idempotency_scope() AND key = :k"
)
_KEY_ORDER = sa.text(
    "UPDATE app.idempotency_keys SET order_id = :o"
    " WHERE principal = app.idempotency_scope() AND key = :k"
)


def _key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= _KEY_MAX or not value.isprintable() or value.isspace():
        raise BadUserInputError(
            f"an idempotency key has 1 to {_KEY_MAX} printable characters, not only spaces",
            field="idempotencyKey",
        )
    return value


_PENDING_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtextextended('cdms:pending:' || :c, 0))")
_PENDING_UNITS = sa.text(
    "SELECT coalesce(sum(i.quantity), 0) FROM app.orders AS o"
    " JOIN app.order_items AS i ON i.order_id = o.id"
    " WHERE o.customer_id = :c AND o.status = 'pending' AND app.is_customer_actor(o.created_by)"
)


def _within_pending(customer: int, place: Write) -> Write:
    """``place`` if the customer's pending orders and this one hold at most
    MAX_PENDING_UNITS units (the customer's orders are placed one at a time for it)."""

    def run(conn: Connection) -> int:
        conn.execute(_PENDING_LOCK, {"c": str(customer)})
        order_id = place(conn)  # its own refusals first (a line's quantity, the stock)
        held = int(conn.execute(_PENDING_UNITS, {"c": customer}).scalar_one())
        if held > MAX_PENDING_UNITS:  # (the order is pending: counted; rolled back here)
            raise BadUserInputError(
                f"unpaid orders hold at most {MAX_PENDING_UNITS} units for a customer:"
                f" this order would make it {held}; pay or cancel one first",
                field="items",
                reason="unpaid units over the maximum",
                value=held,
                max=MAX_PENDING_UNITS,
            )
        return order_id

    return run


def _idempotent(key: str | None, request: dict[str, Any], place: Write) -> Write:
    """``place`` guarded by the idempotency key (if any), in the same transaction."""
    if key is None:
        return place
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()

    def run(conn: Connection) -> int:
        if conn.execute(_KEYS, {"k": key, "h": digest}).first() is None:
            found = conn.execute(_KEY_FOUND, {"k": key}).one()
            if found.request_sha256 != digest:
                raise ConflictError(
                    "this idempotency key was used for another order: use a new key",
                    reason="idempotency_key_reused",
                    field="idempotencyKey",
                )
            return int(found.order_id)
        order_id = place(conn)
        conn.execute(_KEY_ORDER, {"o": order_id, "k": key})
        return order_id

    return run


# --- the mutations -----------------------------------------------------------------------


def _mutation(
    returns: str, roles: frozenset[str], doc: str | None = None, **extra: Any
) -> Callable[[F], F]:
    """A mutation returning the catalog type ``returns``, for ``roles`` (api/access.py);
    ``extra`` metadata: ``values`` an argument is limited to, by role."""
    from schema import types

    decorator: Callable[[F], F] = strawberry.mutation(
        graphql_type=getattr(types, returns), description=doc, metadata={"roles": roles, **extra}
    )
    return decorator


@strawberry.type
class Mutation:
    @_mutation("Customer", ADMIN)
    async def create_customer(self, info: Info, input: CreateCustomerInput) -> Any:
        return await _write_and_read(info, _insert("app.customers", _values(input)), "Customer")

    @_mutation("Customer", ADMIN)
    async def update_customer(
        self, info: Info, id: strawberry.ID, input: UpdateCustomerInput
    ) -> Any:
        write = _update("app.customers", "customer", parse_id(id), _values(input))
        return await _write_and_read(info, write, "Customer")

    @_mutation("Product", ADMIN)
    async def create_product(self, info: Info, input: CreateProductInput) -> Any:
        return await _write_and_read(info, _insert("app.products", _values(input)), "Product")

    @_mutation("Product", ADMIN)
    async def update_product(self, info: Info, id: strawberry.ID, input: UpdateProductInput) -> Any:
        write = _update("app.products", "product", parse_id(id), _values(input))
        return await _write_and_read(info, write, "Product")

    @_mutation(
        "Order",
        ORDERING,
        "Places an order atomically: locks stock (no oversell), copies prices. "
        "Errors: NOT_FOUND, BAD_USER_INPUT (empty basket, more than 100 lines, quantity < 1 "
        "or > 100,000, a total over 1,000,000,000.00 before discounts; for a customer key, "
        "more than 100 units in its unpaid orders), OUT_OF_STOCK, RATE_LIMITED (a customer "
        "key's 101st order in 24 hours; retryAfter).",
    )
    async def place_order(self, info: Info, input: PlaceOrderInput) -> Any:
        if len(input.items) > MAX_LINES:
            raise BadUserInputError(
                f"an order holds at most {MAX_LINES} lines, got {len(input.items)}",
                field="items",
                reason="too many lines",
                value=len(input.items),
                max=MAX_LINES,
            )
        items = [
            {
                "product_id": parse_id(i.product_id, "productId"),
                "quantity": i.quantity,
                **({} if i.discount is None else {"discount": f"{i.discount:f}"}),
            }
            for i in input.items
        ]
        customer = parse_id(input.customer_id, "customerId")
        fn = sa.func.app.place_order(
            customer,
            sa.bindparam("items", items, type_=JSONB),
            input.channel.value,
            input.payment_method.value,
        )
        header = info.context.idempotency_key
        if None not in (input.idempotency_key, header) and input.idempotency_key != header:
            raise BadUserInputError(
                "input.idempotencyKey and the Idempotency-Key header differ: send one key",
                field="idempotencyKey",
            )
        key = _key(input.idempotency_key if input.idempotency_key is not None else header)
        request = {"customer": customer, "items": items, "channel": input.channel.value,
                   "payment": input.payment_method.value}  # fmt: skip
        place = _call(fn)
        if info.context.role == "customer":  # the shop's own keys are not bound
            place = _within_pending(customer, place)
        return await _write_and_read(info, _idempotent(key, request, place), "Order")

    @_mutation(
        "Order",
        ORDERING,
        "pending -> paid -> shipped -> delivered; pending/paid -> cancelled; "
        "delivered -> returned only once approved returns cover every unit, which "
        "approveReturn does itself (else reason 'units not returned', units, "
        "returnedUnits). Anything else: INVALID_TRANSITION (from, to). A customer may only "
        "cancel its own order.",
        values={"status": {"customer": {"CANCELLED"}}},
    )
    async def set_order_status(
        self, info: Info, order_id: strawberry.ID, status: OrderStatus
    ) -> Any:
        fn = sa.func.app.set_order_status(parse_id(order_id, "orderId"), status.value)
        return await _write_and_read(info, _call(fn, composite=True), "Order")

    @_mutation(
        "Return",
        ORDERING,
        "Asks to return units of a DELIVERED order's line. CONFLICT: the order is not "
        "delivered. BAD_USER_INPUT: more units than bought less those already requested or "
        "approved (quantity); for a customer key, more than 30 days after delivery, whatever "
        "the reason (orderId, reason 'return window closed', windowEnd): the shop's keys "
        "make exceptions.",
    )
    async def request_return(self, info: Info, input: RequestReturnInput) -> Any:
        fn = sa.func.app.request_return(
            parse_id(input.order_id, "orderId"),
            _int(input.line_no),
            _int(input.quantity),
            input.reason.value,
            input.comment,
        )
        return await _write_and_read(info, _call(fn), "Return")

    @_mutation(
        "Return",
        OPERATORS,
        "Approves a requested return: restocks its units and refunds refundAmount, by "
        "default what was paid for them (their share of the line; the shares of a line's "
        "units add up to its lineTotal). BAD_USER_INPUT (refundAmount, max): a refund below "
        "0, with more than 2 decimals, or above that share or what is left of the line after "
        "its earlier refunds. INVALID_TRANSITION: already decided.",
    )
    async def approve_return(
        self, info: Info, return_id: strawberry.ID, refund_amount: Decimal | None = None
    ) -> Any:
        fn = sa.func.app.approve_return(parse_id(return_id, "returnId"), refund_amount)
        return await _write_and_read(info, _call(fn, composite=True), "Return")

    @_mutation(
        "Return",
        OPERATORS,
        "Rejects a requested return. comment: the shop's note on the decision, stored as "
        "decisionComment (staff roles only; at most 10,000 characters, BAD_USER_INPUT "
        "(comment, reason 'too long', max)); the customer's own comment is kept as it is. "
        "INVALID_TRANSITION: already decided.",
    )
    async def reject_return(
        self, info: Info, return_id: strawberry.ID, comment: str | None = None
    ) -> Any:
        fn = sa.func.app.reject_return(parse_id(return_id, "returnId"), comment)
        return await _write_and_read(info, _call(fn, composite=True), "Return")

    @_mutation(
        "Feedback",
        frozenset({"admin", "customer"}),
        "A review or complaint (rules: app.feedback_rules, migration 0028). BAD_USER_INPUT: a "
        "productId not in the orderId given; a REVIEW without productId; for a customer key, "
        "a REVIEW of a product not delivered to it (or of an order not delivered), a "
        "COMPLAINT about a product it never ordered. CONFLICT: a second REVIEW of a product "
        "by the customer (id: the first). RATE_LIMITED: a customer key's 21st feedback in "
        "24 hours (retryAfter).",
    )
    async def submit_feedback(self, info: Info, input: SubmitFeedbackInput) -> Any:
        values = {
            "customer_id": parse_id(input.customer_id, "customerId"),
            "order_id": _maybe_id(input.order_id, "orderId"),
            "product_id": _maybe_id(input.product_id, "productId"),
            "kind": input.kind.value,
            "rating": input.rating,
            "comment": input.comment,
        }
        return await _write_and_read(info, _insert("app.feedback", values), "Feedback")

    @_mutation(
        "Feedback",
        frozenset({"admin", "customer"}),
        "Changes a feedback's rating or comment (what it is about stays; a customer key: its "
        "own feedback). NOT_FOUND: no such feedback, or another customer's. BAD_USER_INPUT: "
        "nothing given, a rating outside 1-5, a null rating. RATE_LIMITED: a customer key's "
        "21st edit in 24 hours, of any of its feedback (retryAfter; app.feedback_edit_limit, "
        "migration 0033).",
    )
    async def update_feedback(
        self, info: Info, id: strawberry.ID, input: UpdateFeedbackInput
    ) -> Any:
        write = _update("app.feedback", "feedback", parse_id(id), _values(input))
        return await _write_and_read(info, write, "Feedback")

    @_mutation(
        "SupportTicket",
        ORDERING,
        "Opens a ticket. RATE_LIMITED: a customer key's 21st ticket in 24 hours (retryAfter).",
    )
    async def open_support_ticket(self, info: Info, input: OpenSupportTicketInput) -> Any:
        fn = sa.func.app.open_ticket(
            parse_id(input.customer_id, "customerId"),
            input.category.value,
            input.priority.value,
            input.channel.value,
            input.subject,
            _maybe_id(input.order_id, "orderId"),
        )
        return await _write_and_read(info, _call(fn), "SupportTicket")

    @_mutation(
        "SupportTicket",
        OPERATORS,
        "Resolving sets resolvedAt; reopening clears it; closed is final.",
    )
    async def update_support_ticket(
        self,
        info: Info,
        ticket_id: strawberry.ID,
        status: TicketStatus,
        satisfaction: int | None = None,
    ) -> Any:
        fn = sa.func.app.set_ticket_status(
            parse_id(ticket_id, "ticketId"), status.value, _int(satisfaction)
        )
        return await _write_and_read(info, _call(fn, composite=True), "SupportTicket")
