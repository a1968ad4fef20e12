"""Relay connections: page arguments and caps, batched per-parent page/count/aggregate
statements, and the generic ``Connection``/``Edge``/``PageInfo`` types.

A connection under N parents is one statement::

    SELECT p.pid, x.* FROM unnest(:parent_ids) AS p(pid)
    CROSS JOIN LATERAL (SELECT ... FROM app.orders t WHERE t.customer_id = p.pid
                        AND <filter> AND <cursor> ORDER BY ... LIMIT :n + 1) AS x

issued by a dataloader keyed by the connection's arguments, so every argument set batches
separately; ``totalCount`` and ``aggregate`` batch the same way with ``GROUP BY`` parent.
The statement builders are plain functions so that other read paths can reuse them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
import strawberry
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from strawberry.dataloader import DataLoader

from db.errors import BadUserInputError
from schema import filters
from schema.catalog import Entity, Relation
from schema.context import ApiLimits, Context
from schema.fields import described
from schema.filters import SortKey

T = TypeVar("T")

PARENT = "__parent"


@dataclass(frozen=True)
class PageArgs:
    size: int
    backward: bool
    after: str | None
    before: str | None


def page_args(
    limits: ApiLimits,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> PageArgs:
    """Validate ``first/after/last/before`` against the page caps."""
    if first is not None and last is not None:
        raise BadUserInputError("pass either first or last, not both", field="first")
    for name, n in (("first", first), ("last", last)):
        if n is not None and n < 0:
            raise BadUserInputError(f"{name} must not be negative", field=name)
        if n is not None and n > limits.max_page_size:
            raise BadUserInputError(
                f"{name} must be at most {limits.max_page_size} (got {n})",
                field=name,
                max=limits.max_page_size,
            )
    backward = last is not None
    size = last if last is not None else first
    return PageArgs(
        size=limits.default_page_size if size is None else size,
        backward=backward,
        after=after,
        before=before,
    )


@dataclass(frozen=True)
class ConnQuery:
    """What a connection reads: entity, optional parent relation, filter, order, page."""

    entity: Entity
    parent: Relation | None
    filter: Any
    keys: tuple[SortKey, ...]
    page: PageArgs
    after_values: tuple[Any, ...] | None
    before_values: tuple[Any, ...] | None

    @classmethod
    def build(
        cls,
        entity: Entity,
        parent: Relation | None,
        flt: Any,
        order_by: Sequence[Any] | None,
        page: PageArgs,
    ) -> ConnQuery:
        keys = filters.compile_order(entity, order_by)
        after = tuple(filters.decode_cursor(keys, page.after)) if page.after else None
        before = tuple(filters.decode_cursor(keys, page.before)) if page.before else None
        return cls(entity, parent, flt, keys, page, after, before)

    def where(self, t: sa.FromClause) -> list[sa.ColumnElement[bool]]:
        conds: list[sa.ColumnElement[bool]] = []
        if self.filter is not None:
            conds.append(filters.compile_filter(self.entity, t, self.filter))
        if self.after_values is not None:
            conds.append(filters.keyset_condition(self.keys, t, self.after_values, before=False))
        if self.before_values is not None:
            conds.append(filters.keyset_condition(self.keys, t, self.before_values, before=True))
        return conds

    def filter_only(self, t: sa.FromClause) -> list[sa.ColumnElement[bool]]:
        if self.filter is None:
            return []
        return [filters.compile_filter(self.entity, t, self.filter)]


def _parents(parent_ids: Sequence[Any]) -> sa.TableValuedAlias:
    ids = sa.bindparam("parent_ids", list(parent_ids), type_=ARRAY(sa.BigInteger))
    return sa.func.unnest(ids).table_valued("pid").render_derived(name="p")


def page_statement(q: ConnQuery, parent_ids: Sequence[Any] | None) -> sa.Select[Any]:
    """Rows of one page (size + 1, to tell whether there is more) for each parent."""
    t = q.entity.table.alias("t")
    stmt = (
        sa.select(*q.entity.columns(t))
        .where(*q.where(t))
        .order_by(*filters.order_clause(q.keys, t, reverse=q.page.backward))
        .limit(q.page.size + 1)
    )
    if q.parent is None:
        return stmt
    p = _parents(parent_ids or [])
    x = stmt.where(t.c[q.parent.remote] == p.c.pid).lateral("x")
    return sa.select(p.c.pid.label(PARENT), *x.c).select_from(p.join(x, sa.true()))


def aggregate_columns(ent: Entity, t: sa.FromClause) -> list[sa.ColumnElement[Any]]:
    cols: list[sa.ColumnElement[Any]] = [sa.func.count().label("count")]
    for name in ent.sum_fields:
        c = ent.fields[name].expr(t)
        cols += [sa.func.sum(c).label(f"sum__{name}"), sa.func.avg(c).label(f"avg__{name}")]
    for name in ent.min_max_fields:
        c = ent.fields[name].expr(t)
        cols += [sa.func.min(c).label(f"min__{name}"), sa.func.max(c).label(f"max__{name}")]
    return cols


def stats_statement(
    q: ConnQuery, parent_ids: Sequence[Any] | None, *, aggregates: bool
) -> sa.Select[Any]:
    """``count`` (and with ``aggregates`` sum/avg/min/max) over the filter, per parent."""
    t = q.entity.table.alias("t")
    cols = aggregate_columns(q.entity, t) if aggregates else [sa.func.count().label("count")]
    if q.parent is None:
        return sa.select(*cols).select_from(t).where(*q.filter_only(t))
    key = t.c[q.parent.remote]
    ids = sa.bindparam("parent_ids", list(parent_ids or []), type_=ARRAY(sa.BigInteger))
    return (
        sa.select(key.label(PARENT), *cols)
        .where(key == sa.func.any(ids), *q.filter_only(t))
        .group_by(key)
    )


@dataclass(frozen=True)
class Page:
    rows: Sequence[Row[Any]]
    has_more: bool


def _group(rows: Sequence[Row[Any]]) -> dict[Any, list[Row[Any]]]:
    out: dict[Any, list[Row[Any]]] = defaultdict(list)
    for r in rows:
        out[getattr(r, PARENT)].append(r)
    return out


def page_loader(ctx: Context, q: ConnQuery) -> DataLoader[Any, Page]:
    async def load(keys: list[Any]) -> list[Page]:
        if q.parent is None:
            rows = await ctx.db.fetch(page_statement(q, None))
            grouped = {None: list(rows)}
        else:
            grouped = _group(await ctx.db.fetch(page_statement(q, keys)))
        out = []
        for k in keys:
            rs = grouped.get(k, [])
            has_more = len(rs) > q.page.size
            rs = rs[: q.page.size]
            if q.page.backward:
                rs.reverse()
            out.append(Page(rs, has_more))
        return out

    return DataLoader(load_fn=load)


def stats_loader(ctx: Context, q: ConnQuery, *, aggregates: bool) -> DataLoader[Any, Any]:
    async def load(keys: list[Any]) -> list[Any]:
        rows = await ctx.db.fetch(
            stats_statement(q, None if q.parent is None else keys, aggregates=aggregates)
        )
        if q.parent is None:
            return [rows[0]._mapping for _ in keys]
        by_key = {getattr(r, PARENT): r._mapping for r in rows}
        empty = {"count": 0}
        return [by_key.get(k, empty) for k in keys]

    return DataLoader(load_fn=load)


@strawberry.type(description="Relay page information.")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@dataclass
class ConnHandle:
    """What a Connection object needs to resolve its fields lazily."""

    ctx: Context
    query: ConnQuery
    key: Hashable
    parent_id: Any
    build: Callable[[Row[Any]], Any]

    async def page(self) -> Page:
        loader = self.ctx.loader(("page", self.key), lambda: page_loader(self.ctx, self.query))
        page: Page = await loader.load(self.parent_id)
        return page

    async def stats(self, *, aggregates: bool) -> Any:
        loader = self.ctx.loader(
            ("stats", aggregates, self.key),
            lambda: stats_loader(self.ctx, self.query, aggregates=aggregates),
        )
        return await loader.load(self.parent_id)


@strawberry.type
class Connection(Generic[T]):
    _h: strawberry.Private[ConnHandle]

    @strawberry.field
    async def edges(self) -> list[Edge[T]]:
        page = await self._h.page()
        keys = self._h.query.keys
        build = self._h.build
        return [Edge(cursor=filters.encode_cursor(keys, r), node=build(r)) for r in page.rows]

    @strawberry.field
    async def page_info(self) -> PageInfo:
        h = self._h
        page = await h.page()
        keys = h.query.keys
        first = filters.encode_cursor(keys, page.rows[0]) if page.rows else None
        last = filters.encode_cursor(keys, page.rows[-1]) if page.rows else None
        if h.query.page.backward:
            return PageInfo(
                has_next_page=h.query.page.before is not None,
                has_previous_page=page.has_more,
                start_cursor=first,
                end_cursor=last,
            )
        return PageInfo(
            has_next_page=page.has_more,
            has_previous_page=h.query.page.after is not None,
            start_cursor=first,
            end_cursor=last,
        )

    @described("Number of rows matching the filter (ignores paging).")
    async def total_count(self) -> int:
        stats = await self._h.stats(aggregates=False)
        return int(stats["count"])


def connection_key(name: str, flt: Any, order_by: Any, page: PageArgs) -> Hashable:
    """Loader key of a connection: its relation and its whole argument set."""
    return (name, repr(flt), repr(order_by), page)


def make_handle(
    info: strawberry.Info[Context, None],
    name: str,
    entity: Entity,
    parent: Relation | None,
    parent_id: Any,
    flt: Any,
    order_by: Sequence[Any] | None,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    build: Callable[[Row[Any]], Any],
) -> ConnHandle:
    ctx = info.context
    page = page_args(ctx.limits, first, after, last, before)
    key = connection_key(name, flt, order_by, page)
    queries: dict[Hashable, ConnQuery] = ctx.queries
    q = queries.get(key)
    if q is None:
        q = queries[key] = ConnQuery.build(entity, parent, flt, order_by, page)
    return ConnHandle(ctx, q, key, parent_id, build)
