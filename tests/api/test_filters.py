"""Filters: every operator, and/or/not, relation some/none, against the same SQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.api.conftest import Gql, Shop
from tests.api.helpers import codes, data, ids, sql_ids

ORDER_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("eq", {"status": {"eq": "PAID"}}, "status = 'paid'"),
    ("ne", {"status": {"ne": "PAID"}}, "status <> 'paid'"),
    ("gt", {"totalAmount": {"gt": "100"}}, "total_amount > 100"),
    ("gte", {"totalAmount": {"gte": "132.50"}}, "total_amount >= 132.50"),
    ("lt", {"totalAmount": {"lt": "100"}}, "total_amount < 100"),
    ("lte", {"totalAmount": {"lte": "132.50"}}, "total_amount <= 132.50"),
    ("in", {"status": {"in": ["PAID", "CANCELLED"]}}, "status IN ('paid', 'cancelled')"),
    ("notIn", {"status": {"notIn": ["PAID", "CANCELLED"]}}, "status NOT IN ('paid', 'cancelled')"),
    ("in-empty", {"status": {"in": []}}, "false"),
    ("datetime", {"orderedAt": {"gte": "2025-03-01T00:00:00+01:00"}},
     "ordered_at >= '2025-03-01T00:00:00+01:00'"),
    ("and", {"and": [{"status": {"eq": "PENDING"}}, {"totalAmount": {"gt": "50"}}]},
     "status = 'pending' AND total_amount > 50"),
    ("or", {"or": [{"status": {"eq": "PAID"}}, {"totalAmount": {"lt": "30"}}]},
     "status = 'paid' OR total_amount < 30"),
    ("not", {"not": {"status": {"eq": "PENDING"}}}, "NOT status = 'pending'"),
    ("nested", {"not": {"or": [{"status": {"eq": "PAID"}}, {"id": {"in": ["1", "2"]}}]}},
     "NOT (status = 'paid' OR id IN (1, 2))"),
    ("customer.some", {"customer": {"some": {"segment": {"eq": "CORPORATE"}}}},
     "customer_id IN (SELECT id FROM app.customers WHERE segment = 'corporate')"),
    ("items.some.product",
     {"items": {"some": {"product": {"some": {"sku": {"eq": "API-005"}}}}}},
     "id IN (SELECT order_id FROM app.order_items i JOIN app.products p ON p.id = i.product_id"
     " WHERE p.sku = 'API-005')"),
    ("items.none", {"items": {"none": {"quantity": {"gte": 3}}}},
     "id NOT IN (SELECT order_id FROM app.order_items WHERE quantity >= 3)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "flt", "where"), ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_order_filter(
    gql: Gql, shop: Shop, api_engine: Engine, name: str, flt: dict[str, Any], where: str
) -> None:
    body = data(
        gql(
            "query ($f: OrderFilter) { orders(filter: $f, first: 500) { totalCount"
            " edges { node { id } } } }",
            {"f": flt},
        )
    )
    expected = sql_ids(
        api_engine,
        f"SELECT id FROM app.orders WHERE {where} ORDER BY ordered_at DESC, id DESC",
    )
    assert ids(body["orders"]) == expected
    assert body["orders"]["totalCount"] == len(expected)


CUSTOMER_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("contains-ci", {"email": {"contains": "API1@"}}, "email ILIKE '%api1@%'"),
    ("startsWith-ci", {"lastName": {"startsWith": "sM"}}, "last_name ILIKE 'sm%'"),
    ("isNull-true", {"region": {"isNull": True}}, "region IS NULL"),
    ("isNull-false", {"region": {"isNull": False}}, "region IS NOT NULL"),
    ("text-in", {"country": {"in": ["DE"]}}, "country = 'DE'"),
    ("some-order-over", {"orders": {"some": {"totalAmount": {"gt": "250"},
                                             "orderedAt": {"lt": "2026-01-01T00:00:00Z"}}}},
     "EXISTS (SELECT 1 FROM app.orders o WHERE o.customer_id = customers.id"
     " AND o.total_amount > 250 AND o.ordered_at < '2026-01-01Z')"),
    ("none-orders", {"orders": {"none": {}}},
     "NOT EXISTS (SELECT 1 FROM app.orders o WHERE o.customer_id = customers.id)"),
    ("some-feedback", {"feedback": {"some": {"product": {"some": {"sku": {"eq": "API-002"}}}}}},
     "id IN (SELECT customer_id FROM app.feedback f JOIN app.products p ON p.id = f.product_id"
     " WHERE p.sku = 'API-002')"),
    ("two-levels", {"orders": {"some": {"items": {"some": {"quantity": {"eq": 4}}}}}},
     "id IN (SELECT o.customer_id FROM app.orders o JOIN app.order_items i"
     " ON i.order_id = o.id WHERE i.quantity = 4)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "flt", "where"), CUSTOMER_CASES, ids=[c[0] for c in CUSTOMER_CASES]
)
def test_customer_filter(
    gql: Gql, shop: Shop, api_engine: Engine, name: str, flt: dict[str, Any], where: str
) -> None:
    body = data(
        gql(
            "query ($f: CustomerFilter) { customers(filter: $f) { edges { node { id } } } }",
            {"f": flt},
        )
    )
    expected = sql_ids(api_engine, f"SELECT id FROM app.customers WHERE {where} ORDER BY id")
    assert ids(body["customers"]) == expected


def test_like_wildcards_are_literal(gql: Gql, shop: Shop) -> None:
    body = data(gql('{ products(filter: {name: {contains: "50%_"}}) { edges { node { sku } } } }'))
    assert [e["node"]["sku"] for e in body["products"]["edges"]] == ["API-003"]
    none = data(gql('{ products(filter: {name: {contains: "%"}}) { totalCount } }'))
    assert none["products"]["totalCount"] == 1  # only the name that holds a literal %


def test_nested_connection_filter(gql: Gql, shop: Shop, api_engine: Engine) -> None:
    cid = shop.customers[2]
    body = data(
        gql(
            "query ($id: ID!) { customer(id: $id) { orders(filter: {status: {eq: PAID}})"
            " { totalCount edges { node { id } } } } }",
            {"id": str(cid)},
        )
    )
    expected = sql_ids(
        api_engine,
        "SELECT id FROM app.orders WHERE customer_id = :c AND status = 'paid'"
        " ORDER BY ordered_at DESC, id DESC",
        c=cid,
    )
    assert ids(body["customer"]["orders"]) == expected


@pytest.mark.parametrize(
    "flt",
    [
        {"totalAmount": {"gt": "abc"}},
        {"orderedAt": {"gt": "2025-01-01T00:00:00"}},  # no offset
        {"status": {"eq": "SHIPPING"}},
        {"nope": {"eq": 1}},
        {"id": {"eq": "x"}},
        # a Decimal is ASCII digits: no blanks, digit separators or other scripts' digits
        # (Python's Decimal() takes all three)
        {"totalAmount": {"gt": " 1"}},
        {"totalAmount": {"gt": "1_0"}},
        {"totalAmount": {"gt": "\u0663"}},
        {"totalAmount": {"gt": "\uff11"}},
    ],
)
def test_bad_filter_values(gql: Gql, shop: Shop, flt: dict[str, Any]) -> None:
    body = gql("query ($f: OrderFilter) { orders(filter: $f) { totalCount } }", {"f": flt})
    assert codes(body) == ["BAD_USER_INPUT"], body


def test_in_lists_of_other_lengths_bind_their_own_values(
    gql: Gql, shop: Shop, api_engine: Engine
) -> None:
    """One statement serves every length of an `in` list (its shape in the plan cache is
    "a list of scalars"): each request still gets its own ids, none, one or many."""
    query = "query ($ids: [ID!]) { orders(filter: {id: {in: $ids}}, first: 500) { totalCount } }"
    every = sql_ids(api_engine, "SELECT id FROM app.orders ORDER BY id")
    for chosen in (every[:1], every[:3], [], every[2:3], every):
        body = data(gql(query, {"ids": [str(i) for i in chosen]}))
        assert body["orders"]["totalCount"] == len(chosen), chosen
