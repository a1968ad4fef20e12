"""``Plan`` → one SQLAlchemy Core statement.

Layers (each a subquery, which PostgreSQL flattens or streams):

1. per fact, ``rows_<cube>``: the slot expressions (``d0`` ...) and measure inputs of the
   filtered fact rows (or rollup rows);
2. per fact, the aggregate: ``GROUP BY d0, ...`` (``ROLLUP (d0, ...)`` plus ``GROUPING()``
   as ``g`` for subtotals) into base measure columns ``m0`` ...;
3. ``agg``: the single fact's aggregate, or for several facts their ``UNION ALL`` grouped
   again on the slots (each fact aggregated alone, then joined: never a fan-out);
4. the answer: ``number`` measures from their parts, time intelligence as window functions
   over ``agg`` (``compare`` joins ``prev_*``, the same aggregate over the filter range
   shifted back by one period, so an earlier bucket outside the range still has its value),
   measure filters, order, limit and offset.
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, assert_never

import sqlalchemy as sa

from semantic.model import Granularity, Model
from semantic.planner import FactPlan, Plan
from semantic.query import Compare, Condition, Filter, Junction, MeasureField, Member, Op
from semantic.query import time_bounds as bounds
from semantic.sources import Binder, Expr, RawSource, RollupSource

Shift = tuple[int, int, str]  # months, days, SQL interval


def shift_of(compare: Compare, gran: Granularity) -> Shift:
    match compare:
        case Compare.PRIOR_YEAR:
            return (0, 364, "364 days") if gran is Granularity.WEEK else (12, 0, "1 year")
        case Compare.PRIOR_PERIOD:
            return {
                Granularity.DAY: (0, 1, "1 day"),
                Granularity.WEEK: (0, 7, "7 days"),
                Granularity.MONTH: (1, 0, "1 month"),
                Granularity.QUARTER: (3, 0, "3 months"),
                Granularity.YEAR: (12, 0, "1 year"),
            }[gran]
        case _:
            assert_never(compare)


def back(t: datetime, shift: Shift) -> datetime:
    """``t - interval`` as PostgreSQL computes it (month ends clamp)."""
    months, days, _ = shift
    if months:
        y, m = divmod(t.year * 12 + t.month - 1 - months, 12)
        t = t.replace(year=y, month=m + 1, day=min(t.day, calendar.monthrange(y, m + 1)[1]))
    return t - timedelta(days=days)


class Compiler:
    def __init__(self, model: Model, plan: Plan) -> None:
        self.model = model
        self.plan = plan
        self.q = plan.query
        self.binder = Binder(plan.query.timezone)
        self.n = len(plan.slots)

    # -- filters ---------------------------------------------------------------------
    def where(
        self, flt: Filter, src: RawSource, shift: Shift | None, shifted: Member | None
    ) -> Expr:
        if isinstance(flt, Junction):
            parts = [self.where(i, src, shift, shifted) for i in flt.items]
            return sa.and_(*parts) if flt.kind == "and" else sa.or_(*parts)
        c = flt
        if c.op in (Op.IN_DATE_RANGE, Op.NOT_IN_DATE_RANGE, Op.BEFORE_DATE, Op.AFTER_DATE):
            lo, hi = bounds(c)
            if shift is not None and c.member == shifted:
                lo, hi = (
                    (None if lo is None else back(lo, shift)),
                    (None if hi is None else back(hi, shift)),
                )
            inside = src.time_range(c.member, lo, hi)
            if c.op is Op.NOT_IN_DATE_RANGE:
                return sa.or_(sa.not_(inside), src.local_time(c.member).is_(None))
            return inside
        if c.op is Op.SET and src.rollup is not None and c.member == self._rollup_time(src):
            return self.compare_op(src.local_time(c.member), c)
        return self.compare_op(src.dim(c.member), c)

    def _rollup_time(self, src: RawSource) -> Member | None:
        return None if src.rollup is None else Member(src.root, src.rollup.time_dimension)

    def compare_op(self, e: Expr, c: Condition) -> Expr:
        b = self.binder
        v = [
            Decimal(str(x)) if isinstance(x, int | float) and not isinstance(x, bool) else x
            for x in c.values
        ]
        match c.op:
            case Op.EQUALS:
                return e == b(v[0])
            case Op.NOT_EQUALS:
                return sa.or_(e != b(v[0]), e.is_(None))
            case Op.IN:
                return e.in_(b(v, expanding=True))
            case Op.NOT_IN:
                return sa.or_(e.not_in(b(v, expanding=True)), e.is_(None))
            case Op.CONTAINS:
                return sa.or_(
                    *[sa.func.strpos(sa.func.lower(e), sa.func.lower(b(x))) > 0 for x in v]
                )
            case Op.GT:
                return e > b(v[0])
            case Op.GTE:
                return e >= b(v[0])
            case Op.LT:
                return e < b(v[0])
            case Op.LTE:
                return e <= b(v[0])
            case Op.SET:
                return e.is_not(None) if v[0] else e.is_(None)
            case Op.IN_DATE_RANGE | Op.NOT_IN_DATE_RANGE | Op.BEFORE_DATE | Op.AFTER_DATE:
                raise AssertionError("time operators are compiled by where()")
            case _:
                assert_never(c.op)

    # -- per fact --------------------------------------------------------------------
    def fact(self, fact: FactPlan, shift: Shift | None) -> sa.Select[Any]:
        src: RawSource
        if fact.rollup is not None:
            cube = self.model.cube(fact.cube)
            assert cube is not None
            rollup = next(p for p in cube.pre_aggregations if p.name == fact.rollup)
            src = RollupSource(self.model, fact.cube, rollup, self.binder)
        else:
            src = RawSource(self.model, fact.cube, fact.joins, self.binder)
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
        if not cols:
            cols.append(sa.literal_column("1").label("one"))
        shifted = None
        if shift is not None and self.plan.time_slot is not None:
            shifted = fact.dims[self.plan.time_slot]
        conds = [self.where(f, src, shift, shifted) for f in fact.filters]
        conds += [src.segment(s) for s in fact.segments]
        name = f"rows_{fact.cube}" + ("" if shift is None else f"_{shift[2].replace(' ', '_')}")
        rows = sa.select(*cols).select_from(src.from_()).where(*conds).subquery(name)
        dims = [rows.c[f"d{i}"] for i in range(self.n)]
        out: list[Expr] = list(dims)
        if self.q.subtotals:
            out.append((sa.func.grouping(*dims) if dims else sa.literal_column("0")).label("g"))
        for m in fact.measures:
            agg = src.aggregate(m, [rows.c[lab] for lab in labels[m]])
            out.append(agg.label(f"m{self.plan.base.index(m)}"))
        stmt = sa.select(*out).select_from(rows)
        if dims:
            stmt = (
                stmt.group_by(sa.func.rollup(*dims)) if self.q.subtotals else stmt.group_by(*dims)
            )
        return stmt

    def combined(self, shift: Shift | None) -> sa.Select[Any]:
        facts = self.plan.facts
        if len(facts) == 1:
            return self.fact(facts[0], shift)
        branches = []
        for fact in facts:
            sub = self.fact(fact, shift).subquery()
            cols: list[Expr] = [sub.c[f"d{i}"] for i in range(self.n)]
            if self.q.subtotals:
                cols.append(sub.c.g)
            for k, m in enumerate(self.plan.base):
                col = sub.c[f"m{k}"] if m in fact.measures else sa.null()
                cols.append(sa.cast(col, sa.Numeric).label(f"m{k}"))
            branches.append(sa.select(*cols))
        union = sa.union_all(*branches).subquery("facts")
        keys = [union.c[f"d{i}"] for i in range(self.n)] + ([union.c.g] if self.q.subtotals else [])
        measures = [
            sa.func.max(union.c[f"m{k}"]).label(f"m{k}") for k in range(len(self.plan.base))
        ]
        stmt = sa.select(*keys, *measures).select_from(union)
        return stmt.group_by(*keys) if keys else stmt

    # -- the answer ------------------------------------------------------------------
    def value(self, m: Member, ns: str) -> str:
        """SQL text of a measure's value over the columns of ``ns`` (``agg``, ``prev_*``)."""
        if m in self.plan.base:
            return f"{ns}.m{self.plan.base.index(m)}"
        cube = self.model.cube(m.cube)
        measure = cube.measure(m.name) if cube else None
        assert measure is not None and measure.sql is not None
        return (
            "("
            + re.sub(
                r"\{([\w.]+)\}", lambda r: self.value(Member.parse(r[1], m.cube), ns), measure.sql
            )
            + ")"
        )

    def field(self, f: MeasureField, prevs: dict[Compare, str]) -> Expr:
        v = self.value(f.member, "agg")
        g = ["agg.g"] if self.q.subtotals else []
        t = self.plan.time_slot
        tcol = [f"agg.d{t}"] if t is not None else []
        if f.compare is not None:
            return sa.literal_column(self.value(f.member, prevs[f.compare]))
        if f.to_date is not None:
            others = [f"agg.d{i}" for i in range(self.n) if i != t]
            part = ", ".join([*others, *g, f"date_trunc('{f.to_date.value.lower()}', {tcol[0]})"])
            return sa.literal_column(f"sum({v}) OVER (PARTITION BY {part} ORDER BY {tcol[0]})")
        if f.share_of_total:
            part = ", ".join([*g, *tcol])
            over = f"PARTITION BY {part}" if part else ""
            return sa.literal_column(f"{v} / NULLIF(sum({v}) OVER ({over}), 0)")
        if f.rank:
            part = ", ".join([*g, *tcol])
            over = f"PARTITION BY {part} " if part else ""
            return sa.literal_column(f"rank() OVER ({over}ORDER BY {v} DESC NULLS LAST)")
        return sa.literal_column(v)

    def statement(self) -> sa.Select[Any]:
        agg = self.combined(None).subquery("agg")
        source: Any = agg
        prevs: dict[Compare, str] = {}
        t = self.plan.time_slot
        for c in dict.fromkeys(f.compare for f in self.q.measures if f.compare is not None):
            assert t is not None
            gran = self.plan.slots[t].granularity
            assert gran is not None
            shift = shift_of(c, gran)
            name = f"prev_{c.value.lower()}"
            prev = self.combined(shift).subquery(name)
            on = [f"{name}.d{i} IS NOT DISTINCT FROM agg.d{i}" for i in range(self.n) if i != t]
            on.append(f"{name}.d{t} = agg.d{t} - interval '{shift[2]}'")
            if self.q.subtotals:
                on.append(f"{name}.g = agg.g")
            source = source.outerjoin(prev, sa.text(" AND ".join(on)))
            prevs[c] = name
        cols: list[Expr] = [agg.c[f"d{i}"] for i in range(self.n)]
        if self.q.subtotals:
            cols.append(agg.c.g)
        cols += [self.field(f, prevs).label(f"f{j}") for j, f in enumerate(self.q.measures)]
        stmt = sa.select(*cols).select_from(source)
        for flt in self.plan.having:
            stmt = stmt.where(self.having(flt))
        return (
            stmt.order_by(*self.order())
            .limit(self.binder(self.q.limit))
            .offset(self.binder(self.q.offset))
        )

    def having(self, flt: Filter) -> Expr:
        if isinstance(flt, Junction):
            parts = [self.having(i) for i in flt.items]
            return sa.and_(*parts) if flt.kind == "and" else sa.or_(*parts)
        return self.compare_op(sa.literal_column(self.value(flt.member, "agg")), flt)

    def order(self) -> list[Any]:
        out: list[Any] = []
        for o in self.q.order:
            slot = next(
                (
                    i
                    for i, s in enumerate(self.plan.slots)
                    if any(f.member == o.member for f in s.fields)
                ),
                None,
            )
            text = f"agg.d{slot}" if slot is not None else self.value(o.member, "agg")
            out.append(sa.literal_column(f"{text} {'DESC' if o.descending else 'ASC'} NULLS LAST"))
        out += [sa.literal_column(f"agg.d{i} ASC NULLS LAST") for i in range(self.n)]
        return out


def compile_plan(model: Model, plan: Plan) -> sa.Select[Any]:
    return Compiler(model, plan).statement()
