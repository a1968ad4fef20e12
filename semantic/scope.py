"""What a cube answer read, and whether a later warehouse version changed any of it.

The pipeline's publish step records per version the tables its runs changed
(``dw.etl_version.changes``): for a fact table the UTC days (``date_key``) of the facts it
touched, for any other table (a dimension, a snapshot, a table rebuilt whole) null, the
whole table; ``changes`` null is everything (a full load). A version with no row there (a
full load's own bump, or one pruned) counts as everything too.

An answer's ``Scope`` is every ``dw`` table its SQL reads, each with the UTC days it can
read of it: a fact table's days are bounded when every fact of the plan reading it has a
date-range filter (``inDateRange``, ``beforeDate``, ``afterDate``, ANDed at the top) on
the cube's *date dimension* - the time dimension its rollups bucket by, whose UTC day is
the table's ``date_key`` (the rollups' delta refresh relies on the same convention) - and
no measure reads outside the filtered range (``compare``, ``toDate``, ``rolling``), nor a
member's own SQL reads the table again. A ``sql_table`` outside ``dw`` (or a cube of SQL)
makes the scope everything. Bounds
are widened by a day each side: the filter is in the query's time zone, ``date_key`` in
UTC. Everything else is the whole table. A dimension's type-1 change touches the facts
that point at it (``etl/load.py``), and its table counts as changed whole as well, so an
answer grouping by a dimension's attribute is invalidated either way.

``still_valid`` answers whether an answer of version ``v`` holds at ``V``: none of the
versions ``(v, V]`` changed a table, or a day of a fact table, in its scope. Published
versions never change; they are read from ``dw.etl_version`` when an entry is checked.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from semantic.dates import EPSILON, time_bounds
from semantic.model import Model
from semantic.planner import FactPlan, Plan
from semantic.query import Condition, Op

Days = tuple[int, int] | None  # inclusive date_key bounds; None: every day
Scope = Mapping[str, Days]  # dw table -> the days of it an answer can read
Changes = Mapping[str, frozenset[int] | None] | None  # table -> days changed; None: all

_TABLE = re.compile(r'"?\b[dD][wW]"?\."?([A-Za-z_][A-Za-z0-9_]*)"?')
_PLAIN = re.compile(r"dw\.[a-z_][a-z0-9_]*")
_BOUNDED = (Op.IN_DATE_RANGE, Op.BEFORE_DATE, Op.AFTER_DATE)
DAY = timedelta(days=1)
EVERYTHING = "*"  # a scope's key: the answer may read any table


def scope(model: Model, plan: Plan, sql: str) -> Scope:
    """The ``dw`` tables ``sql`` (the plan's statement) reads, with the days of each; a
    cube defined by SQL rather than a table (or its rollup) reads anything (``EVERYTHING``)."""
    windowed = any(f.compare is not None or f.windowed for f in plan.query.measures)
    read = Counter(f"dw.{t.lower()}" for t in _TABLE.findall(sql))
    roots: dict[str, list[Days]] = {}
    joined: set[str] = set()
    out: dict[str, Days] = {}
    for fact in plan.facts:
        for name in (fact.cube, *fact.joins):
            cube = model.cube(name)
            table = _name(cube.sql_table) if cube is not None else None
            if table is None:
                out[EVERYTHING] = None  # a cube of SQL, or a table outside dw
            elif name == fact.cube:
                days = None if windowed else _days(model, fact)
                roots.setdefault(table, []).append(days)
            else:
                joined.add(table)
    for table, found in roots.items():
        bounded = [r for r in found if r is not None]
        if (
            table not in joined
            and len(bounded) == len(found)
            and read[table] <= len(found)  # not read again by a member's own SQL
        ):
            out[table] = (min(r[0] for r in bounded), max(r[1] for r in bounded))
        else:
            out[table] = None
    for table in (joined | read.keys()) - roots.keys():
        out[table] = None
    return out


def _name(table: str | None) -> str | None:
    """A cube's ``sql_table`` as the ETL names it (``dw.fact_sales``); None outside dw."""
    if table is None:
        return None
    name = table.replace('"', "").strip().lower()
    return name if _PLAIN.fullmatch(name) else None


def _days(model: Model, fact: FactPlan) -> Days:
    """The UTC days a fact's top-level date filters allow (None: unbounded)."""
    cube = model.cube(fact.cube)
    assert cube is not None
    dims = {p.time_dimension for p in cube.pre_aggregations}
    if len(dims) != 1:
        return None  # no rollup says which time dimension is date_key's
    (dim,) = dims
    lo: datetime | None = None
    hi: datetime | None = None
    for flt in fact.filters:
        if not (
            isinstance(flt, Condition)
            and flt.member.cube == fact.cube
            and flt.member.name == dim
            and flt.op in _BOUNDED
        ):
            continue
        a, b = time_bounds(flt)
        if a is not None and (lo is None or a > lo):
            lo = a
        if b is not None and (hi is None or b < hi):
            hi = b
    if lo is None or hi is None:
        return None
    if hi <= lo:
        return (0, -1)  # an empty range reads nothing
    try:
        return _key(lo.date() - DAY), _key((hi - EPSILON).date() + DAY)
    except OverflowError:  # a bound within a day of year 1 or 9999
        return None


def _key(d: date) -> int:
    return d.year * 10000 + d.month * 100 + d.day


def disjoint(scope: Scope, changes: Changes) -> bool:
    """Whether a version that made ``changes`` left everything in ``scope`` as it was."""
    if changes is None or (EVERYTHING in scope and changes):
        return False
    for table, days in scope.items():
        if table not in changes:
            continue
        changed = changes[table]
        if days is None or changed is None:
            return False
        lo, hi = days
        if any(lo <= d <= hi for d in changed):
            return False
    return True


MAX_VERSIONS = 1000  # an answer older than this many versions is computed again
_READ = sa.text(
    "SELECT version, changes FROM dw.etl_version WHERE version > :lo AND version <= :hi"
)


def still_valid(conn: Connection, scope: Scope, since: int, now: int) -> bool:
    """Whether an answer with ``scope`` read at version ``since`` holds at ``now``: the
    versions between are read from the database every time (one indexed range; an entry
    that passes is re-stamped, so it is read once per entry and version), never
    remembered, so a database restored or re-created under the same URL is not judged by
    another's history."""
    if since == now:
        return True
    if since > now or now - since > MAX_VERSIONS:
        return False
    got = {int(v): c for v, c in conn.execute(_READ, {"lo": since, "hi": now})}
    if len(got) != now - since:
        return False  # a version not recorded counts as everything
    return all(disjoint(scope, _parse(c)) for c in got.values())


def _parse(raw: object) -> Changes:
    if not isinstance(raw, dict):
        return None
    return {
        str(t): None if days is None else frozenset(int(d) for d in days) for t, days in raw.items()
    }
