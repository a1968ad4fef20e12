"""The read executor and the request checks, as a hostile customer uses them: what they
answer today that breaks the contract (docs/api.md "Errors", "How reads execute";
docs/security.md "Limits").
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.security.conftest import Parties, bearer, token
from tests.security.review.conftest import code_of


def _post(client: Any, tok: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    return client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=bearer(tok)
    )


# --- an empty "or" -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query ($f: OrderFilter) { orders(filter: $f) { totalCount } }", {"f": {"or": []}}),
        ("{ orders(filter: {or: []}) { totalCount } }", None),
        ("{ orders(filter: {or: [{or: []}]}) { totalCount } }", None),
    ],
)
def test_an_empty_or_matches_no_row(
    prod: Any, parties: Parties, query: str, variables: dict[str, Any] | None
) -> None:
    """ "At least one holds" of nothing holds for no row (schema/sql.py writes ``false`` for
    it, and ``not: {or: []}`` already matches every row), yet the empty list is dropped as
    if no filter had been given and every row comes back."""
    tok = token("customer", parties.a)
    assert _post(prod, tok, "{ orders { totalCount } }").json()["data"]["orders"] == {
        "totalCount": len(parties.a_orders)
    }
    resp = _post(prod, tok, query, variables)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"data": {"orders": {"totalCount": 0}}}  # today: every order
    negated = _post(prod, tok, "{ orders(filter: {not: {or: []}}) { totalCount } }")
    assert negated.json()["data"]["orders"]["totalCount"] == len(parties.a_orders)


# --- more values than a statement can bind ---------------------------------------------------


def test_a_filter_with_more_values_than_postgresql_binds_is_a_client_error(
    prod: Any, parties: Parties
) -> None:
    """A customer's 40 KB request: one ``or`` of 1,100 ids in a variable, used by 30
    aliases for totalCount and a count: 66,000 parameters, past PostgreSQL's 65,535.
    psycopg refuses to send it (OperationalError without a SQLSTATE), which db.errors maps
    to "the database is unavailable": 503 with Retry-After, so clients retry seconds of
    work. The request is the client's: 400, with a limit on a filter's values."""
    flt = {"or": [{"id": {"eq": str(i)}} for i in range(1, 1_101)]}
    fields = " ".join(
        f"a{i}: orders(filter: $f) {{ totalCount aggregate {{ count }} }}" for i in range(30)
    )
    resp = _post(prod, token("customer", parties.a), f"query ($f: OrderFilter) {{ {fields} }}",
                 {"f": flt})  # fmt: skip
    assert resp.status_code == 400, (resp.status_code, resp.text[:300])  # today: 503
    assert code_of(resp.json()) in {"QUERY_TOO_COMPLEX", "BAD_USER_INPUT"}, resp.text[:300]


# --- crafted cursors -----------------------------------------------------------------------


def _decode(cursor: str) -> list[Any]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    out: list[Any] = json.loads(raw)
    return out


def _encode(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _issued(client: Any, tok: str, connection: str) -> list[Any]:
    body = _post(client, tok, f"{{ {connection} {{ edges {{ cursor }} }} }}").json()
    root = next(iter(body["data"].values()))
    return _decode(root["edges"][0]["cursor"])


def _crafted(issued: list[Any], position: int, value: Any) -> str:
    values = list(issued)
    values[position] = value
    return _encode(values)


CURSORS = {
    # (connection, index of the key value to replace, the value)
    "an id beyond bigint": ("orders(first: 1)", -1, 2**63),
    "an id of 31 digits": ("orders(first: 1)", -1, 10**30),
    "an amount past numeric's range": (
        "orders(first: 1, orderBy: [{totalAmount: ASC}])",
        1,
        "1e999999",
    ),
    "text with a NUL": ("customers(first: 1, orderBy: [{lastName: ASC}])", 1, "Jones\u0000"),
}


@pytest.mark.parametrize("name", list(CURSORS))
def test_a_cursor_with_values_no_row_can_hold_is_refused_before_running(
    prod: Any, parties: Parties, name: str
) -> None:
    """docs/api.md: a cursor that is not one of ours is BAD_USER_INPUT, and errors of a
    field's arguments are found before anything runs (HTTP 400, no data). These crafted
    cursors decode and bind, then fail in PostgreSQL (numeric out of range) or in psycopg
    (NUL): 200 with an error."""
    tok = token("customer", parties.a)
    connection, position, value = CURSORS[name]
    cursor = _crafted(_issued(prod, tok, connection), position, value)
    head, _, tail = connection.partition("(")
    query = f"query ($c: String) {{ {head}(after: $c, {tail} {{ edges {{ node {{ id }} }} }} }}"
    resp = _post(prod, tok, query, {"c": cursor})
    assert code_of(resp.json()) == "BAD_USER_INPUT", resp.text
    assert resp.status_code == 400 and resp.json()["data"] is None, resp.text  # today: 200


# --- what a string may hold --------------------------------------------------------------


def test_brackets_inside_a_string_are_not_json_nesting(prod: Any, parties: Parties) -> None:
    """api.pipeline.json_depth_ok strips strings with a regex whose second branch also
    eats the opening quote of a string that follows ``: ``, so brackets *inside* string
    values count as nesting: a product search (or a feedback comment, a ticket subject)
    holding 200 ``[`` is refused as "nested too deep"."""
    resp = _post(
        prod,
        token("customer", parties.a),
        "query ($s: String) { products(filter: {name: {contains: $s}}) { totalCount } }",
        {"s": "[" * 200},
    )
    assert resp.status_code == 200, resp.text  # today: 400 "nested too deep"
    assert resp.json() == {"data": {"products": {"totalCount": 0}}}


# --- methods -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_get_the_coded_405(prod: Any, parties: Parties, method: str) -> None:
    """docs/api.md: METHOD_NOT_ALLOWED, HTTP 405, for /graphql with a method other than
    POST or GET. Starlette's route answers first, in plain text without a code."""
    resp = prod.request(
        method,
        "/graphql",
        content=b'{"query": "{ __typename }"}',
        headers={**bearer(token("customer", parties.a)), "Content-Type": "application/json"},
    )
    assert resp.status_code == 405
    assert resp.headers["content-type"].startswith("application/json"), resp.text
    assert code_of(resp.json()) == "METHOD_NOT_ALLOWED"
