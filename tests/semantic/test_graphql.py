"""``cube`` and ``cubeMeta`` over HTTP through the real app (as the API's cdms_api role):
the issue's example, aliases with time intelligence, segments, extensions, metadata and
introspection of the generated types."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.api.conftest import make_client
from tests.api.helpers import body_of
from tests.semantic.conftest import num, sql

Gql = Any


@pytest.fixture(scope="module")
def cube_gql(wh: Engine) -> Iterator[Gql]:
    with make_client(wh) as client:

        def run(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
            return body_of(
                client.post("/graphql", json={"query": query, "variables": variables or {}})
            )

        yield run


EXAMPLE = """
{ cube(where: {sales: {status: {notIn: ["cancelled"]},
                       orderedAt: {inDateRange: ["2025-01-01", "2025-12-31"]}},
               customers: {country: {in: ["Germany", "France"]}}},
       orderBy: {sales: {revenue: DESC}}, limit: 100, offset: 0, timezone: "UTC") {
    sales { revenue orderCount orderedAt { month } }
    customers { segment }
} }"""


def test_issue_example_over_http_with_extensions(cube_gql: Gql, wh: Engine) -> None:
    body = cube_gql(EXAMPLE)
    assert "errors" not in body, body
    rows = body["data"]["cube"]
    want = sql(
        wh,
        """
        SELECT to_char(date_trunc('month', s.ordered_at AT TIME ZONE 'UTC'),
                       'YYYY-MM-DD"T"HH24:MI:SS'), c.segment, sum(s.net), count(DISTINCT s.order_id)
        FROM dw.fact_sales s JOIN dw.dim_customer c USING (customer_key)
        WHERE s.status <> 'cancelled' AND c.country IN ('Germany', 'France')
          AND s.ordered_at >= '2025-01-01Z' AND s.ordered_at < '2026-01-01Z'
        GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2""",
    )
    got = [
        (
            r["sales"]["orderedAt"]["month"],
            r["customers"]["segment"],
            num(r["sales"]["revenue"]),
            r["sales"]["orderCount"],
        )
        for r in rows
    ]
    assert got == [(a, b, num(c), n) for a, b, c, n in want]
    (ext,) = body["extensions"]["cube"]
    assert ext["sql"].startswith("SELECT") and "dw.fact_sales" in ext["sql"]
    assert "Germany" not in ext["sql"] and "Germany" in ext["params"].values().__repr__()
    assert ext["rollups"] == [] and ext["freshness"] and ext["ms"] > 0
    assert ext["warehouseVersion"] >= 1
    again = cube_gql(EXAMPLE)
    assert again["data"] == body["data"] and again["extensions"]["cube"][0]["cached"] is True


def test_aliases_time_intelligence_subtotals_and_segments(cube_gql: Gql) -> None:
    body = cube_gql("""{
      cube(where: {sales: {orderedAt: {inDateRange: ["2025-01-01", "2025-06-30"]}}},
           segments: [sales_completed], subtotals: true) {
        sales { revenue py: revenue(compare: PRIOR_YEAR) ytd: revenue(toDate: YEAR)
                share: revenue(shareOfTotal: true) rank: revenue(rank: true)
                m: orderedAt { month } }
        totals
      } }""")
    assert "errors" not in body, body
    rows = body["data"]["cube"]
    assert len(rows) == 7 and rows[-1]["totals"] == ["sales.orderedAt.month"]
    detail = rows[:-1]
    assert [r["sales"]["m"]["month"][:7] for r in detail] == [f"2025-0{i}" for i in range(1, 7)]
    running = 0.0
    for r in detail:
        running += r["sales"]["revenue"]
        assert num(r["sales"]["ytd"]) == num(running)
        assert r["sales"]["py"] is not None and r["sales"]["rank"] == 1
    assert num(rows[-1]["sales"]["revenue"]) == num(running)
    assert body["extensions"]["cube"][0]["rollups"] == []  # segments are answered by the facts


def test_rollup_is_reported(cube_gql: Gql) -> None:
    body = cube_gql("{ cube { sales { revenue orderedAt { year } } products { category } } }")
    assert "errors" not in body, body
    assert body["extensions"]["cube"][0]["rollups"] == ["sales.monthlyByCategory"]


def test_cube_meta_and_introspection(cube_gql: Gql) -> None:
    body = cube_gql("""{ cubeMeta { name title measures { name type format additive }
        dimensions { name type granularities values } hierarchies { name levels }
        segments { name enumValue } rollups { name granularity } joins { cube relationship } } }""")
    meta = {c["name"]: c for c in body["data"]["cubeMeta"]}
    assert set(meta) == {
        "sales",
        "orders",
        "customers",
        "products",
        "returns",
        "feedback",
        "support",
        "stock",
        "rfm",
        "segmentMigration",
    }
    revenue = next(x for x in meta["sales"]["measures"] if x["name"] == "revenue")
    assert revenue == {"name": "revenue", "type": "sum", "format": "currency", "additive": True}
    units = next(x for x in meta["stock"]["measures"] if x["name"] == "unitsOnHand")
    assert units == {"name": "unitsOnHand", "type": "last", "format": "integer", "additive": False}
    ordered = next(x for x in meta["sales"]["dimensions"] if x["name"] == "orderedAt")
    assert ordered["type"] == "time" and "quarter" in ordered["granularities"]
    assert ordered["values"] == []
    segment = next(x for x in meta["customers"]["dimensions"] if x["name"] == "segment")
    assert segment["values"] == ["consumer", "corporate", "home_office"]
    assert meta["customers"]["hierarchies"] == [
        {"name": "geography", "levels": ["country", "region", "city"]}
    ]
    assert {"name": "completed", "enumValue": "sales_completed"} in meta["sales"]["segments"]
    assert {"cube": "products", "relationship": "many_to_one"} in meta["sales"]["joins"]
    types = cube_gql('{ __type(name: "CubeSales") { fields { name args { name } } } }')
    fields = {f["name"]: [a["name"] for a in f["args"]] for f in types["data"]["__type"]["fields"]}
    assert fields["revenue"] == ["compare", "as", "toDate", "rolling", "shareOfTotal", "rank"]
    # an integer measure has no argument that would make a fraction of it
    assert fields["lineCount"] == ["compare", "as", "toDate", "rolling", "rank"]
    assert {"status", "channel", "paymentMethod", "orderedAt", "averageOrderValue"} <= set(fields)
