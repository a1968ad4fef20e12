"""What the variables may hold, told before anything costly runs (the probe of 2026-12-07):

- a text a filter compares may be no longer than the longest value its column holds
  (migration 0019): a 900 KB ``contains`` cost rows x length of PostgreSQL's CPU (3.2 s over
  483 products, 10 s over 2,000 customers' emails) and never matched; one 900 KB variable
  named 450 times was bound 450 times (4.4 GB of server memory for three requests);
- a cube filter's value, at most 254 characters (its dimensions hold short labels);
- all the variables together, at most 10,000 objects' keys and list items: 45 lists of 4,999
  empty filters were walked whole (25 s of CPU for a cube, 2 s for a connection) before
  their size was refused."""

from __future__ import annotations

from typing import Any

import pytest

from api.inputs import MAX_VARIABLE_NODES
from semantic.checks import MAX_VALUE_CHARS
from tests.security.conftest import Parties, bearer, token

NAME = "query ($s: String) { products(first: 1, filter: {name: {contains: $s}}) { totalCount } }"
EMAIL = (
    "query ($s: String) { customers(first: 1, filter: {email: {startsWith: $s}}) { totalCount } }"
)
IN = "query ($s: [String!]) { products(first: 1, filter: {brand: {in: $s}}) { totalCount } }"
ORDERS = "query ($f: OrderFilter) { orders(first: 1, filter: $f) { totalCount } }"
CUBE = "query ($w: CubeWhere) { cube(limit: 1, where: $w) { sales { revenue } } }"


def ask(client: Any, tok: str, query: str, **variables: Any) -> tuple[int, dict[str, Any]]:
    resp = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=bearer(tok)
    )
    return resp.status_code, resp.json()


def refused(answer: tuple[int, dict[str, Any]], code: str) -> dict[str, Any]:
    status, body = answer
    assert status == 400 and body["data"] is None, (status, str(body)[:300])
    error: dict[str, Any] = body["errors"][0]
    assert error["extensions"]["code"] == code, error
    return error


def test_a_filter_text_longer_than_its_column_is_refused(prod: Any, parties: Parties) -> None:
    customer, analyst = token("customer", parties.a), token("analyst")
    error = refused(ask(prod, customer, NAME, s="x" * 201), "BAD_USER_INPUT")
    assert error["extensions"]["field"] == "name" and error["extensions"]["max"] == 200, error
    assert "200 characters" in error["message"], error
    status, body = ask(prod, customer, NAME, s="x" * 200)  # at the bound: asked, no match
    assert status == 200 and body["data"]["products"]["totalCount"] == 0, body
    error = refused(ask(prod, analyst, EMAIL, s="a" * 255), "BAD_USER_INPUT")
    assert (error["extensions"]["field"], error["extensions"]["max"]) == ("email", 254), error
    assert ask(prod, analyst, EMAIL, s="a" * 254)[0] == 200
    error = refused(ask(prod, customer, IN, s=["ok", "b" * 201]), "BAD_USER_INPUT")
    assert error["extensions"]["field"] == "brand", error


def test_one_long_variable_named_many_times_is_refused(prod: Any, parties: Parties) -> None:
    refs = ", ".join("{name: {contains: $s}}" for _ in range(400))
    query = (
        f"query ($s: String) {{ products(first: 1, filter: {{or: [{refs}]}}) {{ totalCount }} }}"
    )
    refused(ask(prod, token("customer", parties.a), query, s="x" * 500_000), "BAD_USER_INPUT")


@pytest.mark.parametrize(
    ("query", "variable", "role"),
    [(ORDERS, "f", "customer"), (CUBE, "w", "analyst")],
)
def test_variables_of_too_many_objects_are_refused_before_they_are_walked(
    prod: Any, parties: Parties, query: str, variable: str, role: str
) -> None:
    key = "or" if variable == "f" else "OR"
    value = {key: [{key: [{}] * 4_999}] * 45}  # 224,955 objects in 45 lists
    tok = token(role, parties.a if role == "customer" else None)
    error = refused(ask(prod, tok, query, **{variable: value}), "QUERY_TOO_COMPLEX")
    assert error["extensions"]["limit"] == MAX_VARIABLE_NODES, error
    assert "objects, keys and list items" in error["message"], error


def test_a_cube_filter_value_longer_than_a_label_is_refused(prod: Any) -> None:
    analyst = token("analyst")
    where = {"customers": {"country": {"contains": ["ok", "x" * (MAX_VALUE_CHARS + 1)]}}}
    error = refused(ask(prod, analyst, CUBE, w=where), "BAD_USER_INPUT")
    assert error["extensions"]["max"] == MAX_VALUE_CHARS, error
    where = {"customers": {"country": {"equals": "x" * MAX_VALUE_CHARS}}}
    assert ask(prod, analyst, CUBE, w=where)[0] == 200
