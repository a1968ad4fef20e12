"""compare, and toDate/rolling under a date filter, join the shifted (or widened) aggregate
to ``agg`` on every dimension as a hash or merge key (probe p10 #2): a join on the time
bucket alone, the other dimensions a filter, is quadratic in the rows of a bucket (a cube of
cost ~1,000 ran to the statement timeout). The answers stay those of a null-safe match on
every dimension, checked here against hand-written SQL; a NULL dimension (an undelivered
order's hours, a subtotal row's totalled dimensions) matches NULL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from sqlalchemy.engine import Engine

from db.config import to_libpq_url
from semantic.model import Granularity
from semantic.query import Compare, Condition, CubeQuery, Op, Rolling
from tests.semantic.conftest import d, m, mem, run, sql

YEAR = "orders.orderedAt.year"
MONTH = "orders.orderedAt.month"
STAMP = "%Y-%m-%dT%H:%M:%S"
Key = tuple[str, str, float | None]
MONTH_DIMS = (d("orders.orderedAt", "month"), d("orders.channel"), d("orders.hoursToDeliver"))


def hours(v: Decimal | None) -> float | None:
    return None if v is None else float(v)


def counts(wh: Engine, grain: str, where: str = "TRUE") -> dict[Key, int]:
    """Orders per (bucket, channel, hours to deliver), by hand."""
    rows = sql(
        wh,
        f"""SELECT date_trunc('{grain}', ordered_at AT TIME ZONE 'UTC'), channel,
                   hours_to_deliver, count(*)
            FROM dw.fact_orders WHERE {where} GROUP BY 1, 2, 3""",
    )
    return {(t.strftime(STAMP), ch, hours(h)): n for t, ch, h, n in rows}


def shifted(stamp: str, years: int = 0, months: int = 0) -> str:
    t = datetime.strptime(stamp, STAMP)
    k = t.year * 12 + t.month - 1 - years * 12 - months
    return t.replace(year=k // 12, month=k % 12 + 1).strftime(STAMP)


def ordered(keys: list[Key]) -> list[Key]:
    """The answer's order: every dimension ascending, NULLs last."""
    return sorted(keys, key=lambda k: (k[0], k[1], k[2] is None, k[2] or 0.0))


def prior_year(**kw: Any) -> CubeQuery:
    return CubeQuery(
        measures=(m("orders.count"), m("orders.count", "prev", compare=Compare.PRIOR_YEAR)),
        dimensions=(d("orders.orderedAt", "year"), d("orders.channel"), d("orders.hoursToDeliver")),
        **kw,
    )


def keyed(rows: Any, date: str) -> list[tuple[Key, Any, Any]]:
    out = []
    for r in rows:
        key = (r[date], r["orders.channel"], r["orders.hoursToDeliver"])
        out.append((key, r["orders.count"], r.get("prev", r.get("rolled"))))
    return out


