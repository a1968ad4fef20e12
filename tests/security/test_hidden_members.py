"""A cube member hidden from a role (``public: false``: products.unitCost and
averageUnitCost are for admins) is refused exactly as one that does not exist: the whole
error (message, locations, no path, extensions) and the HTTP status are graphql-core's for
an absent member, on every transport, in a production app (where introspection is for
admins, so an error is an analyst's only way to tell a member exists).

The absent names (``unitCosx``, ``averageUnitCosx``) are as long as the hidden ones, so
the two answers are equal once the name is put back (probe 11: the copy of the message
was raised while the resolver ran, with ``path: ["cube"]`` and the ``cube`` field's
location, and without graphql-core's ``found: ...`` tail or ``Variable '$w' ...`` prefix).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from graphql import GraphQLSchema, build_ast_schema, parse, validate_schema
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from schema.app import graphql_schema, schema
from schema.cube.queries import MODEL
from schema.views import hidden_fields, without
from semantic.model import Model
from tests.security.conftest import bearer, token
from tests.security.transports import WS_PROTOCOL, receive, register, ws_init, ws_send

ABSENT = {"unitCost": "unitCosx", "averageUnitCost": "averageUnitCosx"}


def cube(args: str = "", rows: str = "count", head: str = "", tail: str = "") -> str:
    """A ``cube`` query of products ``rows`` (``args``: after ``limit: 1``)."""
    return f"{head}{{ cube(limit: 1{args}) {{ products {{ {rows} }} }} }}{tail}"


def drill(where: str) -> str:
    head = "query ($w: CubeWhere) " if where == "$w" else ""
    args = f'member: "products.category", value: "x", where: {where}'
    return f"{head}{{ cubeDrillDown({args}) {{ next }} }}"


COST = "{products: {unitCost: {gt: 1}}}"
W = cube(", where: $w", head="query ($w: CubeWhere) ")
VAR_COST = {"products": {"unitCost": {"gt": 1}}}

# name -> (query, variables), each naming a hidden member once
CASES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "where": (cube(f", where: {COST}"), None),
    "where, in AND": (
        cube(f", where: {{AND: [{{products: {{count: {{gt: 0}}}}}}, {COST}]}}"),
        None,
    ),
    "where, a measure in OR": (
        cube(", where: {OR: [{products: {averageUnitCost: {lt: 2}}}]}"),
        None,
    ),
    "where, a variable": (W, {"w": VAR_COST}),
    "where, a variable in OR": (W, {"w": {"OR": [{"AND": [VAR_COST]}]}}),
    "where, a variable's default": (
        cube(", where: $w", head=f"query ($w: CubeWhere = {COST}) "),
        None,
    ),
    "selection": (cube(rows="unitCost"), None),
    "selection, a measure with arguments": (cube(rows="sku averageUnitCost(rank: true)"), None),
    "selection, aliased in a fragment": (
        cube(rows="...P", tail=" fragment P on CubeProducts { c: unitCost }"),
        None,
    ),
    "selection, with a sub-selection": (cube(rows="unitCost { day }"), None),
    "orderBy": (cube(", orderBy: [{products: {averageUnitCost: DESC}}]", rows="sku"), None),
    "orderBy, a variable": (
        cube(", orderBy: $o", rows="sku", head="query ($o: [CubeOrderBy!]) "),
        {"o": [{"products": {"unitCost": "ASC"}}]},
    ),
    "cubeDrillDown where": (drill(COST), None),
    "cubeDrillDown where, a variable": (drill("$w"), {"w": VAR_COST}),
}


def absent(text: str) -> str:
    for hidden, missing in ABSENT.items():
        text = text.replace(hidden, missing)
    return text


def put_back(answer: Any) -> Any:
    """An answer about the absent names, told with the hidden ones."""
    text = json.dumps(answer)
    for hidden, missing in ABSENT.items():
        text = text.replace(missing, hidden)
    return json.loads(text)


def http(client: TestClient, body: Any) -> list[Any]:
    """[status, body] of an analyst's request."""
    resp = client.post("/graphql", json=body, headers=bearer(token("analyst")))
    return [resp.status_code, resp.json()]


@pytest.mark.parametrize("case", CASES)
def test_a_hidden_member_is_refused_as_an_absent_one_over_http(prod: TestClient, case: str) -> None:
    query, variables = CASES[case]
    op = {"query": query, "variables": variables or {}}
    hidden = http(prod, op)
    missing = http(prod, json.loads(absent(json.dumps(op))))
    assert hidden == put_back(missing)
    status, body = hidden
    assert status == 400, hidden
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}
    assert "path" not in body["errors"][0], hidden


