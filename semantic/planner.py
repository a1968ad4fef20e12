"""Cube query → ``Plan``: which facts aggregate which measures, joined to which cubes, on
which output columns (slots), with which filters, from which source (facts or a rollup).

Several facts in one query (``sales.revenue`` with ``returns.refundAmount``, or a
``number`` measure spanning cubes) are planned one ``FactPlan`` each; ``semantic.compile``
aggregates each on its own and joins the results on the shared slots, so nothing fans out.
In such a query the time dimensions of the facts are conformed: a time slot (or a time
filter) on one fact's own time is applied to each other fact's own time dimension; each
such re-targeting is listed in ``Plan.retargeted`` (and reported in ``extensions.cube``).

``last`` measures (semi-additive: the last snapshot of each bucket) aggregate in two
steps, so they are planned as a fact of their own beside the cube's other measures.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from db.errors import BadUserInputError
from semantic.checks import canonical, check_query, is_measure_filter
from semantic.model import DimensionType, Granularity, MeasureType, Model, Relationship
from semantic.query import Condition, CubeQuery, DimensionField, Filter, Junction, Member
from semantic.rollups import match_rollup

CONFORMED = "@time"


@dataclass(frozen=True)
class Slot:
    """One output dimension column ``d{i}``; ``fields`` are the selections it answers."""

    fields: tuple[DimensionField, ...]
    granularity: Granularity | None

    @property
    def is_time(self) -> bool:
        return self.granularity is not None


@dataclass(frozen=True)
class FactPlan:
    cube: str
    joins: tuple[str, ...]
    measures: tuple[Member, ...]
    dims: tuple[Member, ...]  # per slot, the member this fact groups by
    filters: tuple[Filter, ...]
    segments: tuple[Member, ...]
    rollup: str | None = None  # the pre-aggregation's name
    last: Member | None = None  # last measures: the snapshot time they take the last of


@dataclass(frozen=True)
class Retarget:
    """A time member of the query applied to another fact's own time dimension."""

    fact: str
    source: Member
    target: Member
    use: str  # "filter" | "dimension"

    def as_json(self) -> dict[str, str]:
        return {
            "fact": self.fact,
            "from": str(self.source),
            "to": str(self.target),
            "as": self.use,
        }


@dataclass(frozen=True)
class Plan:
    query: CubeQuery
    slots: tuple[Slot, ...]
    facts: tuple[FactPlan, ...]
    base: tuple[Member, ...]  # every aggregated (non-number) measure: column m{i}
    having: tuple[Filter, ...]  # filters on measures, applied after aggregation
    time_slot: int | None  # the slot compare/toDate shift along
    retargeted: tuple[Retarget, ...] = ()


def reachable(model: Model, root: str) -> dict[str, str | None]:
    """Cubes reachable from ``root`` over many-to-one / one-to-one joins: name → parent."""
    parents: dict[str, str | None] = {root: None}
    todo = deque([root])
    while todo:
        name = todo.popleft()
        cube = model.cube(name)
        assert cube is not None
        for j in cube.joins:
            if j.relationship is not Relationship.ONE_TO_MANY and j.cube not in parents:
                parents[j.cube] = name
                todo.append(j.cube)
    return parents


def base_measures(model: Model, m: Member, out: list[Member]) -> None:
    cube = model.cube(m.cube)
    measure = cube.measure(m.name) if cube else None
    assert measure is not None
    refs = measure.refs()
    if not refs and m not in out:
        out.append(m)
    for ref in refs:
        base_measures(model, Member.parse(ref, m.cube), out)


def _filter_members(flt: Filter) -> list[Member]:
    if isinstance(flt, Junction):
        return [m for item in flt.items for m in _filter_members(item)]
    return [flt.member]


def _is_time(model: Model, m: Member) -> bool:
    cube = model.cube(m.cube)
    d = cube.dimension(m.name) if cube else None
    return d is not None and d.type is DimensionType.TIME


def plan_query(
    model: Model, q: CubeQuery, fresh: frozenset[str] = frozenset(), *, checked: bool = False
) -> Plan:
    """``fresh``: the rollups (``cube.name``) built for the current warehouse version;
    ``checked``: ``q`` already went through ``canonical`` and ``check_query`` (the service
    does both before its cache lookup)."""
    if not checked:
        q = canonical(model, q)
        check_query(model, q)
    having = tuple(f for f in q.filters if is_measure_filter(model, f))
    where = tuple(f for f in q.filters if not is_measure_filter(model, f))
    base: list[Member] = []
    for f in q.measures:
        base_measures(model, f.member, base)
    for flt in having:
        for m in _filter_members(flt):
            base_measures(model, m, base)
    for o in q.order:
        cube = model.cube(o.member.cube)
        if cube is not None and cube.measure(o.member.name) is not None:
            base_measures(model, o.member, base)
    groups: dict[tuple[str, Member | None], list[Member]] = {}
    for m in base:
        groups.setdefault((m.cube, _last_time(model, m)), []).append(m)
    if not groups:
        groups[(_dimension_root(model, q), None)] = []
    roots = {cube for cube, _ in groups}
    multi = len(roots) > 1
    slots = _slots(q, roots if multi else set())
    retargeted: list[Retarget] = []
    facts = tuple(
        _fact(model, q, root, last, measures, slots, where, multi, fresh, retargeted)
        for (root, last), measures in groups.items()
    )
    time_slot = next(
        (i for i, s in enumerate(slots) if s.granularity not in (None, Granularity.VALUE)), None
    )
    unique = tuple(dict.fromkeys(retargeted))
    return Plan(q, slots, facts, tuple(base), having, time_slot, unique)


