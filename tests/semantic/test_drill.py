"""``cubeDrillThrough``: the rows behind a cube cell add up to the cell (count, revenue,
orders), page by page, under the query's filters; bad cells are BAD_USER_INPUT."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.api.conftest import make_client
from tests.api.helpers import body_of
from tests.semantic.conftest import num

Gql = Callable[..., dict[str, Any]]

DRILL = """
query($cell: [CubeCellMember!], $where: CubeWhere, $first: Int!, $offset: Int!) {
  cubeDrillThrough(cube: "sales", cell: $cell, where: $where, timezone: "UTC",
                   first: $first, offset: $offset) {
    cube totalCount rows { sales { orderId lineNo revenue quantity } products { category } }
  } }"""


@pytest.fixture(scope="module")
def gql(wh: Engine) -> Iterator[Gql]:
    with make_client(wh) as client:

        def run(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
            return body_of(
                client.post("/graphql", json={"query": query, "variables": variables or {}})
            )

        yield run


def drill(gql: Gql, cell: list[dict[str, Any]], where: Any = None, **page: int) -> Any:
    body = gql(DRILL, {"cell": cell, "where": where, "first": 500, "offset": 0, **page})
    assert "errors" not in body, body
    return body["data"]["cubeDrillThrough"]


def test_the_rows_of_small_cells_add_up_to_the_cell(gql: Gql) -> None:
    where = {"sales": {"status": {"notIn": ["cancelled"]}}}
    body = gql(
        """query($where: CubeWhere) { cube(where: $where, timezone: "UTC",
             orderBy: [{sales: {lineCount: ASC}}], limit: 6) {
           sales { revenue lineCount orderCount quantity orderedAt { month } }
           products { category } } }""",
        {"where": where},
    )
    cells = body["data"]["cube"]
    assert len(cells) == 6
    for c in cells:
        s = c["sales"]
        cell = [
            {"member": "sales.orderedAt.month", "value": s["orderedAt"]["month"]},
            {"member": "products.category", "value": c["products"]["category"]},
        ]
        got = drill(gql, cell, where)
        rows = got["rows"]
        assert got["cube"] == "sales" and got["totalCount"] == s["lineCount"] == len(rows)
        assert num(sum(r["sales"]["revenue"] for r in rows)) == num(s["revenue"])
        assert sum(r["sales"]["quantity"] for r in rows) == s["quantity"]
        assert len({r["sales"]["orderId"] for r in rows}) == s["orderCount"]
        assert {r["products"]["category"] for r in rows} == {c["products"]["category"]}


def test_pages_are_disjoint_and_cover_the_cell(gql: Gql) -> None:
    cell = [
        {"member": "customers.segment", "value": "corporate"},
        {"member": "sales.orderedAt.quarter", "value": "2025-01-01T00:00:00"},
    ]
    whole = drill(gql, cell)
    assert 10 < whole["totalCount"] <= 500
    pages = [drill(gql, cell, first=7, offset=o)["rows"] for o in range(0, 21, 7)]
    keys = [(r["sales"]["orderId"], r["sales"]["lineNo"]) for p in pages for r in p]
    assert len(keys) == len(set(keys)) == 21
    assert keys == [(r["sales"]["orderId"], r["sales"]["lineNo"]) for r in whole["rows"]][:21]


def test_total_only_and_the_empty_member(gql: Gql) -> None:
    body = gql(
        '{ cubeDrillThrough(cube: "orders", cell: [{member: "orders.status", '
        'value: "CANCELLED"}]) { totalCount } }'
    )
    assert "errors" not in body, body
    cube = gql('{ cube(where: {orders: {status: {equals: "cancelled"}}}) { orders { count } } }')
    assert (
        body["data"]["cubeDrillThrough"]["totalCount"]
        == cube["data"]["cube"][0]["orders"]["count"]
        > 0
    )
    empty = gql(
        '{ cubeDrillThrough(cube: "orders", cell: [{member: "orders.hoursToDeliver", '
        "value: null}]) { totalCount rows { orders { orderId status } } } }"
    )
    assert "errors" not in empty, empty
    rows = empty["data"]["cubeDrillThrough"]["rows"]
    assert rows and all(r["orders"]["status"] != "delivered" for r in rows)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ('cube: "customers"', "cube"),
        ('cube: "salez"', "cube"),
        ('cube: "sales", cell: [{member: "products.nope", value: "x"}]', "cell[0]"),
        ('cube: "sales", cell: [{member: "sales.revenue", value: "1"}]', "cell[0]"),
        (
            'cube: "sales", cell: [{member: "sales.orderedAt", value: "2025-01-01T00:00:00"}]',
            "cell[0]",
        ),
        (
            'cube: "sales", cell: [{member: "sales.orderedAt.month", value: "2025-01-02"}]',
            "cell[0]",
        ),
        ('cube: "sales", cell: [{member: "sales.orderedAt.month", value: "March"}]', "cell[0]"),
        (
            'cube: "sales", cell: [{member: "sales.orderedAt.year", value: "9999-01-01T00:00:00"}]',
            "cell[0]",
        ),
        ('cube: "sales", cell: [{member: "sales.orderId", value: "abc"}]', "cell[0]"),
        ('cube: "sales", cell: [{member: "sales.status", value: "lost"}]', "sales.status"),
        ('cube: "sales", cell: [{member: "sales.status.month", value: "paid"}]', "cell[0]"),
        ('cube: "sales", where: {sales: {revenue: {gt: 10}}}', "where"),
        ('cube: "sales", first: 100000', "first"),
        ('cube: "sales", offset: -1', "offset"),
    ],
)
def test_bad_cells_are_bad_user_input(gql: Gql, args: str, field: str) -> None:
    body = gql(f"{{ cubeDrillThrough({args}) {{ totalCount rows {{ sales {{ revenue }} }} }} }}")
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", body
    assert error["extensions"].get("field") == field, error
