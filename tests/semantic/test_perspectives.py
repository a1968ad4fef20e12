"""Perspectives: members declared ``public: false`` (products.unitCost, averageUnitCost: admins
only) are absent from other roles' cubeMeta, and naming one is refused exactly as a member
that does not exist would be; the roles allowed see and query them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.security.conftest import make_app, post, token
from tests.semantic.conftest import num, sql


@pytest.fixture(scope="module")
def client(wh: Engine) -> Iterator[Any]:
    with make_app(wh) as c:
        yield c


def ask(client: Any, role: str, query: str) -> dict[str, Any]:
    status, body = post(client, token(role), query)
    assert status in (200, 400, 403), (status, body)
    return body


def products_meta(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["data"]["cubeMeta"] if c["name"] == "products")


META = "{ cubeMeta { name measures { name public roles } dimensions { name public roles } } }"


def test_cube_meta_shows_hidden_members_only_to_their_roles(client: Any) -> None:
    analyst = products_meta(ask(client, "analyst", META))
    names = {m["name"] for m in analyst["measures"] + analyst["dimensions"]}
    assert "unitCost" not in names and "averageUnitCost" not in names
    assert {"category", "listPrice", "averageListPrice"} <= names
    admin = products_meta(ask(client, "admin", META))
    cost = next(d for d in admin["dimensions"] if d["name"] == "unitCost")
    assert cost == {"name": "unitCost", "public": False, "roles": ["admin"]}
    assert any(m["name"] == "averageUnitCost" for m in admin["measures"])


def error(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("errors") and body.get("data") is None, body
    err: dict[str, Any] = body["errors"][0]
    return err


@pytest.mark.parametrize(
    ("hidden", "absent"),
    [
        (
            "{ cube { products { unitCost } } }",
            "{ cube { products { unitCosts } } }",
        ),
        (
            "{ cube { sales { revenue } products { averageUnitCost } } }",
            "{ cube { sales { revenue } products { averageUnitCosts } } }",
        ),
        (
            "{ cube(where: {products: {unitCost: {gt: 1}}}) { sales { revenue } } }",
            "{ cube(where: {products: {unitCosts: {gt: 1}}}) { sales { revenue } } }",
        ),
        (
            "{ cube(orderBy: [{products: {unitCost: ASC}}]) { products { category } } }",
            "{ cube(orderBy: [{products: {unitCosts: ASC}}]) { products { category } } }",
        ),
    ],
)
def test_a_hidden_member_is_refused_as_if_unknown(client: Any, hidden: str, absent: str) -> None:
    refused = error(ask(client, "analyst", hidden))
    unknown = error(ask(client, "analyst", absent))
    assert refused["extensions"]["code"] == unknown["extensions"]["code"] == "BAD_USER_INPUT"
    # the same words as GraphQL's own error for a field that does not exist (the whole
    # error and status, in production, on every transport: tests/security/test_hidden_members)
    name = "unitCosts" if "unitCosts" in absent else "averageUnitCosts"
    words = unknown["message"].replace(name, name.removesuffix("s"))
    assert words.startswith(refused["message"].removesuffix(".")), (refused, unknown)
    assert set(refused["extensions"]) == {"code"}


def test_admins_query_hidden_members(client: Any, wh: Engine) -> None:
    body = ask(client, "admin", "{ cube { products { category averageUnitCost } } }")
    assert "errors" not in body, body
    want = dict(sql(wh, "SELECT category, avg(cost) FROM dw.dim_product GROUP BY 1"))
    got = {
        r["products"]["category"]: r["products"]["averageUnitCost"] for r in body["data"]["cube"]
    }
    assert {k: num(v) for k, v in got.items()} == {k: num(v) for k, v in want.items()}


def test_drill_down_is_for_the_roles_that_query_cubes(client: Any) -> None:
    query = '{ cubeDrillDown(member: "products.category", value: "Books") { next children } }'
    assert error(ask(client, "service", query))["extensions"]["code"] == "FORBIDDEN"
    body = ask(client, "analyst", query)
    assert body["data"]["cubeDrillDown"]["next"] == "products.subcategory"


def without_locations(err: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in err.items() if k != "locations"}


DRILL = '{{ cubeDrillDown(member: {member}, value: "x"{args}) {{ next children }} }}'


@pytest.mark.parametrize(
    ("deepest", "above", "args"),
    [
        ("products.brand", "products.subcategory", ", where: {products: {unitCost: {gt: 1}}}"),
        ("customers.city", "customers.region", ', timezone: "Not/AZone"'),
        (
            "customers.city",
            "customers.region",
            ', where: {sales: {orderedAt: {inDateRange: ["2026-01-01", "2025-01-01"]}}}',
        ),
    ],
    ids=["hidden member", "time zone", "empty date range"],
)
def test_a_drill_down_checks_where_and_timezone_at_the_deepest_level_too(
    client: Any, deepest: str, above: str, args: str
) -> None:
    """The deepest level has no children to read, and returned before its ``where`` and
    ``timezone`` were checked: an analyst's filter on the admin-only ``products.unitCost``,
    a time zone that is none and an empty date range were 200 there and refused one level
    up (probe 10, L3)."""
    refused = error(ask(client, "analyst", DRILL.format(member=f'"{above}"', args=args)))
    deepest_refused = error(ask(client, "analyst", DRILL.format(member=f'"{deepest}"', args=args)))
    assert refused["extensions"]["code"] == "BAD_USER_INPUT", refused
    # (a hidden member is refused by validation, at its place in the document, which the
    # longer member name moves)
    assert without_locations(deepest_refused) == without_locations(refused)
    plain = ask(client, "analyst", DRILL.format(member=f'"{deepest}"', args=""))
    assert plain["data"]["cubeDrillDown"] == {"next": None, "children": []}, plain
