"""Names of a document are at most ``Limits.max_name_chars`` (64) characters (docs/security.md
"Limits"). An alias is one token whatever its length, and every row of an answer repeats it
as a JSON key: an analyst's 90 KB ``cube(limit: 10000)`` of three 30,000-character aliases
(cost 2,500) answered 900 MB, a customer's ``products(first: 500)`` of three 300 KB aliases
435 MB (probe 10, 2026-12-07). The cost counts cells, not bytes; the name limit bounds the
bytes of a cell's key.

Every kind of name counts (aliases, and for safety those of operations, fragments,
variables, fields, arguments, types, directives and enum values), on every transport
(``test_transports.py``) and at ``cdms persisted add`` (``test_cli.py``). A string value
or a comment is no name: its limits are its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.api.conftest import Shop
from tests.security.conftest import Parties, make_app, post, token

LIMIT = 64  # api.rules.Limits.max_name_chars


def n(k: int, letter: str = "a") -> str:
    return letter * k


# each document with a name of ``k`` characters in one place
DOCUMENTS = {
    "alias": lambda k: f"{{ products(first: 1) {{ edges {{ node {{ {n(k)}: id }} }} }} }}",
    "operation": lambda k: f"query {n(k)} {{ products(first: 1) {{ totalCount }} }}",
    "fragment": lambda k: (
        f"{{ products(first: 1) {{ ...{n(k)} }} }}"
        f" fragment {n(k)} on ProductConnection {{ totalCount }}"
    ),
    "variable": lambda k: f"query (${n(k)}: Int) {{ products(first: ${n(k)}) {{ totalCount }} }}",
}


@pytest.fixture(scope="module")
def client(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    with make_app(sec_engine, production=True) as c:
        yield c


def _refused(status: int, body: dict[str, Any], chars: int) -> None:
    assert status == 400 and body.get("data") is None, (status, str(body)[:300])
    [error] = body["errors"]
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": LIMIT}, error
    assert f"{chars:,} characters" in error["message"], error
    assert n(LIMIT + 1) not in error["message"]  # the name is not echoed


@pytest.mark.parametrize("kind", list(DOCUMENTS))
def test_a_name_past_the_limit_is_refused_and_one_at_it_runs(
    client: Any, parties: Parties, kind: str
) -> None:
    tok = token("customer", parties.a)
    status, body = post(client, tok, DOCUMENTS[kind](LIMIT), {})
    assert status == 200 and "errors" not in body, body
    status, body = post(client, tok, DOCUMENTS[kind](LIMIT + 1))
    _refused(status, body, LIMIT + 1)
    what = {"alias": "an alias", "operation": "an operation's name"}.get(kind, f"a {kind}'s name")
    assert body["errors"][0]["message"].startswith(f"{what} of 65 characters"), body


def test_the_probes_long_aliases_are_refused_before_anything_runs(
    client: Any, parties: Parties
) -> None:
    a, b, c = n(30_000, "A"), n(30_000, "B"), n(30_000, "C")
    cube = (
        f"{{ cube(limit: 10000) {{ stock {{ {a}: unitsOnHand {b}: productId"
        f" {c}: snapshotDate {{ day }} }} }} }}"
    )
    status, body = post(client, token("analyst"), cube)
    _refused(status, body, 30_000)
    a, b, c = n(100_000, "A"), n(100_000, "B"), n(100_000, "C")
    products = f"{{ products(first: 500) {{ edges {{ node {{ {a}: id {b}: name {c}: sku }} }} }} }}"
    status, body = post(client, token("customer", parties.a), products)
    _refused(status, body, 100_000)


@pytest.mark.parametrize(
    "query",
    [
        "{ products(first: 1) { edges { node { " + n(65) + " } } } }",  # a field
        "{ products(" + n(65) + ": 1) { totalCount } }",  # an argument
        "{ products(first: 1) { ... on " + n(65, "T") + " { totalCount } } }",  # a type
        "{ products(first: 1) @" + n(65) + " { totalCount } }",  # a directive
        "{ products(first: 1, orderBy: [{name: " + n(65, "A") + "}]) { totalCount } }",  # enum
    ],
    ids=["field", "argument", "type", "directive", "enum value"],
)
def test_names_the_schema_does_not_know_are_refused_as_long_names_too(
    client: Any, parties: Parties, query: str
) -> None:
    status, body = post(client, token("customer", parties.a), query)
    _refused(status, body, 65)


def test_long_string_values_and_comments_are_no_names(client: Any, parties: Parties) -> None:
    """Runs of letters that are not names: a string value (its own limit: 200 characters
    for a product's name), a block string, a comment."""
    query = (
        "# " + n(5_000) + "\n"
        '{ products(first: 1, filter: {name: {contains: "' + n(150) + '"}}) { totalCount }'
        ' p: products(first: 1, filter: {name: {contains: """' + n(150) + '"""}})'
        " { totalCount } }"
    )
    status, body = post(client, token("customer", parties.a), query)
    assert status == 200 and "errors" not in body, body
