"""Errors of a field's arguments carry the field's ``locations`` and name the argument
(docs/api.md, "How reads execute"): page caps and ``orderBy`` did; a cursor that is not one
(or was issued for another ``orderBy``) and an id that is not one came without
``locations``, the cursor's with ``field: "cursor"``, which is no argument of the schema
(probe p21 F2). Checked on every path that binds them: a root connection (its page, or its
count alone), a nested one, a row by id, a filter's id, variables, a query mixing a
resolver root, a mutation's payload and a batch; nothing of what is refused changes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Shop, TestClient

GARBAGE = "garbage"


def refused(client: TestClient, payload: Any) -> dict[str, Any]:
    """The one error of a request refused with 400 before anything ran."""
    resp = client.post("/graphql", json=payload)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["data"] is None and len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    return error


def where(query: str, field: str) -> list[dict[str, int]]:
    """The location of the first ``field(`` of ``query``, as GraphQL counts (from 1)."""
    at = query.index(field + "(")
    line = query.count("\n", 0, at) + 1
    return [{"line": line, "column": at - (query.rfind("\n", 0, at) + 1) + 1}]


@pytest.mark.parametrize(
    ("query", "arg"),
    [
        ('{ orders(after: "garbage") { totalCount } }', "after"),  # checked, not bound
        ('{ orders(first: 2, after: "garbage") { edges { cursor } } }', "after"),
        ('{ orders(last: 2, before: "garbage") { edges { node { id } } } }', "before"),
        ('{ orders(before: "garbage") { pageInfo { hasNextPage } } }', "before"),
    ],
)
def test_a_bad_cursor_of_a_root_connection_is_at_its_field(
    client: TestClient, shop: Shop, query: str, arg: str
) -> None:
    error = refused(client, {"query": query})
    assert error["message"] == "invalid cursor"
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": arg}
    assert error["locations"] == where(query, "orders")


def test_a_cursor_of_another_order_is_at_its_field(client: TestClient, shop: Shop) -> None:
    first = client.post("/graphql", json={"query": "{ orders(first: 1) { edges { cursor } } }"})
    cursor = first.json()["data"]["orders"]["edges"][0]["cursor"]
    query = """query ($c: String) {
  orders(orderBy: [{orderedAt: ASC}], first: 1, after: $c) { edges { cursor } }
}"""
    error = refused(client, {"query": query, "variables": {"c": cursor}})
    assert "another orderBy" in error["message"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
    assert error["locations"] == [{"line": 2, "column": 3}]


def test_a_bad_cursor_of_a_nested_connection_is_at_the_nested_field(
    client: TestClient, shop: Shop
) -> None:
    query = f"""{{
  customer(id: "{shop.customers[2]}") {{
    id
    orders(first: 1, after: "{GARBAGE}") {{ edges {{ cursor }} }}
  }}
}}"""
    error = refused(client, {"query": query})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
    assert error["locations"] == [{"line": 4, "column": 5}]


def test_an_id_that_is_not_one_is_at_its_field(client: TestClient, shop: Shop) -> None:
    query = '{\n  order(id: "abc") { id }\n}'
    error = refused(client, {"query": query})
    assert error["message"].startswith("id must be a numeric id")
    assert error["extensions"]["field"] == "id"
    assert error["locations"] == [{"line": 2, "column": 3}]
    by_variable = "query ($id: ID!) { customer(id: $id) { id } }"
    error = refused(client, {"query": by_variable, "variables": {"id": "x1"}})
    assert error["locations"] == where(by_variable, "customer")
    in_filter = '{ orders(filter: {id: {in: ["1", "x"]}}) { totalCount } }'
    error = refused(client, {"query": in_filter})
    assert error["message"].startswith("id must be a numeric id")
    assert error["locations"] == where(in_filter, "orders")


def test_a_query_mixing_a_resolver_root_tells_the_place_too(client: TestClient, shop: Shop) -> None:
    query = '{ models { name }\n  orders(after: "garbage") { totalCount } }'
    error = refused(client, {"query": query})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
    assert error["locations"] == [{"line": 2, "column": 3}]


def test_a_mutations_payload_tells_the_place_and_writes_nothing(
    client: TestClient, shop: Shop
) -> None:
    order = shop.orders[shop.customers[2]][0]
    query = f"""mutation {{
  setOrderStatus(orderId: "{order}", status: CANCELLED) {{
    customer {{ orders(after: "{GARBAGE}") {{ totalCount }} }}
  }}
}}"""
    status = f'{{ order(id: "{order}") {{ status }} }}'
    before = client.post("/graphql", json={"query": status}).json()
    error = refused(client, {"query": query})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
    assert error["locations"] == where(query, "orders")
    assert client.post("/graphql", json={"query": status}).json() == before


def test_a_batch_tells_the_place_of_its_refused_operation(client: TestClient, shop: Shop) -> None:
    bad = '{ __typename\n  orders(last: 1, before: "garbage") { edges { cursor } } }'
    error = refused(client, [{"query": "{ orders(first: 1) { totalCount } }"}, {"query": bad}])
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "before"}
    assert error["locations"] == [{"line": 2, "column": 3}]


def test_a_cube_cells_drill_tells_the_place(client: TestClient, shop: Shop) -> None:
    query = '{ cube { orders { status count }\n  drill { orders(after: "x") { totalCount } } } }'
    error = refused(client, {"query": query})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
    assert error["locations"] == [{"line": 2, "column": 11}]
