"""orderBy, keyset cursors forward and backward, stability under inserts, page caps."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.api.conftest import Gql, Shop
from tests.api.helpers import codes, data, ids, sql_ids

PAGE = """query ($first: Int, $after: String, $last: Int, $before: String, $o: [OrderOrderBy!]) {
  orders(first: $first, after: $after, last: $last, before: $before, orderBy: $o) {
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


def _walk_forward(gql: Gql, order_by: list[dict[str, str]], size: int) -> list[int]:
    seen: list[int] = []
    after = None
    while True:
        conn = data(gql(PAGE, {"first": size, "after": after, "o": order_by}))["orders"]
        seen += ids(conn)
        info = conn["pageInfo"]
        if not info["hasNextPage"]:
            return seen
        assert info["endCursor"] == conn["edges"][-1]["cursor"]
        after = info["endCursor"]


def _walk_backward(gql: Gql, order_by: list[dict[str, str]], size: int) -> list[int]:
    seen: list[int] = []
    before = None
    while True:
        conn = data(gql(PAGE, {"last": size, "before": before, "o": order_by}))["orders"]
        seen = ids(conn) + seen
        info = conn["pageInfo"]
        if not info["hasPreviousPage"]:
            return seen
        before = info["startCursor"]


ORDERINGS = [
    ([], "ordered_at DESC, id DESC"),
    ([{"orderedAt": "ASC"}], "ordered_at ASC, id ASC"),
    ([{"totalAmount": "DESC"}, {"id": "ASC"}], "total_amount DESC, id ASC"),
    ([{"orderedAt": "DESC"}, {"totalAmount": "ASC"}], "ordered_at DESC, total_amount ASC, id ASC"),
]


@pytest.mark.parametrize(("order_by", "sql_order"), ORDERINGS)
def test_pages_cover_everything_once_in_order(
    gql: Gql, shop: Shop, api_engine: Engine, order_by: list[dict[str, str]], sql_order: str
) -> None:
    expected = sql_ids(api_engine, f"SELECT id FROM app.orders ORDER BY {sql_order}")
    assert _walk_forward(gql, order_by, 4) == expected
    assert _walk_backward(gql, order_by, 5) == expected


def test_page_info_flags(gql: Gql, shop: Shop) -> None:
    first = data(gql(PAGE, {"first": 3}))["orders"]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["hasPreviousPage"] is False
    second = data(gql(PAGE, {"first": 3, "after": first["pageInfo"]["endCursor"]}))["orders"]
    assert second["pageInfo"]["hasPreviousPage"] is True
    empty = data(gql(PAGE, {"first": 0}))["orders"]
    assert empty["edges"] == [] and empty["pageInfo"]["startCursor"] is None


def test_cursors_are_stable_under_inserts(gql: Gql, shop: Shop, api_engine: Engine) -> None:
    cid = shop.customers[1]
    page1 = data(gql(PAGE, {"first": 5}))["orders"]
    cursor = page1["pageInfo"]["endCursor"]
    before_insert = ids(data(gql(PAGE, {"first": 5, "after": cursor}))["orders"])
    # a new newest order lands on page one; page two must not shift
    with api_engine.begin() as conn:
        new_id = conn.execute(
            sa.text(
                "INSERT INTO app.orders (customer_id, channel, payment_method, ordered_at)"
                " VALUES (:c, 'web', 'card', :at) RETURNING id"
            ),
            {"c": cid, "at": dt.datetime(2030, 1, 1, tzinfo=dt.UTC)},
        ).scalar_one()
    try:
        after_insert = ids(data(gql(PAGE, {"first": 5, "after": cursor}))["orders"])
        assert after_insert == before_insert
        assert ids(data(gql(PAGE, {"first": 1}))["orders"]) == [new_id]
    finally:
        with api_engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM app.orders WHERE id = :id"), {"id": new_id})


@pytest.mark.parametrize(
    "variables",
    [
        {"first": 501},
        {"last": 501},
        {"first": -1},
        {"first": 2, "last": 2},
        {"after": "not-a-cursor"},
        {"after": "WyJpZDphc2MiLDFd"},  # a cursor of another ordering
        {"o": [{"orderedAt": "ASC", "id": "ASC"}]},  # two fields in one item
    ],
)
def test_bad_page_arguments(gql: Gql, shop: Shop, variables: dict[str, object]) -> None:
    body = gql(PAGE, variables)
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body["data"] is None


def test_page_size_default_and_max(gql: Gql, shop: Shop) -> None:
    assert len(ids(data(gql("{ orders { edges { node { id } } } }"))["orders"])) == 28
    body = data(gql("{ orders(first: 500) { edges { node { id } } } }"))
    assert len(ids(body["orders"])) == 28


def test_page_size_follows_the_configured_limits(api_engine: Engine, shop: Shop) -> None:
    from tests.api.conftest import make_client

    with make_client(api_engine, default_page_size=4, max_page_size=6) as client:
        body = client.post("/graphql", json={"query": "{ orders { edges { node { id } } } }"})
        assert len(body.json()["data"]["orders"]["edges"]) == 4
        over = client.post("/graphql", json={"query": "{ orders(first: 7) { totalCount } }"})
        assert codes(over.json()) == ["BAD_USER_INPUT"]
