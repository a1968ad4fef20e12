"""``Plan`` → the aggregates of one statement: filters, one aggregate per fact, and ``agg``.

Layers (each a subquery, which PostgreSQL flattens or streams):

1. per fact, ``rows_<cube>``: the slot expressions (``d0`` ...) and measure inputs of the
   filtered fact rows (or rollup rows);
2. per fact, the aggregate: ``GROUP BY d0, ...`` (``ROLLUP (d0, ...)`` plus ``GROUPING()``
   as ``g`` for subtotals) into base measure columns ``m0`` ...; ``last`` measures first
   sum each snapshot time, then keep the latest non-empty one per group;
3. ``agg``: the single fact's aggregate, or for several facts their ``UNION ALL`` grouped
   again on the slots (each fact aggregated alone, then joined: never a fan-out).

``semantic.answer`` builds the final select over ``agg`` (time intelligence, order, JSON
rows). Time intelligence needs the same aggregate over other time ranges: ``Retime``
moves the bounds of the filters on the time slot's member (back one period for
``compare``, wider for ``toDate`` and ``rolling``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, assert_never

import sqlalchemy as sa

from db.errors import BadUserInputError
from semantic.checks import bounds_of
from semantic.dates import TIME_OPS, CalendarOverflow
from semantic.model import Model
from semantic.planner import FactPlan, Plan
from semantic.query import Condition, Filter, Junction, Member, Op
from semantic.sources import Binder, Expr, RawSource, RollupSource

Bounds = tuple[datetime | None, datetime | None]
INT64 = 2**63


@dataclass(frozen=True)
class Retime:
    """How the time filters of an aggregate differ from the query's: ``name`` suffixes its
    subqueries; ``move`` maps local ``[lo, hi)`` bounds; ``negated`` says whether
    ``notInDateRange`` bounds move too (compare: yes; a widened window: no)."""

    name: str
    move: Callable[[datetime | None, datetime | None], Bounds]
    negated: bool = True


class Compiler:
    def __init__(self, model: Model, plan: Plan) -> None:
        self.model = model
        self.plan = plan
        self.q = plan.query
        self.binder = Binder(plan.query.timezone)
        self.n = len(plan.slots)

    # -- filters ---------------------------------------------------------------------
    def time_member(self, fact: FactPlan) -> Member | None:
        """The fact's member of the time slot (the one compare/toDate/rolling move along)."""
        t = self.plan.time_slot
        return None if t is None else fact.dims[t]

    def bounds(self, c: Condition, retime: Retime | None, shifted: Member | None) -> Bounds:
        lo, hi = bounds_of(c)
        if retime is None or c.member != shifted:
            return lo, hi
        if c.op is Op.NOT_IN_DATE_RANGE and not retime.negated:
            return lo, hi
        try:
            return retime.move(lo, hi)
        except CalendarOverflow as exc:
            moved = retime.name.replace("_", " ")
            raise BadUserInputError(
                f"{c.member} {c.op.value}: {exc} (the range moved for {moved})",
                field=str(c.member),
            ) from None

    def moves(self, retime: Retime) -> bool:
        """Does ``retime`` change any filter bound of any fact?"""
        for fact in self.plan.facts:
            shifted = self.time_member(fact)
            for c in _conditions(fact.filters):
                timed = c.op in TIME_OPS and c.member == shifted
                if timed and self.bounds(c, retime, shifted) != bounds_of(c):
                    return True
        return False

    def where(
        self, flt: Filter, src: RawSource, retime: Retime | None, shifted: Member | None
    ) -> Expr:
        if isinstance(flt, Junction):
            parts = [self.where(i, src, retime, shifted) for i in flt.items]
            return sa.and_(*parts) if flt.kind == "and" else sa.or_(*parts)
        c = flt
        if c.op in TIME_OPS:
            lo, hi = self.bounds(c, retime, shifted)
            inside = src.time_range(c.member, lo, hi)
            if c.op is Op.NOT_IN_DATE_RANGE:
                return sa.or_(sa.not_(inside), src.local_time(c.member).is_(None))
            return inside
        if c.op is Op.SET and src.rollup is not None and c.member == self._rollup_time(src):
            return self.compare_op(src.local_time(c.member), c)
        return self.compare_op(src.dim(c.member), c, typed=True)

    def _rollup_time(self, src: RawSource) -> Member | None:
        return None if src.rollup is None else Member(src.root, src.rollup.time_dimension)

    def compare_op(self, e: Expr, c: Condition, *, typed: bool = False) -> Expr:
        """``e <op> values``; with ``typed`` (a dimension) whole numbers bind as bigint, so a
        filter on an integer key compares integers and can use its index (GraphQL numbers
        are floats: ``42.0``); other numbers bind as numeric. Both compare exactly with
        integer, numeric and float columns."""
        b = self.binder
        numbers = [x for x in c.values if isinstance(x, int | float) and not isinstance(x, bool)]
        whole = typed and all(float(x).is_integer() and abs(x) < INT64 for x in numbers)
        kind: Any = sa.BigInteger if whole else sa.Numeric
        v = [
            (int(x) if whole else Decimal(str(x)))
            if isinstance(x, int | float) and not isinstance(x, bool)
            else x
            for x in c.values
        ]
        t = kind if numbers else None

        def one(x: Any) -> sa.BindParameter[Any]:
            return b(x, type_=t)

        match c.op:
            case Op.EQUALS:
                return e == one(v[0])
            case Op.NOT_EQUALS:
                return sa.or_(e != one(v[0]), e.is_(None))
            case Op.IN:
                return e.in_(b(v, expanding=True, type_=t))
            case Op.NOT_IN:
                return sa.or_(e.not_in(b(v, expanding=True, type_=t)), e.is_(None))
            case Op.CONTAINS:
                return sa.or_(
                    *[sa.func.strpos(sa.func.lower(e), sa.func.lower(b(x))) > 0 for x in v]
                )
            case Op.GT:
                return e > one(v[0])
            case Op.GTE:
                return e >= one(v[0])
            case Op.LT:
                return e < one(v[0])
            case Op.LTE:
                return e <= one(v[0])
            case Op.SET:
                return e.is_not(None) if v[0] else e.is_(None)
            case Op.IN_DATE_RANGE | Op.NOT_IN_DATE_RANGE | Op.BEFORE_DATE | Op.AFTER_DATE:
                raise AssertionError("time operators are compiled by where()")
            case _:
                assert_never(c.op)

    # -- per fact --------------------------------------------------------------------
    def source(self, fact: FactPlan) -> RawSource:
        if fact.rollup is not None:
            cube = self.model.cube(fact.cube)
            assert cube is not None
            rollup = next(p for p in cube.pre_aggregations if p.name == fact.rollup)
            return RollupSource(self.model, fact.cube, rollup, self.binder)
        return RawSource(self.model, fact.cube, fact.joins, self.binder)

    def fact(self, index: int, retime: Retime | None) -> sa.Select[Any]:
        fact = self.plan.facts[index]
        src = self.source(fact)
        cols: list[Expr] = []
        for i, (m, slot) in enumerate(zip(fact.dims, self.plan.slots, strict=True)):
            e = src.bucket(m, slot.granularity) if slot.granularity else src.dim(m)
            cols.append(e.label(f"d{i}"))
        labels: dict[Member, list[str]] = {}
        for m in fact.measures:
            k = self.plan.base.index(m)
            inputs = src.inputs(m)
            labels[m] = [f"x{k}_{j}" for j in range(len(inputs))]
            cols += [e.label(lab) for e, lab in zip(inputs, labels[m], strict=True)]
        if fact.last is not None:
            cols.append(src.dim(fact.last).label("t_last"))
        if not cols:
            cols.append(sa.literal_column("1").label("one"))
        shifted = self.time_member(fact)
        conds = [self.where(f, src, retime, shifted) for f in fact.filters]
        conds += [src.segment(s) for s in fact.segments]
        name = f"rows_{fact.cube}" + ("" if fact.last is None else "_last") + _suffix(retime)
        rows = sa.select(*cols).select_from(src.from_()).where(*conds).subquery(name)
        dims = [rows.c[f"d{i}"] for i in range(self.n)]
        out: list[Expr] = list(dims)
        if self.q.subtotals:
            out.append((sa.func.grouping(*dims) if dims else sa.literal_column("0")).label("g"))
        if fact.last is not None:
            return self._last(fact, rows, dims, out, labels)
        for m in fact.measures:
            agg = src.aggregate(m, [rows.c[lab] for lab in labels[m]])
            out.append(agg.label(f"m{self.plan.base.index(m)}"))
        stmt = sa.select(*out).select_from(rows)
        if dims:
            stmt = (
                stmt.group_by(sa.func.rollup(*dims)) if self.q.subtotals else stmt.group_by(*dims)
            )
        return stmt

    def _last(
        self,
        fact: FactPlan,
        rows: Any,
        dims: list[Any],
        out: list[Expr],
        labels: dict[Member, list[str]],
    ) -> sa.Select[Any]:
        """Semi-additive: sum each snapshot time of each group, keep the latest non-empty."""
        t = rows.c.t_last
        sums = [
            sa.func.sum(rows.c[labels[m][0]]).label(f"s{self.plan.base.index(m)}")
            for m in fact.measures
        ]
        inner = sa.select(*out, t.label("t_last"), *sums).select_from(rows)
        grouping: list[Any] = [sa.func.rollup(*dims)] if self.q.subtotals and dims else dims
        per_time = inner.group_by(t, *grouping).subquery(f"per_time_{fact.cube}")
        keys: list[Any] = [per_time.c[f"d{i}"] for i in range(self.n)]
        if self.q.subtotals:
            keys.append(per_time.c.g)
        picked: list[Expr] = []
        for m in fact.measures:
            k = self.plan.base.index(m)
            s, ns = f"s{k}", per_time.name
            last = (
                f"(array_agg({ns}.{s} ORDER BY {ns}.t_last DESC)"
                f" FILTER (WHERE {ns}.{s} IS NOT NULL))[1]"
            )
            picked.append(sa.literal_column(last).label(f"m{k}"))
        stmt = sa.select(*keys, *picked).select_from(per_time)
        return stmt.group_by(*keys) if keys else stmt

    def combined(self, retime: Retime | None) -> sa.Select[Any]:
        facts = self.plan.facts
        if len(facts) == 1:
            return self.fact(0, retime)
        branches = []
        for i, fact in enumerate(facts):
            sub = self.fact(i, retime).subquery()
            cols: list[Expr] = [sub.c[f"d{i}"] for i in range(self.n)]
            if self.q.subtotals:
                cols.append(sub.c.g)
            for k, m in enumerate(self.plan.base):
                col = sub.c[f"m{k}"] if m in fact.measures else sa.null()
                cols.append(sa.cast(col, sa.Numeric).label(f"m{k}"))
            branches.append(sa.select(*cols))
        union = sa.union_all(*branches).subquery("facts" + _suffix(retime))
        keys = [union.c[f"d{i}"] for i in range(self.n)] + ([union.c.g] if self.q.subtotals else [])
        measures = [
            sa.func.max(union.c[f"m{k}"]).label(f"m{k}") for k in range(len(self.plan.base))
        ]
        stmt = sa.select(*keys, *measures).select_from(union)
        return stmt.group_by(*keys) if keys else stmt


def _suffix(retime: Retime | None) -> str:
    return "" if retime is None else f"_{retime.name}"


def _conditions(filters: tuple[Filter, ...]) -> list[Condition]:
    out: list[Condition] = []
    for f in filters:
        out.extend(_conditions(f.items) if isinstance(f, Junction) else [f])
    return out
