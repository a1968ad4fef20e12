"""An `in` list counts toward a statement's bound values item by item, and is counted before
any item is converted: a customer's `in` of 300,000 ids (900 KB) held the event loop
1.1-1.5 s converting each one, and 130,000 distinct ids were answered (docs/security.md)."""

from __future__ import annotations

from typing import Any

from schema.sql import MAX_PARAMS
from tests.security.conftest import Parties, bearer, token

IN = "query ($i: [ID!]) { orders(first: 1, filter: {id: {in: $i}}) { totalCount } }"
NOT_IN = "query ($i: [ID!]) { orders(first: 1, filter: {id: {notIn: $i}}) { totalCount } }"
TWO = (
    "query ($i: [ID!], $j: [ID!]) { orders(first: 1, filter: {id: {in: $i},"
    " and: [{id: {notIn: $j}}]}) { totalCount } }"
)


def ask(client: Any, parties: Parties, query: str, **variables: Any) -> Any:
    tok = token("customer", parties.a)
    return client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=bearer(tok)
    )


def refused(resp: Any) -> str:
    assert resp.status_code == 400, (resp.status_code, resp.text[:300])
    body = resp.json()
    assert body["data"] is None, body
    err = body["errors"][0]
    assert err["extensions"]["code"] == "QUERY_TOO_COMPLEX", err
    assert err["extensions"]["limit"] == MAX_PARAMS, err
    message: str = err["message"]
    return message


def test_a_long_in_list_is_refused_before_its_ids_are_converted(
    prod: Any, parties: Parties
) -> None:
    message = refused(ask(prod, parties, IN, i=[1] * 300_000))
    assert "300,000" in message, message
    refused(ask(prod, parties, IN, i=list(range(1, 130_001))))
    refused(ask(prod, parties, NOT_IN, i=[str(n) for n in range(1, MAX_PARAMS + 2)]))


def test_in_lists_count_together(prod: Any, parties: Parties) -> None:
    half = [str(n) for n in range(1, MAX_PARAMS // 2 + 2)]
    refused(ask(prod, parties, TWO, i=half, j=half))


def test_an_in_list_at_the_limit_answers(prod: Any, parties: Parties) -> None:
    ids = [str(n) for n in parties.a_orders + parties.b_orders]
    ids += [str(10**9 + n) for n in range(MAX_PARAMS - len(ids))]
    resp = ask(prod, parties, IN, i=ids)
    assert resp.status_code == 200, resp.text[:300]
    body = resp.json()
    assert "errors" not in body, body
    # the customer's own orders only (row-level security), whatever ids it names
    assert body["data"]["orders"]["totalCount"] == len(parties.a_orders)


def test_a_variable_list_past_the_limit_is_refused_before_it_is_coerced(
    prod: Any, parties: Parties
) -> None:
    """graphql-core's coercion of 300,000 ids took ~0.85 s of a worker's CPU (and the
    event loop's turns) before any of our checks: a list longer than any statement binds is
    refused first. Nulls in an ``[ID!]`` would be a coercion error: it is never reached."""
    resp = ask(prod, parties, IN, i=[None] * (MAX_PARAMS + 1))
    message = refused(resp)
    assert "$i" in message and "5,001" in message, message
    nested = "query ($f: OrderFilter) { orders(first: 1, filter: $f) { totalCount } }"
    message = refused(ask(prod, parties, nested, f={"or": [{"id": {"in": [None] * 6_000}}]}))
    assert "$f.or[0].id.in" in message, message
