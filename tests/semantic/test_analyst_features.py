"""The analyst features through GraphQL, each against SQL over the facts: rolling windows,
compare as a difference or a percent change, percentiles, integer measures as Int, the
drill-down helper, honest limits (truncated, conformed-time re-targeting), a cache that
ignores aliases, and the fast path answering exactly as the resolver does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.api.conftest import make_client
from tests.api.helpers import body_of
from tests.semantic.conftest import num, sql

Gql = Any


@pytest.fixture(scope="module")
def client(wh: Engine) -> Iterator[Any]:
    with make_client(wh) as c:
        yield c


@pytest.fixture(scope="module")
def gql(client: Any) -> Gql:
    def run(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return body_of(client.post("/graphql", json={"query": query, "variables": variables or {}}))

    return run


def ok(body: dict[str, Any]) -> Any:
    assert "errors" not in body, body
    return body["data"]


def monthly(wh: Engine) -> dict[str, float]:
    """Revenue per month (UTC) over the whole warehouse."""
    rows = sql(
        wh,
        """SELECT to_char(date_trunc('month', ordered_at AT TIME ZONE 'UTC'), 'YYYY-MM'),
                  sum(net) FROM dw.fact_sales GROUP BY 1""",
    )
    return {k: float(v) for k, v in rows}


def months_before(month: str, n: int) -> list[str]:
    y, m = int(month[:4]), int(month[5:7])
    out = []
    for k in range(n):
        total = y * 12 + m - 1 - k
        out.append(f"{total // 12:04d}-{total % 12 + 1:02d}")
    return out


def test_rolling_windows_read_outside_the_filtered_range(gql: Gql, wh: Engine) -> None:
    data = ok(
        gql("""{ cube(where: {sales: {orderedAt: {inDateRange: ["2025-03-01", "2025-06-30"]}}}) {
            sales { revenue last3: revenue(rolling: {last: 3, unit: MONTH})
                    next2: revenue(rolling: {next: 2, unit: MONTH})
                    ytdCount: lineCount(toDate: YEAR) orderedAt { month } } } }""")
    )
    by_month = monthly(wh)
    rows = {r["sales"]["orderedAt"]["month"][:7]: r["sales"] for r in data["cube"]}
    assert list(rows) == ["2025-03", "2025-04", "2025-05", "2025-06"]
    for month, r in rows.items():
        trailing = sum(by_month.get(x, 0.0) for x in months_before(month, 3))
        assert num(r["last3"]) == num(trailing), month
        y, mo = int(month[:4]), int(month[5:7])
        ahead = [f"{y + (mo + k - 1) // 12:04d}-{(mo + k - 1) % 12 + 1:02d}" for k in range(2)]
        assert num(r["next2"]) == num(sum(by_month.get(x, 0.0) for x in ahead)), month
    assert rows["2025-03"]["last3"] > rows["2025-03"]["revenue"]  # Jan and Feb came in
    lines = sql(
        wh,
        "SELECT count(*) FROM dw.fact_sales WHERE ordered_at >= '2025-01-01Z'"
        " AND ordered_at < '2025-04-01Z'",
    )[0][0]
    assert rows["2025-03"]["ytdCount"] == lines and isinstance(lines, int)


def test_a_seven_day_rolling_sum_by_day(gql: Gql, wh: Engine) -> None:
    data = ok(
        gql("""{ cube(where: {sales: {orderedAt: {inDateRange: ["2025-05-01", "2025-05-10"]}}}) {
            sales { week: lineCount(rolling: {last: 7, unit: DAY}) orderedAt { day } } } }""")
    )
    per_day = dict(
        sql(
            wh,
            """SELECT (ordered_at AT TIME ZONE 'UTC')::date, count(*) FROM dw.fact_sales
            WHERE ordered_at >= '2025-04-20Z' AND ordered_at < '2025-05-11Z' GROUP BY 1""",
        )
    )
    for r in data["cube"]:
        day = date.fromisoformat(r["sales"]["orderedAt"]["day"][:10])
        want = sum(n for d, n in per_day.items() if 0 <= (day - d).days < 7)
        assert r["sales"]["week"] == want, day


def test_compare_as_difference_and_percent_change(gql: Gql, wh: Engine) -> None:
    data = ok(
        gql("""{ cube(where: {sales: {orderedAt: {inDateRange: ["2025-01-01", "2025-06-30"]}}}) {
            sales { revenue py: revenue(compare: PRIOR_YEAR)
                    diff: revenue(compare: PRIOR_YEAR, as: DIFFERENCE)
                    pct: revenue(compare: PRIOR_YEAR, as: PERCENT_CHANGE)
                    lines: lineCount lineDiff: lineCount(compare: PRIOR_PERIOD, as: DIFFERENCE)
                    orderedAt { month } } } }""")
    )
    by_month = monthly(wh)
    counts = dict(
        sql(
            wh,
            """SELECT to_char(date_trunc('month', ordered_at AT TIME ZONE 'UTC'), 'YYYY-MM'),
                      count(*) FROM dw.fact_sales GROUP BY 1""",
        )
    )
    for r in data["cube"]:
        s = r["sales"]
        month = s["orderedAt"]["month"][:7]
        prior = by_month[f"{int(month[:4]) - 1}-{month[5:]}"]
        assert num(s["py"]) == num(prior)
        assert num(s["diff"]) == num(s["revenue"] - prior)
        assert num(s["pct"]) == num((s["revenue"] - prior) / abs(prior))
        assert s["lineDiff"] == counts[month] - counts[months_before(month, 2)[1]]
        assert isinstance(s["lineDiff"], int)


def test_percentiles_are_exact_and_never_from_a_rollup(gql: Gql, wh: Engine) -> None:
    body = gql("""{ cube { orders { medianOrderValue p90HoursToDeliver count channel } } }""")
    data = ok(body)
    want = {
        ch: (num(med), num(p90), n)
        for ch, med, p90, n in sql(
            wh,
            """SELECT channel, percentile_cont(0.5) WITHIN GROUP (ORDER BY net),
                      percentile_cont(0.9) WITHIN GROUP (ORDER BY hours_to_deliver), count(*)
               FROM dw.fact_orders GROUP BY 1""",
        )
    }
    got = {
        r["orders"]["channel"]: (
            num(r["orders"]["medianOrderValue"]),
            num(r["orders"]["p90HoursToDeliver"]),
            r["orders"]["count"],
        )
        for r in data["cube"]
    }
    assert got == want
    assert body["extensions"]["cube"][0]["rollups"] == []  # orders.daily has no percentile
    counted = gql("{ cube { orders { count channel } } }")
    assert counted["extensions"]["cube"][0]["rollups"] == ["orders.daily"]


def test_integer_measures_are_ints(client: Any, gql: Gql) -> None:
    raw = client.post(
        "/graphql", json={"query": "{ cube { sales { lineCount quantity revenue } } }"}
    )
    row = raw.json()["data"]["cube"][0]["sales"]
    assert isinstance(row["lineCount"], int) and isinstance(row["quantity"], int)
    assert f'"lineCount":{row["lineCount"]},' in raw.text.replace(" ", "")  # not 7110.0
    types = ok(gql('{ __type(name: "CubeSales") { fields { name type { name } } } }'))["__type"][
        "fields"
    ]
    kinds = {f["name"]: f["type"]["name"] for f in types}
    assert kinds["lineCount"] == kinds["orderCount"] == kinds["quantity"] == "Int"
    assert kinds["revenue"] == kinds["averageOrderValue"] == "Float"
    meta = ok(gql("{ cubeMeta { name measures { name graphqlType } } }"))["cubeMeta"]
    sales = {
        m["name"]: m["graphqlType"] for c in meta if c["name"] == "sales" for m in c["measures"]
    }
    assert sales["customerCount"] == "Int" and sales["marginRate"] == "Float"


def test_drill_down_gives_the_next_level_under_a_value(gql: Gql, wh: Engine) -> None:
    country = sql(
        wh, "SELECT country FROM dw.dim_customer GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    )[0][0]
    data = ok(
        gql(
            'query($c: String!) { cubeDrillDown(member: "customers.country", value: $c)'
            " { hierarchy member value next children } }",
            {"c": country},
        )
    )["cubeDrillDown"]
    regions = [
        r
        for (r,) in sql(
            wh,
            "SELECT DISTINCT region FROM dw.dim_customer WHERE country = %s ORDER BY 1",
            (country,),
        )
    ]
    assert data == {
        "hierarchy": "customers.geography",
        "member": "customers.country",
        "value": country,
        "next": "customers.region",
        "children": regions,
    }
    last = ok(gql('{ cubeDrillDown(member: "products.brand", value: "x") { next children } }'))[
        "cubeDrillDown"
    ]
    assert last == {"next": None, "children": []}
    body = gql('{ cubeDrillDown(member: "customers.segment", value: "x") { next } }')
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_truncated_says_when_the_limit_cut_the_answer(gql: Gql, wh: Engine) -> None:
    cities = sql(wh, "SELECT count(DISTINCT city) FROM dw.dim_customer")[0][0]
    cut = gql("{ cube(limit: 3) { customers { city } } }")
    assert len(ok(cut)["cube"]) == 3
    assert cut["extensions"]["cube"][0]["truncated"] is True
    whole = gql(f"{{ cube(limit: {cities}) {{ customers {{ city }} }} }}")
    ext = whole["extensions"]["cube"][0]
    assert ext["truncated"] is False and ext["rows"] == cities


def test_conformed_time_retargeting_is_reported(gql: Gql) -> None:
    body = gql("""{ cube(where: {sales: {orderedAt: {inDateRange: ["2025-01-01", "2025-12-31"]}}})
        { sales { revenue } customers { count } } }""")
    ok(body)
    assert body["extensions"]["cube"][0]["retargeted"] == [
        {"fact": "customers", "from": "sales.orderedAt", "to": "customers.signupAt", "as": "filter"}
    ]
    plain = gql("{ cube { sales { revenue orderedAt { year } } } }")
    assert plain["extensions"]["cube"][0]["retargeted"] == []


def test_the_cache_ignores_aliases(gql: Gql) -> None:
    q = """{ cube(where: {sales: {channel: {equals: "web"}}}, limit: 77) {
        sales { %s: revenue %s: orderedAt { quarter } } } }"""
    first = gql(q % ("a", "b"))
    second = gql(q % ("x", "y"))
    assert second["extensions"]["cube"][0]["cached"] is True
    assert [
        {"sales": {"x": r["sales"]["a"], "y": {"quarter": r["sales"]["b"]["quarter"]}}}
        for r in ok(first)["cube"]
    ] == ok(second)["cube"]


FAST = """query($tz: String!, $on: Boolean!) {
  t: __typename
  cube(timezone: $tz, subtotals: true, orderBy: [{sales: {revenue: DESC}}]) {
    __typename totals
    ...S
    s2: sales @include(if: $on) { n: lineCount }
    products @skip(if: $on) { brand }
  }
}
fragment S on CubeRow { sales { __typename revenue channel orderedAt { __typename year } } }
"""


def test_the_fast_path_answers_as_the_resolver_does(gql: Gql) -> None:
    variables = {"tz": "Europe/Berlin", "on": True}
    fast = ok(gql(FAST, variables))
    slow = ok(gql(FAST.replace("t: __typename", "t: __typename cubeMeta { name }"), variables))
    assert fast["cube"] == slow["cube"] and fast["t"] == "Query"
    row = fast["cube"][0]
    assert set(row) == {"__typename", "totals", "sales", "s2"}
    assert row["sales"]["__typename"] == "CubeSales"
    assert row["sales"]["orderedAt"]["__typename"] == "CubeSalesOrderedAt"


def test_the_fast_path_writes_floats_as_the_resolver_does(client: Any) -> None:
    """A Float measure is written as a float8 (shortest exact digits, 1 not 1.0 or
    1.00000000000000000000) whichever path answers (docs/api.md, "Formats")."""
    cube = "cube { orders { status cancellationRate averageItems } }"

    def written(query: str) -> Any:
        resp = client.post("/graphql", json={"query": query})
        assert resp.status_code == 200, resp.text
        return json.loads(resp.text, parse_int=str, parse_float=str)["data"]["cube"]

    fast = written("{ " + cube + " }")
    assert fast == written("{ " + cube + " cubeMeta { name } }")
    rates = {r["orders"]["cancellationRate"] for r in fast if r["orders"]["status"]}
    assert "1" in rates and "0" in rates, rates


def test_a_query_of_cube_fields_alone_skips_per_field_execution(
    gql: Gql, monkeypatch: pytest.MonkeyPatch
) -> None:
    import strawberry

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cube-only operation went through per-field execution")

    monkeypatch.setattr(strawberry.Schema, "execute", refuse)
    body = gql(FAST, {"tz": "UTC", "on": False})
    assert ok(body)["cube"][0]["products"].keys() == {"brand"}
    assert body["extensions"]["cube"][0]["path"] == "cube"


def test_the_cache_swaps_keys_even_crossed_and_recomputes_when_ambiguous(gql: Gql) -> None:
    q = "{ cube(limit: 55) { sales { %s: revenue %s: lineCount channel } } }"
    first = ok(gql(q % ("a", "b")))["cube"]
    crossed = gql(q % ("b", "a"))
    assert crossed["extensions"]["cube"][0]["cached"] is True
    assert [r["sales"] for r in ok(crossed)["cube"]] == [
        {"b": r["sales"]["a"], "a": r["sales"]["b"], "channel": r["sales"]["channel"]}
        for r in first
    ]
    q = "{ cube(limit: 56) { sales { %s: lineCount } returns { %s: count } } }"
    same = ok(gql(q % ("n", "n")))["cube"]
    split = gql(q % ("x", "y"))  # one cached key "n" would have to become two: recomputed
    assert split["extensions"]["cube"][0]["cached"] is False
    assert ok(split)["cube"] == [
        {"sales": {"x": r["sales"]["n"]}, "returns": {"y": r["returns"]["n"]}} for r in same
    ]
