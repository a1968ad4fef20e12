"""Order lines with their products, batched: one statement for every order in a response.

Lines and products are read together (``order_items JOIN products``): ``OrderItem.product``
is then a plain attribute, not a resolver with a dataloader per line, which saves one
statement and, more importantly, one awaited resolver per line in Strawberry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from strawberry.dataloader import DataLoader

from schema import catalog
from schema.context import Context, Info

if TYPE_CHECKING:
    from schema.orders.types import OrderItem

PRODUCT_PREFIX = "product__"


def items_statement(order_ids: list[int]) -> sa.Select[Any]:
    i = catalog.ORDER_ITEM.table.alias("i")
    p = catalog.PRODUCT.table.alias("p")
    product_cols = [
        f.expr(p).label(PRODUCT_PREFIX + f.name) for f in catalog.PRODUCT.fields.values()
    ]
    ids = sa.bindparam("ids", order_ids, type_=ARRAY(sa.BigInteger))
    return (
        sa.select(*catalog.ORDER_ITEM.columns(i), *product_cols)
        .select_from(i.join(p, p.c.id == i.c.product_id))
        .where(i.c.order_id == sa.func.any(ids))
        .order_by(i.c.order_id, i.c.line_no)
    )


def items_loader(ctx: Context) -> DataLoader[int, list[Any]]:
    from schema.orders.types import OrderItem
    from schema.products.types import Product

    async def load(keys: list[int]) -> list[list[Any]]:
        result = await ctx.db.fetch(items_statement(keys))
        by_order: dict[int, list[Any]] = {}
        names: tuple[str, ...] = ()
        for row in result:
            names = names or tuple(row._fields)
            item: dict[str, Any] = {}
            product: dict[str, Any] = {}
            for name, value in zip(names, row, strict=True):
                if name.startswith(PRODUCT_PREFIX):
                    product[name[len(PRODUCT_PREFIX) :]] = value
                else:
                    item[name] = value
            by_order.setdefault(item["order_id"], []).append(
                OrderItem(**item, product=Product(**product))
            )
        return [by_order.get(k, []) for k in keys]

    return DataLoader(load_fn=load)


async def load_items(info: Info, order_id: int) -> list[OrderItem]:
    ctx = info.context
    items: list[OrderItem] = await ctx.loader("Order.items", lambda: items_loader(ctx)).load(
        order_id
    )
    return items
