"""``cube { ... drill { orders(...) } }``: each row's drill is the API's ``orders``
connection restricted to the row's cell. For small cells the drilled orders are exactly
the cell's (``totalCount`` = ``orderCount``) and their lines in the cell add up to its
revenue; the connection keeps its filter, orderBy and page caps; the cost rule counts the
cube's limit times the drill's page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.api.conftest import make_client
from tests.semantic.conftest import num, sql

Gql = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture(scope="module")
def gql(wh: Engine) -> Iterator[Gql]:
    with make_client(wh) as client:

        def run(query: str, variables: dict[str, Any] | None = None) -> tuple[int, Any]:
            r = client.post("/graphql", json={"query": query, "variables": variables or {}})
            return r.status_code, r.json()

        yield run


def ok(gql: Gql, query: str, variables: dict[str, Any] | None = None) -> Any:
    status, body = gql(query, variables)
    assert status == 200 and "errors" not in body, body
    return body["data"]


def code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


def test_small_cells_drill_to_exactly_their_orders_and_revenue(gql: Gql) -> None:
    where = {"sales": {"status": {"notIn": ["cancelled"]}}}
    rows = ok(
        gql,
        """query($where: CubeWhere) { cube(where: $where, timezone: "UTC",
             orderBy: [{sales: {orderCount: ASC}}], limit: 8) {
           sales { revenue orderCount orderedAt { month } } products { category }
           drill { orders(first: 100) { totalCount edges { node { id status totalAmount
             items { lineTotal product { category } } } } } } } }""",
        {"where": where},
    )["cube"]
    assert len(rows) == 8
    for row in rows:
        s, category = row["sales"], row["products"]["category"]
        drilled = row["drill"]["orders"]
        nodes = [e["node"] for e in drilled["edges"]]
        assert drilled["totalCount"] == s["orderCount"] == len(nodes) > 0
        assert all(n["status"] != "CANCELLED" for n in nodes)
        lines = [
            float(i["lineTotal"])
            for n in nodes
            for i in n["items"]
            if i["product"]["category"] == category
        ]
        assert num(sum(lines)) == num(s["revenue"])


def test_the_issue_query_every_row_holds_its_cells_orders(gql: Gql, wh: Engine) -> None:
    rows = ok(
        gql,
        """{ cube(timezone: "UTC", limit: 20) { sales { revenue orderCount }
             products { category }
             drill { orders(first: 20, orderBy: [{totalAmount: DESC}]) { totalCount
               edges { node { id totalAmount customer { email } } } } } } }""",
    )["cube"]
    want = {
        r[0]: r[1]
        for r in sql(wh, "SELECT p.category, count(DISTINCT s.order_id) FROM dw.fact_sales s"
                         " JOIN dw.dim_product p USING (product_key) GROUP BY 1")
    }  # fmt: skip
    assert len(rows) == len(want) > 1
    for row in rows:
        drilled = row["drill"]["orders"]
        assert drilled["totalCount"] == row["sales"]["orderCount"]
        assert drilled["totalCount"] == want[row["products"]["category"]]
        totals = [float(e["node"]["totalAmount"]) for e in drilled["edges"]]
        assert len(totals) == min(20, drilled["totalCount"])
        assert totals == sorted(totals, reverse=True)
        assert all("@" in e["node"]["customer"]["email"] for e in drilled["edges"])


def test_a_drill_keeps_the_orders_filter_and_the_segment_of_the_month(gql: Gql) -> None:
    rows = ok(
        gql,
        """{ cube(timezone: "UTC", limit: 50,
               where: {sales: {orderedAt: {inDateRange: ["2025-01-01", "2025-03-31"]}}}) {
             sales { orderCount orderedAt { month } } customers { rfmSegment }
             drill { all: orders(first: 0) { totalCount }
                     web: orders(first: 5, filter: {status: {eq: DELIVERED}}) { totalCount
                       edges { node { status orderedAt } } } } } }""",
    )["cube"]
    assert rows
    for row in rows:
        d = row["drill"]
        assert d["all"]["totalCount"] == row["sales"]["orderCount"]
        assert d["web"]["totalCount"] <= d["all"]["totalCount"]
        assert all(e["node"]["status"] == "DELIVERED" for e in d["web"]["edges"])
        month = row["sales"]["orderedAt"]["month"][:7]
        assert all(e["node"]["orderedAt"][:7] == month for e in d["web"]["edges"])
    assert sum(r["drill"]["web"]["totalCount"] for r in rows) > 0


def test_drills_obey_the_page_cap_and_the_cost_limit(gql: Gql, wh: Engine) -> None:
    _, body = gql("""{ cube(limit: 10) { sales { orderCount } products { category }
        drill { orders(first: 501) { totalCount } } } }""")
    assert code(body) == "BAD_USER_INPUT" and "at most 500" in body["errors"][0]["message"]
    with make_client(wh, max_cost=50_000) as client:  # the API's default cost limit

        def limited(query: str, variables: Any = None) -> tuple[int, Any]:
            r = client.post("/graphql", json={"query": query, "variables": variables or {}})
            return r.status_code, r.json()

        _costs(limited)


def _costs(gql: Gql) -> None:
    # rows limit x page: 3,000 x 20 = 60,000 objects, plus the cube field's own 1,000 and
    # its 3,000 rows x 2 cells / 20 = 300 (docs/api.md, Cube fields): > 50,000
    status, body = gql("""{ cube(limit: 3000) { sales { orderCount } products { category }
        drill { orders(first: 20) { totalCount } } } }""")
    assert status == 400 and code(body) == "QUERY_TOO_COMPLEX", body
    assert body["errors"][0]["extensions"]["cost"] == 61_300
    # the default limit (10,000 rows) with the default page (50) is refused too
    status, body = gql("""{ cube { sales { orderCount } drill { orders { totalCount } } } }""")
    assert status == 400 and code(body) == "QUERY_TOO_COMPLEX", body
    # a drill asking for no order still costs one per row (each is part of the statement)
    status, body = gql("""{ cube(limit: 30000) { sales { orderCount } products { category }
        drill { a: orders(first: 0) { totalCount } b: orders(first: 0) { totalCount } } } }""")
    assert status == 400 and code(body) == "QUERY_TOO_COMPLEX", body
    assert body["errors"][0]["extensions"]["cost"] == 60_000 + 1_000 + 30_000 * 2 // 20
    # without a drill the rows cost only their cells: 1,000 + 50,000 x 2 / 20
    ok(gql, "{ cube(limit: 50000) { sales { orderCount } products { category } } }")
    ok(
        gql,
        """{ cube(limit: 2000) { sales { orderCount } products { category }
        drill { orders(first: 20) { totalCount } } } }""",
    )


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("{ cube(limit: 5, subtotals: true) { sales { orderCount } products { category }"
         " drill { orders(first: 1) { totalCount } } } }", "subtotals"),
        ("{ cube(limit: 5) { returns { refundAmount }"
         " drill { orders(first: 1) { totalCount } } } }", "one fact cube"),
    ],
)  # fmt: skip
def test_drills_that_name_no_cell_are_bad_user_input(gql: Gql, query: str, words: str) -> None:
    _, body = gql(query)
    assert code(body) == "BAD_USER_INPUT" and words in body["errors"][0]["message"], body


def test_an_empty_member_drills_to_the_orders_without_a_value(gql: Gql) -> None:
    rows = ok(
        gql,
        """{ cube(where: {orders: {status: {equals: "cancelled"}}}, limit: 100) {
             orders { count hoursToDeliver } drill { orders(first: 5) { totalCount
               edges { node { status deliveredAt } } } } } }""",
    )["cube"]
    (row,) = rows  # a cancelled order was never delivered: one row, the empty member
    assert row["orders"]["hoursToDeliver"] is None
    drilled = row["drill"]["orders"]
    assert drilled["totalCount"] == row["orders"]["count"] > 0
    assert all(e["node"]["status"] == "CANCELLED" for e in drilled["edges"])
    assert all(e["node"]["deliveredAt"] is None for e in drilled["edges"])


def test_a_drill_over_more_rows_than_the_cap_is_refused(gql: Gql, wh: Engine) -> None:
    (lines,) = sql(wh, "SELECT count(*) FROM dw.fact_sales")[0]
    assert lines > 5_000
    status, body = gql("""{ cube(limit: 6000) { sales { lineCount orderId lineNo }
        drill { orders(first: 0) { totalCount } } } }""")
    assert status == 400 and code(body) == "QUERY_TOO_COMPLEX"  # as the cost rule's
    assert "at most 5000" in body["errors"][0]["message"]
    assert body["data"] is None or body["data"]["cube"] is None


def test_a_drill_over_more_than_fifty_rows_answers_every_row(gql: Gql) -> None:
    # each row's connection is one key of the statement's JSON object: past 50 of them
    # PostgreSQL's 100-argument limit of json_build_object answered INTERNAL
    rows = ok(
        gql,
        """{ cube(timezone: "UTC", limit: 120, orderBy: [{sales: {orderId: ASC}}]) {
             sales { orderCount orderId } drill { orders(first: 1) { totalCount
               edges { node { id } } } } } }""",
    )["cube"]
    assert len(rows) == 120
    for row in rows:
        drilled = row["drill"]["orders"]
        assert drilled["totalCount"] == row["sales"]["orderCount"] == 1
        assert int(drilled["edges"][0]["node"]["id"]) == int(row["sales"]["orderId"])


def test_a_drill_binding_more_values_than_postgresql_takes_is_too_complex(gql: Gql) -> None:
    # every cell binds the query's filter values again: 2,000 cells x 40 names passed the
    # driver's 65,535 and answered 503 "the database is unavailable; try again shortly"
    where = {"products": {"name": {"notIn": [f"n{i}" for i in range(40)]}}}
    status, body = gql(
        """query($where: CubeWhere) { cube(where: $where, limit: 2000) {
             sales { lineCount orderId lineNo } drill { orders(first: 1) { totalCount } } } }""",
        {"where": where},
    )
    assert status in (200, 400) and code(body) == "QUERY_TOO_COMPLEX", body
    assert "lower the cube's limit" in body["errors"][0]["message"]


def test_a_drill_without_orders_is_an_object_not_null(gql: Gql) -> None:
    # drill { __typename } (or its orders skipped) answered drill: null
    rows = ok(
        gql,
        """{ cube(timezone: "UTC", limit: 2) { sales { orderCount channel }
             drill { __typename orders(first: 1) @skip(if: true) { totalCount } } } }""",
    )["cube"]
    assert len(rows) == 2
    assert all(row["drill"] == {"__typename": "CubeCellDrill"} for row in rows), rows


def test_a_drill_binding_too_many_values_is_refused_before_its_cells_are_built(
    gql: Gql, wh: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each cell binds the query's filter values again: an analyst's 11 KB query (2,500
    rows x 2,500 values) built every cell on the event loop for 22 s, the server deaf
    meanwhile, then refused with a 200. Now one cell tells the count: 400 at once."""
    from schema.cube import celldrill

    built: list[str] = []
    real = celldrill._cell_sql

    def counted(*args: Any) -> Any:
        built.append(args[2])
        return real(*args)

    monkeypatch.setattr(celldrill, "_cell_sql", counted)
    ids = ", ".join(str(i) for i in range(1, 2501))
    query = (
        f"{{ cube(limit: 2500, where: {{orders: {{orderId: {{in: [{ids}]}}}}}}) {{"
        " orders { count orderId } drill { orders(first: 1) { totalCount } } } }"
    )
    (orders,) = sql(wh, "SELECT count(*) FROM dw.fact_orders")[0]
    assert orders > 100  # 100+ cells of 2,500 values: past 65,535
    status, body = gql(query)
    assert status == 400 and code(body) == "QUERY_TOO_COMPLEX", body
    assert "binds" in body["errors"][0]["message"]
    assert len(built) == 1  # the first cell only
