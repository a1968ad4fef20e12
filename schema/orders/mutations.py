"""Mutations of orders, through the database procedures (so the rules hold for every
writer): ``placeOrder`` → ``app.place_order``, ``setOrderStatus`` → ``app.set_order_status``.

``placeOrder`` takes an idempotency key (``input.idempotencyKey`` or the request's
``Idempotency-Key`` header): the key is written in the order's transaction
(``app.idempotency_keys``, per principal), so a retry with the same key returns the first
order and never places a second one; the same key with another basket is a CONFLICT.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import strawberry
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from db.errors import BadUserInputError, ConflictError
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
    discount: Decimal | None = strawberry.field(
        default=None,
        description="Admin and service principals only; at most the line's quantity x price.",
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


_KEY_MAX = 200
_KEYS = sa.text(
    "INSERT INTO app.idempotency_keys (principal, key, request_sha256)"
    " VALUES (app.current_actor(), :k, :h) ON CONFLICT DO NOTHING RETURNING 1"
)
_KEY_FOUND = sa.text(
    "SELECT request_sha256, order_id FROM app.idempotency_keys"
    " WHERE principal = app.current_actor() AND key = :k"
)
_KEY_ORDER = sa.text(
    "UPDATE app.idempotency_keys SET order_id = :o"
    " WHERE principal = app.current_actor() AND key = :k"
)


def _key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= _KEY_MAX or not value.isprintable():
        raise BadUserInputError(
            f"an idempotency key has 1 to {_KEY_MAX} printable characters",
            field="idempotencyKey",
        )
    return value


def _idempotent(key: str | None, request: dict[str, Any], place: Any) -> Any:
    """``place(conn)`` guarded by the idempotency key (if any), in the same transaction."""
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
        order_id = int(place(conn))
        conn.execute(_KEY_ORDER, {"o": order_id, "k": key})
        return order_id

    return run


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
        customer = parse_id(input.customer_id, "customerId")
        fn = sa.func.app.place_order(
            customer,
            sa.bindparam("items", items, type_=JSONB),
            input.channel.value,
            input.payment_method.value,
        )
        key = _key(
            input.idempotency_key
            if input.idempotency_key is not None
            else info.context.idempotency_key
        )
        request = {
            "customer": customer,
            "items": items,
            "channel": input.channel.value,
            "payment": input.payment_method.value,
        }
        write = _idempotent(key, request, call_returning_id(fn, composite=False))
        return await write_and_read(info, write, catalog.ORDER, build_order)

    @mutation(
        "pending -> paid -> shipped -> delivered; pending/paid -> cancelled; "
        "delivered -> returned. Anything else: INVALID_TRANSITION (from, to). A customer "
        "may only cancel its own order."
    )
    async def set_order_status(
        self, info: Info, order_id: strawberry.ID, status: OrderStatus
    ) -> Order:
        fn = sa.func.app.set_order_status(parse_id(order_id, "orderId"), status.value)
        write = call_returning_id(fn, composite=True)
        return await write_and_read(info, write, catalog.ORDER, build_order)
