"""Validation of a ``CubeQuery`` against the model: every bad input is a ``BadUserInputError``
naming the culprit and the closest valid names, raised before any SQL runs."""

from __future__ import annotations

import difflib
import zoneinfo
from dataclasses import replace
from functools import cache
from typing import Any, assert_never

from db.errors import BadUserInputError
from semantic.model import Cube, Dimension, DimensionType, Granularity, Measure, Model, summable
from semantic.query import (
    MAX_LIMIT,
    Condition,
    CubeQuery,
    Filter,
    Junction,
    Member,
    Op,
    Value,
    parse_when,
    time_bounds,
)

STRING_OPS = {Op.EQUALS, Op.NOT_EQUALS, Op.IN, Op.NOT_IN, Op.CONTAINS, Op.SET}
NUMBER_OPS = {Op.EQUALS, Op.NOT_EQUALS, Op.IN, Op.NOT_IN, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.SET}
BOOLEAN_OPS = {Op.EQUALS, Op.NOT_EQUALS, Op.SET}
TIME_OPS = {Op.IN_DATE_RANGE, Op.NOT_IN_DATE_RANGE, Op.BEFORE_DATE, Op.AFTER_DATE, Op.SET}
MEASURE_OPS = {Op.EQUALS, Op.NOT_EQUALS, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.SET}


def bad(message: str, culprit: str, pool: list[str] | None = None, **fields: Any) -> None:
    """Raise BAD_USER_INPUT; ``fields.field`` names the culprit (or the argument, if given)."""
    name = culprit if "/" in culprit else culprit.rpartition(".")[2]
    closest = difflib.get_close_matches(name, pool or [], n=3)
    hint = f" (did you mean: {', '.join(closest)}?)" if closest else ""
    fields.setdefault("field", culprit)
    raise BadUserInputError(message + hint, closest=closest, **fields)


def cube_of(model: Model, name: str) -> Cube:
    cube = model.cube(name)
    if cube is None:
        bad(f"unknown cube {name!r}", name, model.names())
    assert cube is not None
    return cube


def measure_of(model: Model, m: Member) -> Measure:
    cube = cube_of(model, m.cube)
    found = cube.measure(m.name)
    if found is None:
        what = "a dimension, not a measure" if cube.dimension(m.name) else "not a measure"
        bad(f"{m} is {what} of cube {m.cube!r}", str(m), [x.name for x in cube.measures])
    assert found is not None
    return found


def dimension_of(model: Model, m: Member) -> Dimension:
    cube = cube_of(model, m.cube)
    found = cube.dimension(m.name)
    if found is None:
        what = "a measure, not a dimension" if cube.measure(m.name) else "not a dimension"
        bad(f"{m} is {what} of cube {m.cube!r}", str(m), [x.name for x in cube.dimensions])
    assert found is not None
    return found


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(tz: str) -> None:
    if tz not in _zones():
        bad(f"unknown timezone {tz!r}", tz, sorted(_zones()), field="timezone", value=tz)


def check_query(model: Model, q: CubeQuery) -> None:
    if not q.measures and not q.dimensions:
        raise BadUserInputError("select at least one measure or dimension", field="cube")
    if not 0 <= q.limit <= MAX_LIMIT:
        raise BadUserInputError(
            f"limit {q.limit} is out of range (0 to {MAX_LIMIT})", field="limit", max=MAX_LIMIT
        )
    if q.offset < 0:
        raise BadUserInputError(f"offset {q.offset} must not be negative", field="offset")
    check_timezone(q.timezone)
    slots = []
    for d in q.dimensions:
        dim = dimension_of(model, d.member)
        if (dim.type is DimensionType.TIME) != (d.granularity is not None):
            kind = "needs a granularity" if d.granularity is None else "takes no granularity"
            raise BadUserInputError(f"dimension {d.member} {kind}", field=str(d.member))
        if d.granularity not in (None, Granularity.VALUE):
            slots.append(d)
    for f in q.measures:
        m = measure_of(model, f.member)
        if sum([f.compare is not None, f.to_date is not None, f.share_of_total, f.rank]) > 1:
            raise BadUserInputError(
                f"{f.member}: use one of compare, toDate, shareOfTotal, rank per field "
                "(use aliases to ask for several)",
                field=str(f.member),
            )
        if (f.to_date or f.share_of_total) and not summable(m.type):
            raise BadUserInputError(
                f"{f.member} is a {m.type.value} measure; toDate and shareOfTotal need an "
                "additive one (count or sum)",
                field=str(f.member),
            )
        if (f.compare or f.to_date) and len({s.granularity for s in slots}) != 1:
            raise BadUserInputError(
                f"{f.member}: compare and toDate need exactly one time granularity among the "
                "selected dimensions (day, week, month, quarter or year)",
                field=str(f.member),
            )
        if f.to_date and slots:
            order = [
                Granularity.DAY,
                Granularity.WEEK,
                Granularity.MONTH,
                Granularity.QUARTER,
                Granularity.YEAR,
            ]
            gran = slots[0].granularity
            assert gran is not None
            if order.index(gran) > order.index(Granularity(f.to_date.value.lower())):
                raise BadUserInputError(
                    f"{f.member}: toDate {f.to_date.value} is finer than the granularity "
                    f"{gran.value}",
                    field=str(f.member),
                )
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
        lo, hi = time_bounds(c)
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
        if parse_when(v) is None:
            raise BadUserInputError(
                f"{name} {op.value}: {v!r} is not a date (YYYY-MM-DD) or a local date-time "
                "(YYYY-MM-DDTHH:MM:SS)",
                field=name,
                value=str(v),
            )
    elif kind in ("number", "measure"):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise BadUserInputError(f"{name} {op.value}: {v!r} is not a number", field=name)
    elif kind == "boolean":
        if not isinstance(v, bool):
            raise BadUserInputError(f"{name} {op.value}: {v!r} is not a boolean", field=name)
    elif not isinstance(v, str):
        raise BadUserInputError(f"{name} {op.value}: {v!r} is not a string", field=name)


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
                f"{flt.member} {flt.op.value}: {v!r} is not one of its values "
                f"({', '.join(dim.values)}){hint}",
                field=str(flt.member),
                value=str(v),
                closest=[by_lower[c] for c in closest],
            )
        values.append(found)
    return replace(flt, values=tuple(values))
