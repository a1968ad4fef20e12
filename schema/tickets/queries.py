"""Query roots of tickets: `supportTicket(id)` (null when unknown) and `supportTickets(...)`."""

from __future__ import annotations

import strawberry

from schema import catalog
from schema.context import Info
from schema.fields import described
from schema.filters import parse_id
from schema.inputs import SupportTicketFilter, SupportTicketOrderBy
from schema.nodes import handle, load_one
from schema.tickets.types import SupportTicket, SupportTicketConnection, build_ticket


@strawberry.type
class SupportTicketQueries:
    @described("The SupportTicket with this id, or null if there is none.")
    async def support_ticket(self, info: Info, id: strawberry.ID) -> SupportTicket | None:
        row = await load_one(info, catalog.SUPPORT_TICKET, parse_id(id))
        return None if row is None else build_ticket(row)

    @described("SupportTickets matching the filter, one page at a time.")
    def support_tickets(
        self,
        info: Info,
        filter: SupportTicketFilter | None = None,
        order_by: list[SupportTicketOrderBy] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> SupportTicketConnection:
        h = handle(info, "Query.supportTickets", catalog.SUPPORT_TICKET, None, None,
                   build_ticket, filter, order_by, first, after, last, before)  # fmt: skip
        return SupportTicketConnection(_h=h)
