"""A cube filter's values are counted and capped before any SQL is built: 150,000
``contains`` patterns took ~25 s of CPU and ~450 MB per request before the statement's
65,535-value check refused them (docs/security.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from db.errors import CdmsError
from schema.sql import MAX_PARAMS
from semantic.checks import MAX_FILTER_VALUES, MAX_PATTERNS
from semantic.query import Condition, CubeQuery, Junction, Op
from semantic.service import prepare
from semantic.validate import default_model
from tests.api.conftest import TestClient, make_client
from tests.semantic.conftest import m, mem

CONTAINS = (
    "query($i: [String!]) { cube(where: {customers: {country: {contains: $i}}})"
    " { customers { count } } }"
)
IN = "query($i: [String!]) { cube(where: {customers: {city: {in: $i}}}) { customers { count } } }"
TWO_INS = (
    "query($i: [String!], $j: [String!]) { cube(where: {customers: {city: {in: $i}},"
    " AND: [{customers: {country: {notIn: $j}}}]}) { customers { count } } }"
)


@pytest.fixture(scope="module")
def client(wh: Engine) -> Iterator[TestClient]:
    with make_client(wh) as c:
        yield c


def ask(client: TestClient, query: str, **variables: Any) -> tuple[int, dict[str, Any]]:
    resp = client.post("/graphql", json={"query": query, "variables": variables})
    return resp.status_code, resp.json()


def refused(client: TestClient, query: str, limit: int, **variables: Any) -> str:
    status, body = ask(client, query, **variables)
    assert status == 400, body
    assert body["data"] is None, body
    err = body["errors"][0]
    assert err["extensions"]["code"] == "QUERY_TOO_COMPLEX", err
    assert err["extensions"]["limit"] == limit, err
    message: str = err["message"]
    return message


def test_contains_patterns_past_the_cap_are_refused(client: TestClient) -> None:
    # a list longer than any statement binds is refused before it is even coerced
    message = refused(client, CONTAINS, MAX_PARAMS, i=["a"] * 150_000)
    assert "$i" in message and "150,000" in message, message
    message = refused(client, CONTAINS, MAX_PATTERNS, i=["a"] * (MAX_PATTERNS + 1))
    assert "customers.country contains: 101" in message, message


def test_contains_patterns_at_the_cap_answer(client: TestClient) -> None:
    status, body = ask(client, CONTAINS, i=[f"x{n}" for n in range(MAX_PATTERNS)])
    assert status == 200 and "errors" not in body, body
    assert body["data"]["cube"] == [{"customers": {"count": 0}}]


def test_in_lists_past_the_cap_are_refused(client: TestClient) -> None:
    refused(client, IN, MAX_FILTER_VALUES, i=["a"] * 150_000)
    refused(client, IN, MAX_FILTER_VALUES, i=[str(n) for n in range(MAX_FILTER_VALUES + 1)])


def test_in_list_at_the_cap_answers(client: TestClient) -> None:
    status, body = ask(client, IN, i=[str(n) for n in range(MAX_FILTER_VALUES)])
    assert status == 200 and "errors" not in body, body


def test_values_count_across_the_query(client: TestClient) -> None:
    half = MAX_FILTER_VALUES // 2 + 1
    message = refused(client, TWO_INS, MAX_FILTER_VALUES, i=["a"] * half, j=["b"] * half)
    assert "the query's filters" in message


def test_the_library_checks_what_both_paths_share() -> None:
    """``prepare`` is what the GraphQL resolver and the fast path both call."""
    model = default_model()
    q = CubeQuery(
        measures=(m("customers.count"),),
        filters=(
            Junction(
                "or",
                tuple(
                    Condition(mem("customers.country"), Op.CONTAINS, ("a",) * 60) for _ in range(3)
                ),
            ),
        ),
    )
    with pytest.raises(CdmsError) as info:
        prepare(model, q)
    assert info.value.code == "QUERY_TOO_COMPLEX"
    assert info.value.fields["limit"] == MAX_PATTERNS