def test_prior_year_matches_every_dimension_nulls_included(wh: Engine) -> None:
    by_hand = counts(wh, "year")
    want = [
        (k, by_hand[k], by_hand.get((shifted(k[0], years=1), k[1], k[2])))
        for k in ordered(list(by_hand))
    ]
    got = keyed(run(wh, prior_year()).rows, YEAR)
    assert got == want
    # the check reaches NULL matches: undelivered orders a year apart on the same channel
    assert any(k[2] is None and prev is not None for k, _, prev in got)
    assert sum(prev is not None for _, _, prev in got) >= 20
    # the probe's shape (a small page far into the answer) pages the same rows
    for offset in (0, 7, len(want) // 2, len(want) - 1):
        page = keyed(run(wh, prior_year(limit=3, offset=offset)).rows, YEAR)
        assert page == want[offset : offset + 3], offset


def test_prior_year_with_subtotals_matches_the_totalled_rows(wh: Engine) -> None:
    """Subtotal rows carry NULL in the dimensions they total: each matches the same subtotal
    of the year before."""
    res = run(wh, prior_year(subtotals=True))
    value = {
        (k, totals): n
        for (k, n, _), totals in zip(keyed(res.rows, YEAR), res.totals, strict=True)
        if "orders.orderedAt.year" not in totals
    }
    checked = 0
    for (k, n, prev), totals in zip(keyed(res.rows, YEAR), res.totals, strict=True):
        if "orders.orderedAt.year" in totals:
            assert prev is None
            continue
        before = value.get(((shifted(k[0], years=1), k[1], k[2]), totals))
        assert prev == before, (k, totals)
        checked += before is not None and bool(totals)
        assert n is not None
    assert checked >= 4


def test_rolling_under_a_date_filter_matches_every_dimension(wh: Engine) -> None:
    """The widened aggregate (win_*) joins on the same bucket and every other dimension."""
    q = CubeQuery(
        measures=(
            m("orders.count"),
            m("orders.count", "rolled", rolling=Rolling(2, Granularity.MONTH)),
        ),
        dimensions=MONTH_DIMS,
        filters=(
            Condition(mem("orders.orderedAt"), Op.IN_DATE_RANGE, ("2025-03-01", "2025-05-31")),
        ),
    )
    by_hand = counts(wh, "month", "ordered_at >= '2025-02-01Z' AND ordered_at < '2025-06-01Z'")
    inside = [k for k in by_hand if k[0] >= "2025-03"]
    want = [
        (k, by_hand[k], by_hand[k] + by_hand.get((shifted(k[0], months=1), k[1], k[2]), 0))
        for k in ordered(inside)
    ]
    got = keyed(run(wh, q).rows, MONTH)
    assert got == want
    assert any(k[2] is None and rolled > n for k, n, rolled in got)


def joins(plan: Any) -> Iterator[dict[str, Any]]:
    """Every join node of an EXPLAIN (FORMAT JSON) plan."""
    if plan.get("Node Type") in ("Nested Loop", "Hash Join", "Merge Join"):
        yield plan
    for sub in plan.get("Plans", []):
        yield from joins(sub)


def aliases(plan: dict[str, Any]) -> set[str]:
    found = {plan["Alias"]} if "Alias" in plan else set()
    for sub in plan.get("Plans", []):
        found |= aliases(sub)
    return found


def shifted_join(
    wh: Engine, q: CubeQuery, side: tuple[str, ...], **settings: str
) -> dict[str, Any]:
    """The join of the current rows with the shifted (``prev_*``) or widened (``win_*``,
    whose inner ``ext_*`` PostgreSQL 16 pulls up in its place) aggregate, run under EXPLAIN
    ANALYZE with ``settings``."""
    res = run(wh, q)
    url = wh.url.render_as_string(hide_password=False)
    with psycopg.connect(to_libpq_url(url)) as conn:
        for name, value in settings.items():
            conn.execute(f"SET {name} = {value}")
        (explained,) = conn.execute(  # type: ignore[misc]
            "EXPLAIN (ANALYZE, FORMAT JSON) " + res.sql, res.params
        ).fetchone()
    plan = (explained if isinstance(explained, list) else json.loads(explained))[0]["Plan"]
    found = [j for j in joins(plan) if any(a.startswith(side) for a in aliases(j))]
    assert len(found) == 1, json.dumps(plan, indent=1)
    return found[0]


def test_the_shifted_side_joins_on_every_dimension(wh: Engine) -> None:
    """Not a nested loop, and the join's key covers every dimension: it never pairs rows
    that its filter then throws away (a bucket-only key pairs every row of a bucket with
    every row of the same bucket a period earlier: quadratic). With nested loops off,
    PostgreSQL must key the join on what it can: that key alone matches the rows."""
    rolling = CubeQuery(
        measures=(m("orders.count", "rolled", rolling=Rolling(2, Granularity.MONTH)),),
        dimensions=MONTH_DIMS,
        filters=(
            Condition(mem("orders.orderedAt"), Op.IN_DATE_RANGE, ("2025-03-01", "2025-05-31")),
        ),
        limit=1,
        offset=100,
    )
    for q, side in ((rolling, ("win_", "ext_")), (prior_year(limit=1, offset=200), ("prev_",))):
        for settings in ({}, {"enable_nestloop": "off"}):
            join = shifted_join(wh, q, side, **settings)
            assert join["Node Type"] != "Nested Loop", (side, settings, join)
            assert join["Actual Rows"] > 50, (side, settings, join)
            assert join.get("Rows Removed by Join Filter", 0) == 0, (side, settings, join)
