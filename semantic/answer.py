"""The final select over ``agg``: measure fields, time intelligence, order, and each answer
row as one JSON text in the requested ``Shape``.

Time intelligence (one modifier per field):

- ``compare``: LEFT JOIN ``prev_<period>``, the same aggregate with the time filters moved
  back one period (``semantic.dates``), on ``prev.t = agg.t - interval`` and equal other
  dimensions (null-safe, keyed by one hash of them: ``_row_key``); ``as`` gives the
  earlier value, the difference or the change as a fraction;
- ``toDate`` / ``rolling``: sums over the buckets of the period so far / of a moving window
  (``RANGE`` frames on the bucket's end or start, so empty buckets count as nothing).
  When the filters cut the time range, the windows run over ``win_<name>``, the aggregate of
  a range widened to the rows the windows need (back to the period start, or back/forward by
  the window), joined on the dimensions (keyed as ``prev``): a to-date or rolling value
  never depends on where the filtered range happens to start;
- ``shareOfTotal`` / ``rank``: windows over ``agg`` within each bucket.

A row that totals the time dimension (subtotals) has no running or moving value (null).

Order: the ``orderBy`` items, then every dimension ascending (stable pages). With subtotals
the rows are a tree (pivot-table order): at each level the groups sort by the ordered values
of their own subtotal row, every subtotal row right after its detail rows, the grand total
last.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from semantic.compile import Compiler, Retime
from semantic.dates import EPSILON, interval, move, move_end, span, truncate
from semantic.model import Granularity, Model
from semantic.planner import Plan
from semantic.query import Change, Compare, Filter, Junction, MeasureField, Member
from semantic.shape import Const, DimensionOut, MeasureOut, Obj, TotalsOut
from semantic.sources import Expr

Wrap = Callable[[str], str]


class Answer:
    def __init__(self, model: Model, plan: Plan, shape: Obj) -> None:
        self.c = Compiler(model, plan)
        self.model = model
        self.plan = plan
        self.q = plan.query
        self.shape = shape
        self.n = len(plan.slots)
        self.t = plan.time_slot

    # -- values ----------------------------------------------------------------------
    def value(self, m: Member, ns: str, wrap: Wrap | None = None) -> str:
        """SQL text of a measure's value over the columns of ``ns`` (``agg``, ``prev_*``);
        ``wrap`` rewrites each base column (a window around it)."""
        if m in self.plan.base:
            col = f"{ns}.m{self.plan.base.index(m)}"
            return wrap(col) if wrap else col
        cube = self.model.cube(m.cube)
        measure = cube.measure(m.name) if cube else None
        assert measure is not None and measure.sql is not None

        def ref(r: re.Match[str]) -> str:
            return self.value(Member.parse(r[1], m.cube), ns, wrap)

        return "(" + re.sub(r"\{([\w.]+)\}", ref, measure.sql) + ")"

    def _time_gran(self) -> Granularity:
        assert self.t is not None
        gran = self.plan.slots[self.t].granularity
        assert gran is not None
        return gran

    def _others(self, ns: str) -> list[str]:
        return [f"{ns}.d{i}" for i in range(self.n) if i != self.t]

    def _time_totalled(self, ns: str, expr: str) -> str:
        """Null on subtotal rows that total the time dimension."""
        if not self.q.subtotals or self.t is None:
            return expr
        bit = 1 << (self.n - 1 - self.t)
        return f"CASE WHEN ({ns}.g & {bit}) <> 0 THEN NULL ELSE {expr} END"

    # -- windows ---------------------------------------------------------------------
    def retime_of(self, f: MeasureField) -> Retime:
        gran = self._time_gran()
        if f.compare is not None:
            months, days = self._shift(f.compare, gran)
            return Retime(
                f"prior_{f.compare.value.removeprefix('PRIOR_').lower()}",
                lambda lo, hi: (
                    None if lo is None else move(lo, -months, -days),
                    None if hi is None else move_end(hi, -months, -days),
                ),
            )
        if f.to_date is not None:
            period = Granularity(f.to_date.value.lower())
            return Retime(
                f"to_{period.value}",
                lambda lo, hi: (None if lo is None else truncate(period, lo), hi),
                negated=False,
            )
        r = f.rolling
        assert r is not None
        gm, gd = span(gran)
        um, ud = span(r.unit)
        n = r.count
        if r.leading:
            return Retime(
                f"next_{n}_{r.unit.value}",
                lambda lo, hi: (
                    lo,
                    None if hi is None else move(truncate(gran, _before(hi)), n * um, n * ud),
                ),
                negated=False,
            )
        return Retime(
            f"last_{n}_{r.unit.value}",
            lambda lo, hi: (
                None if lo is None else move(move(truncate(gran, lo), gm, gd), -n * um, -n * ud),
                hi,
            ),
            negated=False,
        )

    @staticmethod
    def _shift(compare: Compare, gran: Granularity) -> tuple[int, int]:
        if compare is Compare.PRIOR_YEAR:
            return (0, 364) if gran is Granularity.WEEK else (12, 0)
        return span(gran)

    def window(self, f: MeasureField, ns: str) -> str:
        """The running total / moving window of a field over the rows of ``ns``."""
        gran = self._time_gran()
        t = f"{ns}.d{self.t}"
        part = [*self._others(ns), *([f"{ns}.g"] if self.q.subtotals else [])]
        if f.to_date is not None:
            part.append(f"date_trunc('{f.to_date.value.lower()}', {t})")
            frame = f"ORDER BY {t}"
        else:
            r = f.rolling
            assert r is not None
            um, ud = span(r.unit)
            width = f"interval '{interval(r.count * um, r.count * ud)} -1 microseconds'"
            if r.leading:
                frame = f"ORDER BY {t} RANGE BETWEEN CURRENT ROW AND {width} FOLLOWING"
            else:
                end = f"{t} + interval '{interval(*span(gran))}'"
                frame = f"ORDER BY {end} RANGE BETWEEN {width} PRECEDING AND CURRENT ROW"
        over = (f"PARTITION BY {', '.join(part)} " if part else "") + frame
        expr = self.value(f.member, ns, lambda col: f"sum({col}) OVER ({over})")
        return self._time_totalled(ns, expr)

    def field(self, f: MeasureField, joined: dict[str, str], windows: dict[int, str]) -> str:
        j = self.q.measures.index(f)
        v = self.value(f.member, "agg")
        g = ["agg.g"] if self.q.subtotals else []
        tcol = [f"agg.d{self.t}"] if self.t is not None else []
        if f.compare is not None:
            prev = self.value(f.member, joined["prev_" + self.retime_of(f).name])
            match f.change:
                case Change.VALUE:
                    return prev
                case Change.DIFFERENCE:
                    return f"({v} - {prev})"
                case Change.PERCENT_CHANGE:
                    return f"(({v} - {prev})::numeric / NULLIF(abs({prev}), 0))"
        if f.windowed:
            return windows.get(j) or self.window(f, "agg")
        if f.share_of_total:
            part = ", ".join([*g, *tcol])
            over = f"PARTITION BY {part}" if part else ""
            return f"({v}::numeric / NULLIF(sum({v}) OVER ({over}), 0))"
        if f.rank:
            part = ", ".join([*g, *tcol])
            over = f"PARTITION BY {part} " if part else ""
            return f"rank() OVER ({over}ORDER BY {v} DESC NULLS LAST)"
        return v

    # -- the statement ---------------------------------------------------------------
    def statement(self) -> sa.Select[Any]:
        agg = self.c.combined(None).subquery("agg")
        source: Any = agg
        joined: dict[str, str] = {}
        windows: dict[int, str] = {}
        for f in self.q.measures:
            if not (f.compare or f.windowed):
                continue
            retime = self.retime_of(f)
            if f.windowed and not self.c.moves(retime):
                continue  # the filters need no other rows: windows over agg itself
            name = ("prev_" if f.compare else "win_") + retime.name
            if name not in joined:
                shift = self._shift(f.compare, self._time_gran()) if f.compare else None
                source = source.outerjoin(*self._joined(retime, name, shift))
                joined[name] = name
            if f.windowed:
                j = self.q.measures.index(f)
                windows[j] = f"{name}.w{j}"
        fields = [self.field(f, joined, windows) for f in self.q.measures]
        row = self.row(self.shape, fields)
        stmt: sa.Select[Any] = sa.select(row.label("j"))
        stmt = stmt.select_from(source)
        for flt in self.plan.having:
            stmt = stmt.where(self.having(flt, "agg"))
        return (
            stmt.order_by(*self.order())
            .limit(self.c.binder(self.q.limit + 1))  # one more: was the answer cut?
            .offset(self.c.binder(self.q.offset))
        )

    def _joined(self, retime: Retime, name: str, shift: tuple[int, int] | None) -> tuple[Any, Any]:
        """The aggregate over the re-timed range, and how it joins ``agg`` (compare: on the
        bucket ``shift`` earlier; windows: on the same bucket)."""
        t = self.t
        assert t is not None
        if shift is not None:
            sub = self.c.combined(retime).subquery(name)
        else:
            ext = self.c.combined(retime).subquery("ext_" + retime.name)
            cols: list[Any] = [ext.c[f"d{i}"] for i in range(self.n)]
            if self.q.subtotals:
                cols.append(ext.c.g)
            for j, f in enumerate(self.q.measures):
                if f.windowed and self.retime_of(f).name == retime.name:
                    cols.append(sa.literal_column(self.window(f, ext.name)).label(f"w{j}"))
            inner = sa.select(*cols).select_from(ext)
            for flt in self.plan.having:
                inner = inner.where(self.having(flt, ext.name))
            sub = inner.subquery(name)
        # the dimensions matched as they are (null-safe): compare's time bucket is shifted
        same = [i for i in range(self.n) if i != t or shift is None]
        on = [f"{_row_key(name, same)} = {_row_key('agg', same)}"] if same else []
        on += [f"{name}.d{i} IS NOT DISTINCT FROM agg.d{i}" for i in same]
        if shift is not None:
            on.append(f"{name}.d{t} = agg.d{t} - interval '{interval(*shift)}'")
        if self.q.subtotals:
            on.append(f"{name}.g = agg.g")
        return sub, sa.text(" AND ".join(on))

    def having(self, flt: Filter, ns: str) -> Expr:
        if isinstance(flt, Junction):
            parts = [self.having(i, ns) for i in flt.items]
            return sa.and_(*parts) if flt.kind == "and" else sa.or_(*parts)
        return self.c.compare_op(sa.literal_column(self.value(flt.member, ns)), flt)

    # -- order -----------------------------------------------------------------------
    def _slot_of(self, m: Member) -> int | None:
        return next(
            (i for i, s in enumerate(self.plan.slots) if any(f.member == m for f in s.fields)),
            None,
        )

    def order(self) -> list[Any]:
        items = [(o, self._slot_of(o.member)) for o in self.q.order]
        if not self.q.subtotals:
            out = []
            for o, slot in items:
                text = f"agg.d{slot}" if slot is not None else self.value(o.member, "agg")
                out.append(f"{text} {'DESC' if o.descending else 'ASC'} NULLS LAST")
            out += [f"agg.d{i} ASC NULLS LAST" for i in range(self.n)]
            return [sa.literal_column(x) for x in out]
        keys: list[str] = []
        for i in range(self.n):
            bit = 1 << (self.n - 1 - i)
            totals = f"((agg.g & {bit}) <> 0)"
            keys.append(f"{totals} ASC")
            group = (1 << (self.n - 1 - i)) - 1  # the g of the level-i group's own row
            part = ", ".join([f"agg.d{k}" for k in range(i + 1)] + [totals])
            for o, slot in items:
                way = "DESC" if o.descending else "ASC"
                if slot is None:
                    v = self.value(o.member, "agg")
                    own = f"max(CASE WHEN agg.g = {group} THEN {v} END) OVER (PARTITION BY {part})"
                    keys.append(f"{own} {way} NULLS LAST")
                elif slot == i:
                    keys.append(f"agg.d{i} {way} NULLS LAST")
            keys.append(f"agg.d{i} ASC NULLS LAST")
        if self.n == 0:
            for o, _ in items:
                keys.append(f"{self.value(o.member, 'agg')} {'DESC' if o.descending else 'ASC'}")
        return [sa.literal_column(x) for x in keys]

    # -- JSON rows -------------------------------------------------------------------
    def row(self, shape: Obj, fields: list[str]) -> Expr:
        """The row's JSON text: literal punctuation, the keys (bound parameters: the SQL
        text does not depend on aliases) and each value's ``to_json``, concatenated
        (faster than nested ``json_build_object``, and compact)."""
        parts: list[Expr] = []
        self._obj(shape, fields, parts)
        out = parts[0]
        for part in parts[1:]:
            out = out.op("||")(part)
        return out

    def _obj(self, obj: Obj, fields: list[str], parts: list[Expr]) -> None:
        literal = "{"
        for n, (key, entry) in enumerate(obj.entries):
            parts += [self._text(literal + ("," if n else "") + '"'), self._key(key)]
            literal = '":'
            if isinstance(entry, Obj):
                parts.append(self._text(literal))
                self._obj(entry, fields, parts)
                literal = ""
            elif isinstance(entry, Const):
                literal += json.dumps(entry.value)
            else:
                parts += [self._text(literal), sa.literal_column(self._leaf(entry, fields))]
                literal = ""
        parts.append(self._text(literal + "}"))

    def _key(self, key: str) -> Expr:
        return self.c.binder(json.dumps(key)[1:-1], type_=sa.Text)

    @staticmethod
    def _text(literal: str) -> Expr:
        return sa.literal_column(_text(literal))

    def _leaf(self, entry: MeasureOut | DimensionOut | TotalsOut, fields: list[str]) -> str:
        if isinstance(entry, MeasureOut):
            f = self.q.measures[entry.index]
            text = fields[entry.index]
            # a Float as a float8 is written (1, not numeric's 1.00000000000000000000)
            kind = "bigint" if self._integer(f) else "double precision"
            return _json(f"CAST({text} AS {kind})")
        if isinstance(entry, DimensionOut):
            d = self.q.dimensions[entry.index]
            slot = next(i for i, s in enumerate(self.plan.slots) if d in s.fields)
            col = f"agg.d{slot}"
            if d.granularity is Granularity.VALUE:
                return _json(
                    f"to_char({col}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN "
                    f"date_trunc('second', {col}) = {col} THEN '' ELSE to_char({col}, '.US') END"
                )
            if d.granularity is not None:
                return _json(f"to_char({col}, 'YYYY-MM-DD\"T\"HH24:MI:SS')")
            return _json(col)
        if not self.q.subtotals:
            return "'[]'"
        labels = [
            f"CASE WHEN (agg.g & {1 << (self.n - 1 - i)}) <> 0 THEN {_text(f.label())} END"
            for i, s in enumerate(self.plan.slots)
            for f in s.fields
        ]
        return f"to_json(array_remove(ARRAY[{', '.join(labels)}]::text[], NULL))::text"

    def _integer(self, f: MeasureField) -> bool:
        """Does the field return whole numbers (GraphQL Int)? As its measure, unless a
        share or a percent change makes a fraction of it."""
        cube = self.model.cube(f.member.cube)
        measure = cube.measure(f.member.name) if cube else None
        assert measure is not None
        fraction = f.share_of_total or (f.compare and f.change is Change.PERCENT_CHANGE)
        return measure.integer and not fraction


def _before(t: datetime) -> datetime:
    return t - EPSILON


def _row_key(ns: str, slots: list[int]) -> str:
    """One hash of the dimension columns ``slots`` of ``ns``, for an equi-join that
    PostgreSQL can hash or merge (``IS NOT DISTINCT FROM`` it can do neither with: a join on
    the time bucket alone pairs every row of a bucket with every row of the other side's,
    probe p10 #2). ``hash_record_extended`` hashes NULL as a value and equal values alike
    (``1.0`` and ``1.00``, ``0`` and ``-0``), so rows that match have equal keys; the
    ``IS NOT DISTINCT FROM`` conditions beside it drop the rare pair whose hashes collide."""
    cols = ", ".join(f"{ns}.d{i}" for i in slots)
    return f"hash_record_extended(ROW({cols}), 0)"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _json(expr: str) -> str:
    """A value as JSON text (``null`` for NULL)."""
    return f"coalesce(to_json({expr})::text, 'null')"


def answer_statement(model: Model, plan: Plan, shape: Obj) -> sa.Select[Any]:
    return Answer(model, plan, shape).statement()
