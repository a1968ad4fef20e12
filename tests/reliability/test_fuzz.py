"""Bounded fuzz of every root operation (queries and mutations) over HTTP (ASGI, admin
principal, a private database with a small shop): hypothesis builds operations from the
live schema with random, mostly-wrong variables (wrong types, unknown enum values, huge
numbers, junk strings, random nesting of filters). Whatever it sends, the answer is never
a 5xx and every error is masked and coded: ``extensions.code`` set, not ``INTERNAL``, and
no traceback text in it.

The generator is ours (~100 lines of hypothesis over graphql-core's schema objects) and
runs in-process; it complements ``test_schemathesis.py`` (schemathesis's GraphQL mode
against a running server: random selections and schema-breaking operations) with junk
*variables*, which hypothesis-graphql does not send.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLUnionType,
    get_named_type,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.engine import make_engine
from schema.app import schema as app_schema
from tests.api.conftest import build_shop, make_client

if TYPE_CHECKING:
    from starlette.testclient import TestClient

GQL = app_schema._schema
EXAMPLES = 15  # per operation; ~30 operations keep the run to about ten seconds

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["", "0", "-1", "1", "2", "999999999999", "1e309", "NaN", "'; --", "\x00"]),
)
DATEISH = st.sampled_from(
    ["2025-01-01", "2025-02-30", "2025-01-01T00:00:00Z", "yesterday", "0000-00-00", "9999-12-31"]
)


def value_for(t: GraphQLInputType, depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly well-typed values for ``t``, sometimes junk."""
    if isinstance(t, GraphQLNonNull):
        return value_for(t.of_type, depth)
    if isinstance(t, GraphQLList):
        return st.lists(value_for(t.of_type, depth + 1), max_size=2 if depth < 3 else 0)
    good: st.SearchStrategy[Any]
    if isinstance(t, GraphQLEnumType):
        good = st.sampled_from([*t.values, "NOPE"])
    elif isinstance(t, GraphQLInputObjectType):
        if depth >= 3:
            return st.just({})
        fields = {name: value_for(f.type, depth + 1) for name, f in t.fields.items()}
        good = st.fixed_dictionaries({}, optional=fields)
    elif isinstance(t, GraphQLScalarType):
        good = {
            "Int": st.integers(min_value=-5, max_value=200),
            "Float": st.floats(min_value=-1e6, max_value=1e6),
            "Boolean": st.booleans(),
            "ID": st.sampled_from(["1", "2", "3", "0", "-1", "abc", "99999999999999999999"]),
            "String": st.text(max_size=10),
            "Decimal": st.sampled_from(["0", "1.50", "-3", "1e400", "abc"]),
            "Date": DATEISH,
            "DateTime": DATEISH,
        }.get(t.name, JUNK)
    else:  # pragma: no cover - input types are exhausted above
        raise AssertionError(t)
    return st.one_of(good, JUNK) if depth == 0 else st.one_of(good, good, good, JUNK)


def type_ref(t: GraphQLInputType) -> str:
    if isinstance(t, GraphQLNonNull):
        return f"{type_ref(t.of_type)}!"
    if isinstance(t, GraphQLList):
        return f"[{type_ref(t.of_type)}]"
    return str(get_named_type(t).name)


def selection(t: GraphQLOutputType, depth: int = 0) -> str:
    """A fixed selection: every argument-free scalar field, objects two levels down."""
    named = get_named_type(t)
    if isinstance(named, GraphQLUnionType):
        return "{ __typename }"
    if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
        return ""
    parts = ["__typename"]
    for name, f in named.fields.items():
        if any(isinstance(a.type, GraphQLNonNull) for a in f.args.values()):
            continue
        inner = get_named_type(f.type)
        if isinstance(inner, GraphQLScalarType | GraphQLEnumType):
            parts.append(name)
        elif depth < 2:
            parts.append(f"{name} {selection(f.type, depth + 1)}")
    return "{ " + " ".join(parts) + " }"


def operations() -> list[tuple[str, str, GraphQLField]]:
    ops = []
    for kind, root in (("query", GQL.query_type), ("mutation", GQL.mutation_type)):
        if root is not None:
            ops += [(kind, name, f) for name, f in root.fields.items()]
    return ops


@st.composite
def request(draw: Callable[..., Any], kind: str, name: str, field: GraphQLField) -> dict[str, Any]:
    decls, args, variables = [], [], {}
    for i, (arg, a) in enumerate(field.args.items()):
        required = isinstance(a.type, GraphQLNonNull)
        if not required and draw(st.booleans()):
            continue
        decls.append(f"$a{i}: {type_ref(a.type)}")
        args.append(f"{arg}: $a{i}")
        if not (required and draw(st.integers(0, 9)) == 0):  # sometimes leave it out
            variables[f"a{i}"] = draw(value_for(a.type))
    head = f"{kind} ({', '.join(decls)})" if decls else kind
    call = f"{name}({', '.join(args)})" if args else name
    return {"query": f"{head} {{ {call} {selection(field.type)} }}", "variables": variables}


@pytest.fixture(scope="module")
def fuzz_client(clone_database: Callable[[str], str]) -> Iterator[TestClient]:
    engine = make_engine(clone_database("fuzz"))
    with engine.begin() as conn:
        build_shop(conn)
    with make_client(engine) as client:
        yield client


OPS = operations()


@pytest.mark.parametrize(("kind", "name", "field"), OPS, ids=[f"{k}.{n}" for k, n, _ in OPS])
def test_random_operations_get_coded_masked_errors(
    fuzz_client: TestClient, kind: str, name: str, field: GraphQLField
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(request(kind, name, field))
    def check(payload: dict[str, Any]) -> None:
        resp = fuzz_client.post("/graphql", json=payload)
        assert resp.status_code < 500, (payload, resp.text)
        body = resp.json()
        assert "data" in body or "errors" in body, body
        for err in body.get("errors", []):
            code = (err.get("extensions") or {}).get("code")
            assert code and code != "INTERNAL", (payload, err)
            assert "Traceback" not in json.dumps(err), err

    check()


def test_every_root_operation_is_fuzzed() -> None:
    names = {n for _, n, _ in OPS}
    assert {"orders", "customer", "cube", "placeOrder"} <= names, names
