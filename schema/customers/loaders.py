"""Customer summary, batched: one statement for every customer in the response."""

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
    """Per customer: order count, lifetime value, AOV, last order, return rate, rating.

    Cancelled orders are not counted; return rate = approved returned units / units bought.
    """
    p = (
        sa.func.unnest(sa.bindparam("ids", ids, type_=ARRAY(sa.BigInteger)))
        .table_valued("cid")
        .render_derived(name="p")
    )
    o = T.orders
    orders = (
        sa.select(
            sa.func.count().label("order_count"),
            sa.func.coalesce(sa.func.sum(o.c.total_amount), 0).label("lifetime_value"),
            sa.func.max(o.c.ordered_at).label("last_order_at"),
            sa.func.sum(o.c.item_count).label("units"),
        )
        .where(o.c.customer_id == p.c.cid, o.c.status != "cancelled")
        .lateral("o")
    )
    r = T.returns
    returned = (
        sa.select(sa.func.sum(r.c.quantity).label("returned"))
        .where(r.c.customer_id == p.c.cid, r.c.status == "approved")
        .lateral("r")
    )
    f = T.feedback
    rating = (
        sa.select(sa.func.avg(f.c.rating).label("average_rating"))
        .where(f.c.customer_id == p.c.cid)
        .lateral("f")
    )
    return sa.select(
        p.c.cid,
        orders.c.order_count,
        orders.c.lifetime_value,
        orders.c.last_order_at,
        orders.c.units,
        returned.c.returned,
        rating.c.average_rating,
    ).select_from(p.join(orders, sa.true()).join(returned, sa.true()).join(rating, sa.true()))


def summary_loader(ctx: Context) -> DataLoader[int, Any]:
    from schema.customers.types import CustomerSummary

    async def load(keys: list[int]) -> list[Any]:
        rows = await ctx.db.fetch(summary_statement(keys))
        by_id = {}
        for row in rows:
            count = int(row.order_count)
            units = int(row.units or 0)
            by_id[row.cid] = CustomerSummary(
                order_count=count,
                lifetime_value=row.lifetime_value,
                average_order_value=(row.lifetime_value / count) if count else None,
                last_order_at=row.last_order_at,
                return_rate=(float(row.returned or 0) / units) if units else None,
                average_rating=(None if row.average_rating is None else float(row.average_rating)),
            )
        return [by_id[k] for k in keys]

    return DataLoader(load_fn=load)


async def load_summary(info: Info, customer_id: int) -> CustomerSummary:
    ctx = info.context
    summary: CustomerSummary = await ctx.loader(
        "Customer.summary", lambda: summary_loader(ctx)
    ).load(customer_id)
    return summary
