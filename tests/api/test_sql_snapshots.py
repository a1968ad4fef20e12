"""SQL snapshots of the read compiler (tests/snapshots/read_*.sql), one per query root with
nested relations, filters, cursors, aggregates and prediction fields: a change to the
planner or the SQL generator shows up as a readable diff. A missing snapshot fails;
``CDMS_UPDATE_SNAPSHOTS=1`` rewrites them (then review the diff)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from graphql import OperationDefinitionNode, parse
from graphql.execution.values import get_variable_values

from schema.app import graphql_schema
from schema.catalog import ROOTS
from schema.context import ApiLimits
from schema.execute import Reads

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
CURSOR = "WyJ0b3RhbEFtb3VudDpkZXNjLGlkOmRlc2MiLCAxMjAuMDAsIDQyXQ"  # totalAmount:desc, 120.00, 42

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "customer": (
        """query ($id: ID!, $before: String) { customer(id: $id) { id segment signupAt
             summary { orderCount lifetimeValue returnRate } expectedOrderValue { value }
             orders(last: 5, before: $before, filter: {status: {in: [PAID, SHIPPED]},
               or: [{totalAmount: {gte: "100"}}, {items: {some: {quantity: {gt: 2}}}}]},
               orderBy: [{totalAmount: DESC}]) {
               totalCount aggregate { count avg { totalAmount } max { orderedAt } }
               pageInfo { hasPreviousPage startCursor } edges { cursor node { id } } } } }""",
        {"id": "7", "before": CURSOR},
    ),
    "customers": (
        """{ customers(first: 100, filter: {country: {in: ["DE", "FR"]},
             email: {contains: "50%_off"}}) { edges { node {
             orders(first: 10) { edges { node { items { product { sku } } } } } } } } }""",
        {},
    ),
    "order": (
        """query ($id: ID!) { order(id: $id) { id status totalAmount orderedAt
             predictedStatus { label probability } predictedTotal { value model { version } }
             customer { email } items { lineNo unitPrice product { sku } }
             statusHistory { fromStatus toStatus changedAt } returns { totalCount } } }""",
        {"id": "42"},
    ),
    "orders": (
        """query ($f: OrderFilter, $n: Int, $after: String) { orders(first: $n, after: $after,
             filter: $f) { totalCount pageInfo { hasNextPage endCursor }
             edges { cursor node { id totalAmount } } } }""",
        {
            "f": {"status": {"eq": "PAID"}, "customer": {"some": {"segment": {"ne": "CORPORATE"}}}},
            "n": 20,
            "after": "WyJvcmRlcmVkQXQ6ZGVzYyxpZDpkZXNjIiwgIjIwMjUtMDEtMDFUMDA6MDA6MDArMDA6MDAi"
            "LCA3XQ",
        },
    ),
    "product": (
        '{ product(id: "3") { sku unitPrice feedback(first: 3) { edges { node { rating } } } } }',
        {},
    ),
    "products": (
        """{ products(orderBy: [{category: ASC}, {unitPrice: DESC}]) { aggregate {
             count sum { stock } avg { unitPrice } min { unitPrice } } edges { node { id } } } }""",
        {},
    ),
    "supportTicket": (
        '{ supportTicket(id: "9") { id status openedAt predictedStatus { label } order { id } } }',
        {},
    ),
    "supportTickets": (
        """{ supportTickets(filter: {priority: {eq: HIGH}, openedAt: {gte:
             "2025-01-01T00:00:00Z"}}) { totalCount edges { node { subject } } } }""",
        {},
    ),
    "returns": (
        "{ returns(last: 2) { edges { node { id reason refundAmount order { id } } } } }",
        {},
    ),
    "feedback": (
        """{ feedback(filter: {not: {createdAt: {isNull: true}}, product: {none: {brand:
             {startsWith: "ac"}}}}) { edges { node { rating customer { id } } } } }""",
        {},
    ),
}


def render(query: str, variables: dict[str, Any]) -> str:
    gschema = graphql_schema()
    document = parse(query)
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    coerced = get_variable_values(gschema, operation.variable_definitions or (), variables)
    assert not isinstance(coerced, list), coerced
    stmt = Reads(gschema, ApiLimits()).query_statement(query, document, operation, coerced)
    sql = re.sub(r" (?=\(SELECT |FROM |WHERE |ORDER BY |LIMIT |LEFT JOIN )", "\n", stmt.sql)
    params = json.dumps(
        [(repr(p.src), p.conv, p.cursor) for p in stmt.params], default=str, ensure_ascii=False
    )
    return f"-- params: {params}\n{sql}\n"


def test_every_root_has_a_snapshot() -> None:
    assert set(CASES) == set(ROOTS)


@pytest.mark.parametrize("name", list(CASES))
def test_read_sql_snapshot(name: str) -> None:
    path = SNAPSHOTS / f"read_{name}.sql"
    got = render(*CASES[name])
    if os.environ.get("CDMS_UPDATE_SNAPSHOTS") == "1":
        path.write_text(got, encoding="utf-8")
    assert path.exists(), f"{path.name} is missing: run with CDMS_UPDATE_SNAPSHOTS=1 and review"
    assert got == path.read_text(encoding="utf-8"), f"{path.name} changed; review the diff"
