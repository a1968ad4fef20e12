"""Helpers shared by the feature folders: building nodes from rows, connection fields."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.engine import Row
from strawberry.dataloader import DataLoader

from schema import catalog
from schema.catalog import Entity
from schema.context import Context
from schema.relay import ConnHandle, make_handle

N = TypeVar("N")


def builder(cls: Callable[..., N], ent: Entity) -> Callable[[Row[Any]], N]:
    """Row (labelled by ``Entity.columns``) → node object of type ``cls``."""
    enum_fields = [(f.name, f.enum) for f in ent.fields.values() if f.enum is not None]

    # the column names of a result are the same for all its rows: look them up once
    # (``dict(row._mapping)`` rebuilds the key list for every row)
    cache: list[Any] = [None, ()]

    def build(row: Row[Any]) -> N:
        parent = getattr(row, "_parent", None)
        if parent is None or parent is not cache[0]:
            cache[0], cache[1] = parent, row._fields
        kw = dict(zip(cache[1], row, strict=True))
        kw.pop("__parent", None)
        kw.pop("__key", None)
        for name, enum_cls in enum_fields:
            v = kw[name]
            if v is not None and enum_cls is not None:
                kw[name] = enum_cls(v)
        return cls(**kw)

    return build


def handle(
    info: Any,
    name: str,
    entity: Entity,
    parent: str | None,
    parent_id: Any,
    build: Callable[[Row[Any]], Any],
    flt: Any,
    order_by: Sequence[Any] | None,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> ConnHandle:
    """The handle of connection ``name``; ``parent`` names the relation on the parent entity
    (``"Customer.orders"``) or is None for a root connection."""
    rel = None
    if parent is not None:
        owner, _, rel_name = parent.partition(".")
        rel = catalog.entity(owner).relations[rel_name]
    return make_handle(
        info, name, entity, rel, parent_id, flt, order_by, first, after, last, before, build
    )


def by_key_loader(ctx: Context, ent: Entity, column: str) -> DataLoader[Any, list[Any]]:
    """Rows of ``ent`` whose ``column`` is one of the keys (one ``= ANY`` query), per key."""
    import sqlalchemy as sa
    from sqlalchemy.dialects.postgresql import ARRAY

    from schema.filters import compile_order, order_clause

    async def load(keys: list[Any]) -> list[list[Any]]:
        t = ent.table.alias("t")
        ids = sa.bindparam("ids", list(keys), type_=ARRAY(sa.BigInteger))
        stmt = (
            sa.select(*ent.columns(t), t.c[column].label("__key"))
            .where(t.c[column] == sa.func.any(ids))
            .order_by(*order_clause(compile_order(ent, None), t))
        )
        rows = await ctx.db.fetch(stmt)
        grouped: dict[Any, list[Any]] = {}
        for r in rows:
            grouped.setdefault(r._mapping["__key"], []).append(r)
        return [grouped.get(k, []) for k in keys]

    return DataLoader(load_fn=load)


async def load_many(info: Any, ent: Entity, column: str, key: Any) -> list[Row[Any]]:
    ctx: Context = info.context
    loader = ctx.loader(("by", ent.name, column), lambda: by_key_loader(ctx, ent, column))
    rows: list[Row[Any]] = await loader.load(key)
    return rows


async def load_one(info: Any, ent: Entity, key: Any) -> Row[Any] | None:
    """The row of ``ent`` with id ``key`` (batched), or None."""
    if key is None:
        return None
    rows = await load_many(info, ent, "id", key)
    return rows[0] if rows else None


def aggregate_part(cls: Callable[..., N], stats: Any, prefix: str, names: Sequence[str]) -> N:
    """``cls`` built from the ``<prefix>__<name>`` columns of a stats row."""
    return cls(**{n: stats.get(f"{prefix}__{n}") for n in names})
