"""Hypothesis on cube filters: random ``where`` trees over the orders cube (status and channel
comparisons in any letter case, order-id ranges, several members in one object meaning "all
of them", nested ``AND`` / ``OR``) sent as a ``cube`` query grouped by status give exactly the
counts the same tree gives when evaluated in Python over ``app.orders``.

Filters on status and channel alone are answered from the daily rollup, those on the order id
from the facts, so both paths meet the same oracle.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.engine import make_engine
from tests.api.conftest import make_client
from tests.semantic.conftest import load_warehouse

if TYPE_CHECKING:
    from starlette.testclient import TestClient

STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "returned"]
CHANNELS = ["web", "mobile", "store", "phone", "marketplace"]
QUERY = "query ($w: CubeWhere) { cube(where: $w) { orders { status count } } }"
Row = tuple[int, str, str]  # order id, status, channel


@pytest.fixture(scope="module")
def cube_db(clone_database: Callable[[str], str]) -> Iterator[tuple[TestClient, list[Row]]]:
    url = clone_database("cubefuzz")
    load_warehouse(url, 20, 80, 11)  # seed, ETL, rollups
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = [
            (int(i), str(s), str(c))
            for i, s, c in conn.execute(
                sa.text("SELECT id, status, channel FROM app.orders ORDER BY id")
            )
        ]
    assert len({r[1] for r in rows}) >= 3 and len({r[2] for r in rows}) >= 2, "seed too uniform"
    with make_client(engine) as client:
        yield client, rows


def any_case(values: list[str]) -> st.SearchStrategy[str]:
    """One of ``values`` as lower, upper or title case (closed-set filters ignore case)."""
    cases = st.sampled_from([str.lower, str.upper, str.title])
    return st.tuples(st.sampled_from(values), cases).map(lambda p: p[1](p[0]))


def closed_set(values: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    one, some = any_case(values), st.lists(any_case(values), min_size=1, max_size=3)
    return st.one_of(
        st.fixed_dictionaries({"equals": one}),
        st.fixed_dictionaries({"notEquals": one}),
        st.fixed_dictionaries({"in": some}),
        st.fixed_dictionaries({"notIn": some}),
    )


def leaf(rows: list[Row]) -> st.SearchStrategy[dict[str, Any]]:
    ids = st.sampled_from([float(r[0]) for r in rows])
    order_id: st.SearchStrategy[dict[str, Any]] = st.one_of(
        [st.fixed_dictionaries({op: ids}) for op in ("equals", "gt", "gte", "lt", "lte")]
    ) | st.fixed_dictionaries({"in": st.lists(ids, min_size=1, max_size=4)})
    members = st.fixed_dictionaries(
        {},
        optional={
            "status": closed_set(STATUSES),
            "channel": closed_set(CHANNELS),
            "orderId": order_id,
        },
    ).filter(bool)
    return members.map(lambda m: {"orders": m})


def tree(rows: list[Row]) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaf(rows),
        lambda sub: st.one_of(
            st.fixed_dictionaries({"AND": st.lists(sub, min_size=1, max_size=3)}),
            st.fixed_dictionaries({"OR": st.lists(sub, min_size=1, max_size=3)}),
        ),
        max_leaves=6,
    )


CMP: dict[str, Callable[[Any, Any], bool]] = {
    "equals": operator.eq,
    "notEquals": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "in": lambda v, xs: v in xs,
    "notIn": lambda v, xs: v not in xs,
}


def _norm(x: Any) -> Any:
    if isinstance(x, str):
        return x.lower()
    if isinstance(x, list):
        return [_norm(v) for v in x]
    return x


def holds(w: dict[str, Any], row: Row) -> bool:
    oid, status, channel = row
    value = {"orderId": float(oid), "status": status, "channel": channel}
    results = []
    for key, arg in w.items():
        if key == "AND":
            results.append(all(holds(g, row) for g in arg))
        elif key == "OR":
            results.append(any(holds(g, row) for g in arg))
        else:
            assert key == "orders", key
            results += [
                CMP[op](value[member], _norm(x)) for member, f in arg.items() for op, x in f.items()
            ]
    return all(results)


def test_random_cube_filters_match_python(cube_db: tuple[TestClient, list[Row]]) -> None:
    client, rows = cube_db
    paths: set[tuple[str, ...]] = set()  # rollups each answer came from; () = the facts

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(tree(rows))
    def check(w: dict[str, Any]) -> None:
        resp = client.post("/graphql", json={"query": QUERY, "variables": {"w": w}})
        body = resp.json()
        assert resp.status_code == 200 and "errors" not in body, (w, body)
        got = {r["orders"]["status"]: int(r["orders"]["count"]) for r in body["data"]["cube"]}
        want = Counter(r[1] for r in rows if holds(w, r))
        assert got == dict(want), w
        paths.update(tuple(e["rollups"]) for e in body["extensions"]["cube"])

    check()
    assert paths == {(), ("orders.daily",)}, paths  # both paths met the oracle
