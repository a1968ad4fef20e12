"""Hypothesis on order filters: random filter trees (status and totalAmount comparisons under
and / or / not, several fields in one object meaning "all of them") sent over GraphQL give
exactly the orders the same tree selects when evaluated in Python over the rows."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.engine import make_engine
from db.seed import seed
from tests.api.conftest import make_client

if TYPE_CHECKING:
    from starlette.testclient import TestClient

STATUSES = ["PENDING", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "RETURNED"]
QUERY = """query ($f: OrderFilter) { orders(filter: $f, first: 100) {
  totalCount edges { node { id } } } }"""
Row = tuple[int, str, Decimal]


@pytest.fixture(scope="module")
def orders_db(clone_database: Callable[[str], str]) -> Iterator[tuple[TestClient, list[Row]]]:
    url = clone_database("filterfuzz")
    seed(url, 20, 80, 7)
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = [
            (int(i), str(s).upper(), Decimal(t))
            for i, s, t in conn.execute(
                sa.text("SELECT id, status, total_amount FROM app.orders ORDER BY id")
            )
        ]
    assert 0 < len(rows) <= 100 and len({r[1] for r in rows}) >= 3, "seed too uniform"
    with make_client(engine) as client:
        yield client, rows


def amounts(rows: list[Row]) -> st.SearchStrategy[Decimal]:
    return st.one_of(
        st.sampled_from([r[2] for r in rows]),
        st.decimals(min_value=0, max_value=5000, places=2, allow_nan=False),
    )


def leaf(rows: list[Row]) -> st.SearchStrategy[dict[str, Any]]:
    status = st.one_of(
        st.fixed_dictionaries({st_op: st.sampled_from(STATUSES)}) for st_op in ("eq", "ne")
    ) | st.one_of(
        st.fixed_dictionaries({op: st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3)})
        for op in ("in", "notIn")
    )
    total = st.one_of(
        st.fixed_dictionaries({op: amounts(rows)}) for op in ("eq", "gt", "gte", "lt", "lte")
    )
    return st.fixed_dictionaries({}, optional={"status": status, "totalAmount": total}).filter(bool)


def tree(rows: list[Row]) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaf(rows),
        lambda sub: st.one_of(
            st.fixed_dictionaries({"and": st.lists(sub, min_size=1, max_size=3)}),
            st.fixed_dictionaries({"or": st.lists(sub, min_size=1, max_size=3)}),
            st.fixed_dictionaries({"not": sub}),
        ),
        max_leaves=6,
    )


CMP: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "in": lambda v, xs: v in xs,
    "notIn": lambda v, xs: v not in xs,
}


def holds(f: dict[str, Any], row: Row) -> bool:
    _, status, total = row
    results = []
    for key, arg in f.items():
        if key == "and":
            results.append(all(holds(g, row) for g in arg))
        elif key == "or":
            results.append(any(holds(g, row) for g in arg))
        elif key == "not":
            results.append(not holds(arg, row))
        else:
            value = status if key == "status" else total
            results += [CMP[op](value, x) for op, x in arg.items()]
    return all(results)


def to_json(f: Any) -> Any:
    if isinstance(f, dict):
        return {k: to_json(v) for k, v in f.items()}
    if isinstance(f, list):
        return [to_json(v) for v in f]
    return str(f) if isinstance(f, Decimal) else f


def test_random_filter_trees_match_python(orders_db: tuple[TestClient, list[Row]]) -> None:
    client, rows = orders_db

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        derandomize=True,  # the same trees on every run (CI)
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(tree(rows))
    def check(f: dict[str, Any]) -> None:
        resp = client.post("/graphql", json={"query": QUERY, "variables": {"f": to_json(f)}})
        body = resp.json()
        assert resp.status_code == 200 and "errors" not in body, (f, body)
        got = [int(e["node"]["id"]) for e in body["data"]["orders"]["edges"]]
        want = {r[0] for r in rows if holds(f, r)}
        assert set(got) == want, f
        assert body["data"]["orders"]["totalCount"] == len(want)

    check()
