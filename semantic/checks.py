"""Validation of a ``CubeQuery`` against the model: every bad input is a ``BadUserInputError``
naming the culprit and the closest valid names, raised before any SQL runs.

A member the caller's role may not see (``public: false``) is refused exactly as a member
that does not exist (same message, suggestions drawn from the visible members only), so an
error never tells a role that a hidden member exists.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, assert_never

from db.errors import BadUserInputError, QueryTooComplexError, clipped, shown
from semantic.dates import CalendarOverflow, parse_when, time_bounds
from semantic.model import (
    Cube,
    Dimension,
    DimensionType,
    Granularity,
    Measure,
    MeasureType,
    Model,
    derivable,
    summable,
)
from semantic.query import (
    MAX_LIMIT,
    MAX_WINDOW,
    Change,
    Condition,
    CubeQuery,
    Filter,
    Junction,
    MeasureField,
    Member,
    Op,
    Value,
)

ALL = "\x00all"  # the role that sees every member (planning, snapshots, the model's own use)

STRING_OPS = {Op.EQUALS, Op.NOT_EQUALS, Op.IN, Op.NOT_IN, Op.CONTAINS, Op.SET}
NUMBER_OPS = {Op.EQUALS, Op.NOT_EQUALS, Op.IN, Op.NOT_IN, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.SET}
BOOLEAN_OPS = {Op.EQUALS, Op.NOT_EQUALS, Op.SET}
TIME_OPS = {Op.IN_DATE_RANGE, Op.NOT_IN_DATE_RANGE, Op.BEFORE_DATE, Op.AFTER_DATE, Op.SET}
MEASURE_OPS = {Op.EQUALS, Op.NOT_EQUALS, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.SET}

# a query's filter values, counted before anything is built: 150,000 `contains` patterns
# took ~25 s of CPU and ~450 MB to compile (each one a strpos() test, and 10,000 took 1.9 s),
# and a long `in` list costs its compilation and the server a test per row
MAX_PATTERNS = 100  # `contains` patterns, in all the query's filters
MAX_FILTER_VALUES = 5_000  # values, in all its filters (as the API's bound values)
# a filter's text value: the dimensions' labels are short (the shop's texts hold at most
# 254 characters, migration 0019): a 900 KB pattern cost rows x length of CPU, never matching
MAX_VALUE_CHARS = 254


def bad(message: str, culprit: str, pool: list[str] | None = None, **fields: Any) -> None:
    """Raise BAD_USER_INPUT; ``fields.field`` names the culprit (or the argument, if given)."""
    name = culprit if "/" in culprit else culprit.rpartition(".")[2]
    closest = difflib.get_close_matches(name, pool or [], n=3)
    hint = f" (did you mean: {', '.join(closest)}?)" if closest else ""
    fields.setdefault("field", clipped(culprit))
    raise BadUserInputError(message + hint, closest=closest, **fields)


def cube_of(model: Model, name: str) -> Cube:
    cube = model.cube(name)
    if cube is None:
        bad(f"unknown cube {shown(name)}", name, model.names())
    assert cube is not None
    return cube


def _sees(member: Dimension | Measure | None, role: str | None) -> bool:
    return member is not None and (role == ALL or member.visible_to(role))


def measure_of(model: Model, m: Member, role: str | None = ALL) -> Measure:
    cube = cube_of(model, m.cube)
    found = cube.measure(m.name)
    if not _sees(found, role):
        other = cube.dimension(m.name)
        what = "a dimension, not a measure" if _sees(other, role) else "not a measure"
        pool = [x.name for x in cube.measures if _sees(x, role)]
        bad(f"{m} is {what} of cube {m.cube!r}", str(m), pool)
    assert found is not None
    return found


def dimension_of(model: Model, m: Member, role: str | None = ALL) -> Dimension:
    cube = cube_of(model, m.cube)
    found = cube.dimension(m.name)
    if not _sees(found, role):
        other = cube.measure(m.name)
        what = "a measure, not a dimension" if _sees(other, role) else "not a dimension"
        pool = [x.name for x in cube.dimensions if _sees(x, role)]
        bad(f"{m} is {what} of cube {m.cube!r}", str(m), pool)
    assert found is not None
    return found


def check_timezone(tz: str, zones: Mapping[str, str]) -> str:
    """``tz`` spelled as the server's time zone data has it (``pg_timezone_names``, keyed by
    lower case: PostgreSQL matches names in any case, so ``europe/paris`` is Europe/Paris).
    Python's list differs (``localtime``, zones newer than the server's data)."""
    found = zones.get(tz.lower())
    if found is None:
        pool = sorted(zones.values())
        bad(f"unknown timezone {shown(tz)}", tz, pool, field="timezone", value=clipped(tz))
    assert found is not None
    return found


def check_access(model: Model, q: CubeQuery, role: str | None) -> None:
    """Every member the query names is one ``role`` may see (else: as if unknown)."""
    for f in q.measures:
        measure_of(model, f.member, role)
    for d in q.dimensions:
        dimension_of(model, d.member, role)
    for flt in q.filters:
        for c in _conditions(flt):
            _member_of(model, c.member, role)
    for o in q.order:
        _member_of(model, o.member, role)


def _member_of(model: Model, m: Member, role: str | None) -> None:
    cube = cube_of(model, m.cube)
    if not (_sees(cube.measure(m.name), role) or _sees(cube.dimension(m.name), role)):
        bad(f"{m} is not a member of cube {m.cube!r}", str(m), cube.visible_names(role))


def _conditions(flt: Filter) -> list[Condition]:
    if isinstance(flt, Junction):
        return [c for item in flt.items for c in _conditions(item)]
    return [flt]


def window_summable(model: Model, m: Member) -> bool:
    """Can the measure be summed over buckets (running totals, moving windows)? Counts and
    sums, and ``number`` measures made of them only (each part is summed, then combined)."""
    measure = measure_of(model, m)
    if measure.type is MeasureType.NUMBER:
        return all(window_summable(model, Member.parse(r, m.cube)) for r in measure.refs())
    return summable(measure.type)


GRAINS = [
    Granularity.DAY,
    Granularity.WEEK,
    Granularity.MONTH,
    Granularity.QUARTER,
    Granularity.YEAR,
]


def _check_field(model: Model, f: MeasureField, grans: set[Granularity | None]) -> None:
    m = measure_of(model, f.member)
    name = str(f.member)
    if len(f.modifiers) > 1:
        raise BadUserInputError(
            f"{name}: use one of compare, toDate, rolling, shareOfTotal, rank per field "
            "(use aliases to ask for several)",
            field=name,
        )
    if f.change is not Change.VALUE and f.compare is None:
        raise BadUserInputError(
            f"{name}: 'as: {f.change.value}' describes a comparison; add compare", field=name
        )
    if f.share_of_total and not (summable(m.type) or m.type is MeasureType.LAST):
        raise BadUserInputError(
            f"{name} is a {m.type.value} measure; shareOfTotal needs an additive one "
            "(count, sum or last)",
            field=name,
        )
    if f.windowed and not window_summable(model, f.member):
        raise BadUserInputError(
            f"{name} is a {m.type.value} measure; toDate and rolling need one that sums over "
            "time (count or sum, or a number measure made of them)",
            field=name,
        )
    if (f.compare or f.windowed) and len(grans) != 1:
        raise BadUserInputError(
            f"{name}: compare, toDate and rolling need exactly one time granularity among the "
            "selected dimensions (day, week, month, quarter or year)",
            field=name,
        )
    gran = next(iter(grans)) if grans else None
    period = Granularity(f.to_date.value.lower()) if f.to_date else None
    if period and gran and GRAINS.index(gran) > GRAINS.index(period):
        raise BadUserInputError(
            f"{name}: toDate {period.value.upper()} is finer than the granularity {gran.value}",
            field=name,
        )
    if f.rolling is not None and gran is not None:
        r = f.rolling
        if not 1 <= r.count <= MAX_WINDOW:
            raise BadUserInputError(
                f"{name}: a rolling window covers 1 to {MAX_WINDOW} units, not {r.count}",
                field=name,
            )
        if r.unit is Granularity.VALUE or not derivable(gran, r.unit):
            raise BadUserInputError(
                f"{name}: a rolling window in {r.unit.value}s is not made of whole "
                f"{gran.value} buckets (the unit must be the granularity or a coarser one "
                "it divides: day into week/month/quarter/year, month into quarter/year)",
                field=name,
            )


def check_query(model: Model, q: CubeQuery) -> None:
    check_sizes(q)
    if not q.measures and not q.dimensions:
        raise BadUserInputError("select at least one measure or dimension", field="cube")
    if not 0 <= q.limit <= MAX_LIMIT:
        raise BadUserInputError(
            f"limit {q.limit} is out of range (0 to {MAX_LIMIT})", field="limit", max=MAX_LIMIT
        )
    if q.offset < 0:
        raise BadUserInputError(f"offset {q.offset} must not be negative", field="offset")
    grans: set[Granularity | None] = set()
    for d in q.dimensions:
        dim = dimension_of(model, d.member)
        if (dim.type is DimensionType.TIME) != (d.granularity is not None):
            kind = "needs a granularity" if d.granularity is None else "takes no granularity"
            raise BadUserInputError(f"dimension {d.member} {kind}", field=str(d.member))
        if d.granularity not in (None, Granularity.VALUE):
            grans.add(d.granularity)
    for f in q.measures:
        _check_field(model, f, grans)
    for s in q.segments:
        cube = cube_of(model, s.cube)
        if cube.segment(s.name) is None:
            bad(f"unknown segment {s}", str(s), [x.name for x in cube.segments])
    for flt in q.filters:
        check_filter(model, flt)
    selected = {d.member for d in q.dimensions}
    for o in q.order:
        cube = cube_of(model, o.member.cube)
        if cube.measure(o.member.name) is None and o.member not in selected:
            names = [str(d.member) for d in q.dimensions] + [str(m.member) for m in q.measures]
            bad(
                f"cannot order by {o.member}: order by a measure or a selected dimension",
                str(o.member),
                names,
            )


def check_sizes(q: CubeQuery) -> None:
    """QUERY_TOO_COMPLEX past ``MAX_PATTERNS`` ``contains`` patterns or ``MAX_FILTER_VALUES``
    values in the query's filters (one condition alone, or all of them): counted before
    anything is checked value by value or compiled; BAD_USER_INPUT for a text value of
    more than ``MAX_VALUE_CHARS``."""
    conditions = [c for flt in q.filters for c in _conditions(flt)]
    for c in conditions:
        limit = MAX_PATTERNS if c.op is Op.CONTAINS else MAX_FILTER_VALUES
        if len(c.values) > limit:
            _too_many(f"{c.member} {c.op.value}", len(c.values), limit, c.op)
    for c in conditions:
        for v in c.values:
            if isinstance(v, str) and len(v) > MAX_VALUE_CHARS:
                raise BadUserInputError(
                    f"{c.member} {c.op.value}: a filter value may hold at most"
                    f" {MAX_VALUE_CHARS:,} characters, got {len(v):,}",
                    field="where",
                    reason="too long",
                    max=MAX_VALUE_CHARS,
                )
    patterns = sum(len(c.values) for c in conditions if c.op is Op.CONTAINS)
    if patterns > MAX_PATTERNS:
        _too_many("the query's filters", patterns, MAX_PATTERNS, Op.CONTAINS)
    values = sum(len(c.values) for c in conditions)
    if values > MAX_FILTER_VALUES:
        _too_many("the query's filters", values, MAX_FILTER_VALUES, Op.IN)


def _too_many(what: str, n: int, limit: int, op: Op) -> None:
    kind = "contains patterns" if op is Op.CONTAINS else "values"
    raise QueryTooComplexError(
        f"{what}: {n:,} {kind}, more than {limit:,}: send fewer", field="where", limit=limit
    )


def check_filter(model: Model, flt: Filter) -> None:
    if isinstance(flt, Junction):
        if not flt.items:
            raise BadUserInputError(f"empty {flt.kind.upper()} filter", field=flt.kind.upper())
        kinds = {is_measure_filter(model, i) for i in flt.items}
        if flt.kind == "or" and len(kinds) > 1:
            raise BadUserInputError(
                "an OR cannot mix measure filters with dimension filters", field="OR"
            )
        for item in flt.items:
            check_filter(model, item)
        return
    _check_condition(model, flt)


def is_measure_filter(model: Model, flt: Filter) -> bool:
    if isinstance(flt, Junction):
        return any(is_measure_filter(model, i) for i in flt.items)
    cube = cube_of(model, flt.member.cube)
    return cube.measure(flt.member.name) is not None


def _check_condition(model: Model, c: Condition) -> None:
    cube = cube_of(model, c.member.cube)
    name = str(c.member)
    if cube.measure(c.member.name) is not None:
        allowed = MEASURE_OPS
        kind = "measure"
    else:
        dim = dimension_of(model, c.member)
        kind = dim.type.value
        match dim.type:
            case DimensionType.STRING:
                allowed = STRING_OPS
            case DimensionType.NUMBER:
                allowed = NUMBER_OPS
            case DimensionType.BOOLEAN:
                allowed = BOOLEAN_OPS
            case DimensionType.TIME:
                allowed = TIME_OPS
            case _:
                assert_never(dim.type)
    if c.op not in allowed:
        ops = sorted(o.value for o in allowed)
        bad(
            f"{name} is a {kind}; it cannot be filtered with {c.op.value!r}"
            f" (allowed: {', '.join(ops)})",
            name,
            [],
        )
    _check_values(name, kind, c)


def _check_values(name: str, kind: str, c: Condition) -> None:
    n = len(c.values)
    want = {
        Op.IN: (1, None),
        Op.NOT_IN: (1, None),
        Op.CONTAINS: (1, None),
        Op.IN_DATE_RANGE: (2, 2),
        Op.NOT_IN_DATE_RANGE: (2, 2),
    }.get(c.op, (1, 1))
    if n < want[0] or (want[1] is not None and n > want[1]):
        count = f"{want[0]}" if want[0] == want[1] else f"at least {want[0]}"
        raise BadUserInputError(
            f"{name} {c.op.value}: expected {count} value(s), got {n}", field=name
        )
    for v in c.values:
        _check_value(name, kind, c.op, v)
    if c.op in (Op.IN_DATE_RANGE, Op.NOT_IN_DATE_RANGE):
        lo, hi = bounds_of(c)
        if lo is not None and hi is not None and lo >= hi:
            raise BadUserInputError(
                f"{name} {c.op.value}: the range {c.values[0]!s} .. {c.values[1]!s} is empty "
                "(its start is after its end)",
                field=name,
            )


def _check_value(name: str, kind: str, op: Op, v: Value) -> None:
    if op is Op.SET:
        if not isinstance(v, bool):
            raise BadUserInputError(f"{name} set: expected true or false", field=name)
    elif op in (Op.IN_DATE_RANGE, Op.NOT_IN_DATE_RANGE, Op.BEFORE_DATE, Op.AFTER_DATE):
        try:
            parsed = parse_when(v)
        except CalendarOverflow:
            raise BadUserInputError(
                f"{name} {op.value}: {shown(v)} is the last day this API can compute with; "
                "leave the bound out for an open range (beforeDate / afterDate)",
                field=name,
                value=clipped(str(v)),
            ) from None
        if parsed is None:
            raise BadUserInputError(
                f"{name} {op.value}: {shown(v)} is not a date (YYYY-MM-DD) or a local date-time "
                "(YYYY-MM-DDTHH:MM:SS)",
                field=name,
                value=clipped(str(v)),
            )
    elif kind in ("number", "measure"):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise BadUserInputError(f"{name} {op.value}: {shown(v)} is not a number", field=name)
    elif kind == "boolean":
        if not isinstance(v, bool):
            raise BadUserInputError(f"{name} {op.value}: {shown(v)} is not a boolean", field=name)
    elif not isinstance(v, str):
        raise BadUserInputError(f"{name} {op.value}: {shown(v)} is not a string", field=name)


def bounds_of(c: Condition) -> tuple[Any, Any]:
    """``time_bounds`` of a checked condition, a bound past the calendar as bad input."""
    try:
        return time_bounds(c)
    except CalendarOverflow as exc:
        raise BadUserInputError(f"{c.member} {c.op.value}: {exc}", field=str(c.member)) from None


VALUE_OPS = frozenset({Op.EQUALS, Op.NOT_EQUALS, Op.IN, Op.NOT_IN})


def canonical(model: Model, q: CubeQuery) -> CubeQuery:
    """The query with filter values of closed-set dimensions spelled as the model declares them.

    ``status: {notIn: ["CANCELLED"]}`` matches the stored ``cancelled`` (GraphQL enums are
    upper case, the warehouse's values lower case); a value outside the set is refused with
    the valid ones, rather than silently matching nothing.
    """
    filters = tuple(_canonical_filter(model, f) for f in q.filters)
    return q if filters == q.filters else replace(q, filters=filters)


def _canonical_filter(model: Model, flt: Filter) -> Filter:
    if isinstance(flt, Junction):
        return replace(flt, items=tuple(_canonical_filter(model, i) for i in flt.items))
    cube = model.cube(flt.member.cube)
    dim = cube.dimension(flt.member.name) if cube else None
    if dim is None or not dim.values or flt.op not in VALUE_OPS:
        return flt
    by_lower = {v.lower(): v for v in dim.values}
    values: list[Value] = []
    for v in flt.values:
        found = by_lower.get(v.lower()) if isinstance(v, str) else None
        if found is None:
            closest = difflib.get_close_matches(str(v).lower(), list(by_lower), n=3)
            hint = f" (did you mean: {', '.join(by_lower[c] for c in closest)}?)" if closest else ""
            raise BadUserInputError(
                f"{flt.member} {flt.op.value}: {shown(v)} is not one of its values "
                f"({', '.join(dim.values)}){hint}",
                field=str(flt.member),
                value=clipped(str(v)),
                closest=[by_lower[c] for c in closest],
            )
        values.append(found)
    return replace(flt, values=tuple(values))
