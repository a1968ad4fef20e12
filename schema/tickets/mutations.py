"""Mutations of support tickets, through ``app.open_ticket`` / ``app.set_ticket_status``."""

from __future__ import annotations

import sqlalchemy as sa
import strawberry

from schema import catalog
from schema.context import Info
from schema.enums import TicketCategory, TicketChannel, TicketPriority, TicketStatus
from schema.fields import mutation
from schema.filters import parse_id
from schema.tickets.types import SupportTicket, build_ticket
from schema.writes import call_returning_id, int_arg, write_and_read


@strawberry.input
class OpenSupportTicketInput:
    customer_id: strawberry.ID
    category: TicketCategory
    channel: TicketChannel
    subject: str
    priority: TicketPriority = TicketPriority.MEDIUM
    order_id: strawberry.ID | None = None


@strawberry.type
class SupportTicketMutations:
    @strawberry.mutation
    async def open_support_ticket(self, info: Info, input: OpenSupportTicketInput) -> SupportTicket:
        fn = sa.func.app.open_ticket(
            parse_id(input.customer_id, "customerId"),
            input.category.value,
            input.priority.value,
            input.channel.value,
            input.subject,
            None if input.order_id is None else parse_id(input.order_id, "orderId"),
        )
        return await write_and_read(
            info, call_returning_id(fn, composite=False), catalog.SUPPORT_TICKET, build_ticket
        )

    @mutation("Resolving sets resolvedAt; reopening clears it; closed is final.")
    async def update_support_ticket(
        self,
        info: Info,
        ticket_id: strawberry.ID,
        status: TicketStatus,
        satisfaction: int | None = None,
    ) -> SupportTicket:
        fn = sa.func.app.set_ticket_status(
            parse_id(ticket_id, "ticketId"), status.value, int_arg(satisfaction)
        )
        return await write_and_read(
            info, call_returning_id(fn, composite=True), catalog.SUPPORT_TICKET, build_ticket
        )
