"""The alias limit (30, docs/security.md "Limits") counts the aliases of the operation as it
runs, fragments spread: a fragment of 20 aliases spread under two aliased fields answers
42 aliased fields, and the old count of the document's text saw 22 (the black-box review).

Each alias counts as often as spreads reach it, through nested fragments too, on every
transport; each fragment's total is computed once (a spread adds it, never walks it), so a
fragment bomb is refused in time linear in the document.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.security.conftest import Parties, bearer, token
from tests.security.transports import TRANSPORTS, run_over


def _aliases(prefix: str, n: int, field: str) -> str:
    return " ".join(f"{prefix}{i}: {field}" for i in range(n))


def twice(customer: int, n: int) -> str:
    """Two aliased customers, each spreading a fragment of ``n`` aliases: 2 + 2n."""
    return (
        f"{{ x: customer(id: {customer}) {{ ...F }} y: customer(id: {customer}) {{ ...F }} }}"
        f" fragment F on Customer {{ {_aliases('a', n, 'id')} }}"
    )


def nested(customer: int, n: int) -> str:
    """``F`` of ``n`` aliases spread directly and through ``G``: 2n."""
    return (
        "{ ...F ...G } fragment G on Query { ...F }"
        f" fragment F on Query {{ {_aliases('c', n, f'customer(id: {customer}) {{ id }}')} }}"
    )


def inline(customer: int, n: int) -> str:
    """``F`` spread in an inline fragment and beside it, under an aliased field: 1 + 2n."""
    return (
        f"{{ me: customer(id: {customer}) {{ ... on Customer {{ ...F }} ...F }} }}"
        f" fragment F on Customer {{ {_aliases('e', n, 'email')} }}"
    )


def alias_bomb(n: int) -> str:
    """``F0`` spreads ``F1`` twice ... ``Fn`` holds one alias: 2**n aliases."""
    parts = ["query { ...F0 }"]
    parts += [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n)]
    parts.append(f"fragment F{n} on Query {{ t: __typename }}")
    return " ".join(parts)


OVER = {
    "twice (42)": lambda c: twice(c, 20),
    "nested (32)": lambda c: nested(c, 16),
    "inline (31)": lambda c: inline(c, 15),
    "bomb (2**40)": lambda c: alias_bomb(40),
}
AT_THE_LIMIT = {
    "twice (30)": lambda c: twice(c, 14),
    "nested (30)": lambda c: nested(c, 15),
    "inline (29)": lambda c: inline(c, 14),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("shape", list(OVER))
def test_aliases_reached_through_spreads_count_each_time(
    prod: Any, sec_engine: Engine, parties: Parties, transport: str, shape: str
) -> None:
    query = OVER[shape](parties.a)
    out = run_over(transport, prod, sec_engine, bearer(token("admin")), query)
    assert out.codes == ["QUERY_TOO_COMPLEX"], out  # before: 200, 42 aliased fields
    assert "aliases" in out.messages[0], out
    assert out.data is None
    if out.status is not None:
        assert out.status == 400


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("shape", list(AT_THE_LIMIT))
def test_thirty_aliases_through_spreads_are_answered(
    prod: Any, sec_engine: Engine, parties: Parties, transport: str, shape: str
) -> None:
    query = AT_THE_LIMIT[shape](parties.a)
    out = run_over(transport, prod, sec_engine, bearer(token("admin")), query)
    assert out.codes == [] and out.data, out
    if out.status is not None:
        assert out.status == 200


def _of_types(levels: int, inner: str) -> str:
    """``__type(name: "Query")`` with ``ofType`` nested ``levels`` deep around ``inner``."""
    return '{ __type(name: "Query") { ' + "ofType { " * levels + inner + " }" * (levels + 1) + " }"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_aliases_deep_inside_introspection_still_count(
    prod: Any, sec_engine: Engine, transport: str
) -> None:
    """Introspection does not count for depth (GraphiQL's query nests ``ofType``), so
    aliases below the depth limit inside it were not counted at all (the hostile review)."""
    query = _of_types(14, _aliases("n", 31, "name"))
    out = run_over(transport, prod, sec_engine, bearer(token("admin")), query)
    assert out.codes == ["QUERY_TOO_COMPLEX"], out
    assert "aliases" in out.messages[0], out


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_introspection_nesting_fields_of_types_is_limited(
    prod: Any, sec_engine: Engine, transport: str
) -> None:
    """graphql-js's limit on nested introspection (``fields { type { fields ...``: each
    level multiplies the answer by the schema's size) holds on every transport."""
    inner = "fields { type { " * 4 + "name" + " }" * 8
    query = '{ __type(name: "Query") { ' + inner + " } }"
    out = run_over(transport, prod, sec_engine, bearer(token("admin")), query)
    assert out.codes and out.data is None, out
    assert "introspection" in out.messages[0].lower(), out
    if out.status is not None:
        assert out.status == 400


def test_graphiql_s_own_introspection_query_is_answered(prod: Any) -> None:
    from graphql import get_introspection_query

    resp = prod.post(
        "/graphql",
        json={"query": get_introspection_query(descriptions=True)},
        headers=bearer(token("admin")),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["__schema"]["types"], resp.text
