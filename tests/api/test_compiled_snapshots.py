"""SQL snapshots of the compiled read path (tests/snapshots/compiled_*.sql): a change to the
planner or the SQL generator shows up as a readable diff. Regenerate with
``CDMS_UPDATE_SNAPSHOTS=1``. (That the SQL answers like Strawberry is test_compiled_parity.)"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from graphql import parse

from schema.app import schema
from schema.compiled import compile_operation
from schema.context import ApiLimits

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "issue_query": (
        "{ customers(first: 100) { edges { node { orders(first: 10) { edges { node {"
        " items { product { sku } } } } } } } } }",
        {},
    ),
    "filters_cursors_aggregates": (
        """query ($after: String) { customer(id: 7) { id segment signupAt
             orders(last: 5, before: $after, filter: {status: {in: [PAID, SHIPPED]},
               or: [{totalAmount: {gte: "100"}}, {items: {some: {quantity: {gt: 2}}}}]},
               orderBy: [{totalAmount: DESC}]) {
               totalCount aggregate { count avg { totalAmount } max { orderedAt } }
               pageInfo { hasPreviousPage startCursor } edges { cursor node { id } } } } }""",
        # ["total_amount:desc,id:desc", "120.00", 42]
        {"after": "WyJ0b3RhbF9hbW91bnQ6ZGVzYyxpZDpkZXNjIiwiMTIwLjAwIiw0Ml0"},
    ),
}


def render(query: str, variables: dict[str, Any]) -> str:
    built = compile_operation(schema, parse(query), None, variables, ApiLimits())
    sql = re.sub(r" (?=\(SELECT |FROM |WHERE |ORDER BY |LIMIT )", "\n", built.sql)
    params = json.dumps(built.params, default=str, ensure_ascii=False)
    return f"-- params: {params}\n{sql}\n"


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_sql_snapshot(name: str) -> None:
    path = SNAPSHOTS / f"compiled_{name}.sql"
    got = render(*CASES[name])
    if os.environ.get("CDMS_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8"), f"{path.name} changed; review the diff"