@pytest.mark.parametrize("case", ["where", "where, a variable", "selection", "orderBy"])
def test_a_hidden_member_is_refused_as_an_absent_one_in_a_batch(
    prod: TestClient, case: str
) -> None:
    query, variables = CASES[case]
    ops = [{"query": "{ __typename }"}, {"query": query, "variables": variables or {}}]
    hidden = http(prod, ops)
    assert hidden == put_back(http(prod, json.loads(absent(json.dumps(ops)))))
    assert hidden[0] == 400, hidden


@pytest.mark.parametrize("case", ["where", "selection", "cubeDrillDown where, a variable"])
def test_a_hidden_member_is_refused_as_an_absent_one_in_a_persisted_query(
    prod: TestClient, sec_engine: Engine, case: str
) -> None:
    query, variables = CASES[case]

    def persisted(text: str, values: Any) -> list[Any]:
        ext = {"persistedQuery": {"version": 1, "sha256Hash": register(sec_engine, text)}}
        return http(prod, {"variables": values or {}, "extensions": ext})

    hidden = persisted(query, variables)
    missing = persisted(absent(query), json.loads(absent(json.dumps(variables))))
    assert hidden == put_back(missing)
    assert hidden[0] == 400, hidden


def over_socket(client: TestClient, protocol: str, op: dict[str, Any]) -> dict[str, Any]:
    """The first message answering ``op`` on a new socket (its id and type included)."""
    headers = bearer(token("analyst"))
    with client.websocket_connect("/graphql", subprotocols=[protocol], headers=headers) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", op)
        while True:
            msg = receive(ws)
            assert msg is not None, "no answer"
            if msg.get("id") == "1":
                return msg


@pytest.mark.parametrize("transport", ["ws", "ws-legacy"])
@pytest.mark.parametrize("case", ["where", "where, a variable", "selection", "orderBy"])
def test_a_hidden_member_is_refused_as_an_absent_one_over_a_websocket(
    prod: TestClient, transport: str, case: str
) -> None:
    query, variables = CASES[case]
    op = {"query": query, "variables": variables or {}}
    protocol = WS_PROTOCOL[transport]
    hidden = over_socket(prod, protocol, op)
    missing = over_socket(prod, protocol, json.loads(absent(json.dumps(op))))
    assert hidden == put_back(missing)
    assert hidden["type"] == "error", hidden


def test_admins_still_name_the_hidden_members(prod: TestClient) -> None:
    query = cube(
        ", where: {products: {unitCost: {gt: 0}}}, orderBy: [{products: {averageUnitCost: DESC}}]",
        rows="unitCost averageUnitCost",
    )
    resp = prod.post("/graphql", json={"query": query}, headers=bearer(token("admin")))
    assert resp.status_code == 200, resp.text
    assert "errors" not in resp.json(), resp.text


def hiding(model: Model, cube: str, names: set[str] | None = None) -> Model:
    """``model`` with ``names`` of ``cube`` (all its members by default) for admins only."""

    def hide(members: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            replace(m, public=False) if names is None or m.name in names else m for m in members
        )

    cubes = tuple(
        replace(c, measures=hide(c.measures), dimensions=hide(c.dimensions))
        if c.name == cube
        else c
        for c in model.cubes
    )
    return replace(model, cubes=cubes)


def view(model: Model, role: str) -> GraphQLSchema:
    return build_ast_schema(without(parse(schema.as_str()), hidden_fields(model, role)))


def test_a_cube_hidden_whole_goes_with_its_types() -> None:
    """No member of products left: its row field, where and orderBy entries go, and so do
    its types (a type with no field is no schema; a type left would name the cube)."""
    gschema = view(hiding(MODEL, "products"), "analyst")
    assert validate_schema(gschema) == []
    assert "products" not in gschema.type_map["CubeRow"].fields  # type: ignore[union-attr]
    assert "products" not in gschema.type_map["CubeWhere"].fields  # type: ignore[union-attr]
    assert "products" not in gschema.type_map["CubeOrderBy"].fields  # type: ignore[union-attr]
    products = {"CubeProducts", "CubeProductsWhere", "CubeProductsOrderBy"}
    assert not products & set(gschema.type_map)
    assert "sales" in gschema.type_map["CubeRow"].fields  # type: ignore[union-attr]
    assert view(hiding(MODEL, "products"), "admin").type_map.keys() == (
        graphql_schema().type_map.keys()
    )


def test_a_hidden_time_dimension_leaves_no_type_behind() -> None:
    gschema = view(hiding(MODEL, "orders", {"orderedAt"}), "analyst")
    assert validate_schema(gschema) == []
    assert "CubeOrdersOrderedAt" not in gschema.type_map
    assert "orderedAt" not in gschema.type_map["CubeOrdersWhere"].fields  # type: ignore[union-attr]
    assert "CubeOrdersOrderedAt" in graphql_schema().type_map