def _last_time(model: Model, m: Member) -> Member | None:
    cube = model.cube(m.cube)
    measure = cube.measure(m.name) if cube else None
    if measure is None or measure.type is not MeasureType.LAST:
        return None
    assert measure.time_dimension is not None
    return Member(m.cube, measure.time_dimension)


def _dimension_root(model: Model, q: CubeQuery) -> str:
    """No measures: the first cube of the query that reaches every other one."""
    cubes = list(
        dict.fromkeys(
            [d.member.cube for d in q.dimensions]
            + [m.cube for f in q.filters for m in _filter_members(f)]
            + [s.cube for s in q.segments]
        )
    )
    for name in cubes:
        if set(cubes) <= set(reachable(model, name)):
            return name
    raise BadUserInputError(
        f"no cube joins all of {', '.join(cubes)}; add a measure of the cube to group by",
        field="cube",
    )


def _slots(q: CubeQuery, roots: set[str]) -> tuple[Slot, ...]:
    keyed: dict[tuple[str, Granularity | None], list[DimensionField]] = {}
    for d in q.dimensions:
        conformed = d.granularity is not None and d.member.cube in roots
        member = CONFORMED if conformed else str(d.member)
        keyed.setdefault((member, d.granularity), []).append(d)
    return tuple(Slot(tuple(fields), gran) for (_, gran), fields in keyed.items())


def _own_time(model: Model, root: str, slots: tuple[Slot, ...]) -> Member | None:
    for s in slots:
        for f in s.fields:
            if s.is_time and f.member.cube == root:
                return f.member
    cube = model.cube(root)
    assert cube is not None
    times = cube.time_dimensions()
    return Member(root, times[0].name) if times else None


def _fact(
    model: Model,
    q: CubeQuery,
    root: str,
    last: Member | None,
    measures: list[Member],
    slots: tuple[Slot, ...],
    where: tuple[Filter, ...],
    multi: bool,
    fresh: frozenset[str],
    retargeted: list[Retarget],
) -> FactPlan:
    parents = reachable(model, root)
    own_time = _own_time(model, root, slots)

    def resolve(m: Member, what: str) -> Member:
        if m.cube in parents:
            return m
        if multi and _is_time(model, m) and own_time is not None:
            # conformed time of a multi-fact query
            use = "dimension" if what == "grouped by" else "filter"
            retargeted.append(Retarget(root, m, own_time, use))
            return own_time
        raise BadUserInputError(
            f"{root} measures cannot be {what} {m}: {root} has no many-to-one path to "
            f"{m.cube!r} (reachable: {', '.join(sorted(parents))})",
            field=str(m),
            closest=sorted(parents),
        )

    def remap(flt: Filter) -> Filter:
        if isinstance(flt, Junction):
            return Junction(flt.kind, tuple(remap(i) for i in flt.items))
        return replace(flt, member=resolve(flt.member, "filtered by"))

    dims = tuple(resolve(s.fields[0].member, "grouped by") for s in slots)
    filters = tuple(remap(f) for f in where)
    segments = tuple(resolve(s, "restricted to segment") for s in q.segments)
    used = {*(m.cube for m in dims), *(s.cube for s in segments)}
    used |= {m.cube for f in filters for m in _filter_members(f)}
    for m in (*dims, *(m for f in filters for m in _filter_members(f))):
        used |= _read_cubes(model, root, m, parents)
    joins: list[str] = []
    for name in sorted(used - {root}):
        chain = []
        node: str | None = name
        while node is not None and node != root:
            chain.append(node)
            node = parents[node]
        joins.extend(c for c in reversed(chain) if c not in joins)
    fact = FactPlan(root, tuple(joins), tuple(measures), dims, filters, segments, last=last)
    if last is not None:
        return fact  # two-step aggregates: always from the facts
    rollup = match_rollup(model, fact, [s.granularity for s in slots], q.timezone, fresh)
    return replace(fact, rollup=rollup.name if rollup else None)


def _read_cubes(model: Model, root: str, m: Member, parents: dict[str, str | None]) -> set[str]:
    """The other cubes a dimension's SQL reads (``customers.rfmSegment`` reads ``rfm``):
    joined from the fact, so each must be on its many-to-one paths."""
    cube = model.cube(m.cube)
    d = cube.dimension(m.name) if cube else None
    out: set[str] = set()
    for owner, name in d.refs() if d else ():
        if owner not in parents:
            raise BadUserInputError(
                f"{m} reads {owner}.{name}, which {root} does not join: use it with a fact "
                f"that joins {owner!r} (e.g. sales or orders measures)",
                field=str(m),
            )
        out.add(owner)
    return out


def condition_members(flt: Filter) -> list[Condition]:
    if isinstance(flt, Junction):
        return [c for item in flt.items for c in condition_members(item)]
    return [flt]
