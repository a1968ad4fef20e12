"""SQL snapshots of representative queries (tests/snapshots/*.sql): a planner change shows up
as a readable diff. Regenerate with ``CDMS_UPDATE_SNAPSHOTS=1`` (a missing snapshot fails
the test otherwise)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from semantic.answer import answer_statement
from semantic.model import Granularity
from semantic.planner import plan_query
from semantic.query import (
    Change,
    Compare,
    Condition,
    CubeQuery,
    Junction,
    Op,
    OrderItem,
    Rolling,
    ToDate,
)
from semantic.service import TOTALS_KEY, plain, render
from semantic.shape import flat
from semantic.validate import default_model
from tests.semantic.conftest import d, m, mem

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
ROLLUPS = frozenset(
    {"sales.monthlyByCategory", "sales.daily", "orders.daily", "orders.monthlyByCustomer"}
)

CASES: dict[str, tuple[CubeQuery, frozenset[str]]] = {
    "issue_example": (
        CubeQuery(
            measures=(m("sales.revenue"), m("sales.orderCount")),
            dimensions=(d("sales.orderedAt", "month"), d("customers.segment")),
            filters=(
                Condition(mem("sales.status"), Op.NOT_IN, ("CANCELLED",)),
                Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-01-01", "2025-12-31")),
                Condition(mem("customers.country"), Op.IN, ("Germany", "France")),
            ),
            order=(OrderItem(mem("sales.revenue"), descending=True),),
            limit=100,
        ),
        frozenset(),
    ),
    "time_intelligence": (
        CubeQuery(
            measures=(
                m("sales.revenue"),
                m("sales.revenue", "prev", compare=Compare.PRIOR_PERIOD),
                m("sales.revenue", "ytd", to_date=ToDate.YEAR),
                m("sales.revenue", "share", share_of_total=True),
                m("sales.averageOrderValue", "rank", rank=True),
            ),
            dimensions=(d("sales.orderedAt", "month"), d("products.category")),
            filters=(
                Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-01-01", "2025-06-30")),
            ),
            timezone="Europe/Berlin",
        ),
        frozenset(),
    ),
    "windows_and_changes": (
        CubeQuery(
            measures=(
                m("sales.revenue"),
                m("sales.revenue", "pct", compare=Compare.PRIOR_YEAR, change=Change.PERCENT_CHANGE),
                m("sales.marginRate", "last3", rolling=Rolling(3, Granularity.MONTH)),
                m("sales.lineCount", "next2", rolling=Rolling(2, Granularity.MONTH, leading=True)),
                m("sales.revenue", "ytd", to_date=ToDate.YEAR),
            ),
            dimensions=(d("sales.orderedAt", "month"),),
            filters=(
                Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-03-01", "2025-06-30")),
            ),
        ),
        frozenset(),
    ),
    "semi_additive": (
        CubeQuery(
            measures=(m("stock.unitsOnHand"),),
            dimensions=(d("stock.snapshotDate", "month"), d("products.category")),
            subtotals=True,
        ),
        ROLLUPS,
    ),
    "percentile": (
        CubeQuery(
            measures=(m("orders.medianOrderValue"), m("orders.count")),
            dimensions=(d("orders.channel"),),
        ),
        ROLLUPS,
    ),
    "subtotals_ordered": (
        CubeQuery(
            measures=(m("sales.revenue"),),
            dimensions=(d("products.category"), d("sales.channel")),
            order=(OrderItem(mem("sales.revenue"), descending=True),),
            subtotals=True,
        ),
        frozenset(),
    ),
    "subtotals": (
        CubeQuery(
            measures=(m("sales.revenue"), m("sales.customerCount")),
            dimensions=(d("products.category"), d("sales.channel")),
            subtotals=True,
        ),
        frozenset(),
    ),
    "multi_fact": (
        CubeQuery(
            measures=(m("sales.revenue"), m("returns.refundAmount"), m("returns.returnRate")),
            dimensions=(d("sales.orderedAt", "month"), d("products.category")),
            filters=(
                Condition(mem("sales.orderedAt"), Op.IN_DATE_RANGE, ("2025-01-01", "2025-12-31")),
            ),
        ),
        frozenset(),
    ),
    "rollup": (
        CubeQuery(
            measures=(m("sales.revenue"), m("sales.marginRate")),
            dimensions=(d("sales.orderedAt", "quarter"), d("products.category")),
            filters=(Condition(mem("sales.channel"), Op.IN, ("web", "mobile")),),
        ),
        ROLLUPS,
    ),
    "filters_and_segments": (
        CubeQuery(
            measures=(m("support.resolutionRate"),),
            dimensions=(d("support.priority"),),
            filters=(
                Junction(
                    "or",
                    (
                        Condition(mem("support.category"), Op.CONTAINS, ("bill",)),
                        Condition(mem("customers.segment"), Op.EQUALS, ("corporate",)),
                    ),
                ),
                Condition(mem("support.ticketCount"), Op.GTE, (2,)),
            ),
            segments=(mem("customers.current"),),
        ),
        ROLLUPS,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sql_snapshot(name: str) -> None:
    query, fresh = CASES[name]
    model = default_model()
    shape = flat([f.alias for f in query.measures], [f.alias for f in query.dimensions], TOTALS_KEY)
    text, params = render(answer_statement(model, plan_query(model, query, fresh), shape))
    shown = {k: plain(v) for k, v in params.items()}
    got = f"{text.strip()}\n-- params: {json.dumps(shown, sort_keys=True)}\n"
    path = SNAPSHOTS / f"cube_{name}.sql"
    if os.environ.get("CDMS_UPDATE_SNAPSHOTS") == "1":
        path.write_text(got)
    assert path.exists(), f"no snapshot {path.name}: run with CDMS_UPDATE_SNAPSHOTS=1, review it"
    assert got == path.read_text(), f"SQL of {name} changed; review and regenerate"
