"""Mutations of returns, through ``app.request_return`` / ``approve_return`` / ``reject_return``."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
import strawberry

from schema import catalog
from schema.context import Info
from schema.enums import ReturnReason
from schema.filters import parse_id
from schema.returns.types import Return, build_return
from schema.writes import call_returning_id, int_arg, write_and_read


@strawberry.input
class RequestReturnInput:
    order_id: strawberry.ID
    line_no: int
    quantity: int
    reason: ReturnReason
    comment: str | None = None


@strawberry.type
class ReturnMutations:
    @strawberry.mutation
    async def request_return(self, info: Info, input: RequestReturnInput) -> Return:
        fn = sa.func.app.request_return(
            parse_id(input.order_id, "orderId"),
            int_arg(input.line_no),
            int_arg(input.quantity),
            input.reason.value,
            input.comment,
        )
        return await write_and_read(
            info, call_returning_id(fn, composite=False), catalog.RETURN, build_return
        )

    @strawberry.mutation
    async def approve_return(
        self, info: Info, return_id: strawberry.ID, refund_amount: Decimal | None = None
    ) -> Return:
        fn = sa.func.app.approve_return(parse_id(return_id, "returnId"), refund_amount)
        return await write_and_read(
            info, call_returning_id(fn, composite=True), catalog.RETURN, build_return
        )

    @strawberry.mutation
    async def reject_return(
        self, info: Info, return_id: strawberry.ID, comment: str | None = None
    ) -> Return:
        fn = sa.func.app.reject_return(parse_id(return_id, "returnId"), comment)
        return await write_and_read(
            info, call_returning_id(fn, composite=True), catalog.RETURN, build_return
        )
