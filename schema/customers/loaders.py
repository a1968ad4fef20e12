"""Customer summary, batched: one read of the ``app.customer_summary`` view per response."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from strawberry.dataloader import DataLoader

from schema import tables as T
from schema.context import Context, Info

if TYPE_CHECKING:
    from schema.customers.types import CustomerSummary


def summary_statement(ids: list[int]) -> sa.Select[Any]:
    """The view's rows for ``ids`` (its aggregates are LATERAL per customer, indexed)."""
    v = T.customer_summary
    return sa.select(v).where(
        v.c.customer_id == sa.func.any(sa.bindparam("ids", ids, type_=ARRAY(sa.BigInteger)))
    )


def summary_loader(ctx: Context) -> DataLoader[int, Any]:
    from schema.customers.types import CustomerSummary

    async def load(keys: list[int]) -> list[Any]:
        rows = await ctx.db.fetch(summary_statement(keys))
        by_id = {
            row.customer_id: CustomerSummary(
                order_count=int(row.order_count),
                lifetime_value=row.lifetime_value,
                average_order_value=row.average_order_value,
                first_order_at=row.first_order_at,
                last_order_at=row.last_order_at,
                return_rate=None if row.return_rate is None else float(row.return_rate),
                average_rating=None if row.average_rating is None else float(row.average_rating),
                open_ticket_count=int(row.open_ticket_count),
            )
            for row in rows
        }
        return [by_id[k] for k in keys]

    return DataLoader(load_fn=load)


async def load_summary(info: Info, customer_id: int) -> CustomerSummary:
    ctx = info.context
    summary: CustomerSummary = await ctx.loader(
        "Customer.summary", lambda: summary_loader(ctx)
    ).load(customer_id)
    return summary
