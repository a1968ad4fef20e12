"""Nested reads: values, per-parent pagination and the statement-count bound."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from tests.api.conftest import ORDERS_PER_CUSTOMER, Gql, Shop, StatementLog
from tests.api.helpers import codes, data, ids, nodes, sql_ids, sql_one

NESTED = """
query ($c: Int, $o: Int) {
  customers(first: $c) { edges { node {
    id
    orders(first: $o) { totalCount edges { node {
      id totalAmount itemCount status
      items { lineNo quantity unitPrice lineTotal product { sku } }
    } } }
  } } }
}"""


def test_each_parent_gets_its_own_page(gql: Gql, shop: Shop, api_engine: Engine) -> None:
    body = data(gql(NESTED, {"c": 100, "o": 5}))
    customers = nodes(body["customers"])
    assert [int(c["id"]) for c in customers] == shop.customers
    for cust, n_orders in zip(customers, ORDERS_PER_CUSTOMER, strict=True):
        cid = int(cust["id"])
        orders = cust["orders"]
        assert orders["totalCount"] == n_orders
        expected = sql_ids(
            api_engine,
            "SELECT id FROM app.orders WHERE customer_id = :c"
            " ORDER BY ordered_at DESC, id DESC LIMIT 5",
            c=cid,
        )
        assert ids(orders) == expected
        assert len(expected) == min(5, n_orders)


def test_order_values_match_the_database(gql: Gql, shop: Shop, api_engine: Engine) -> None:
    oid = shop.orders[shop.customers[2]][4]
    body = data(
        gql(
            """query ($id: ID!) { order(id: $id) { id status totalAmount itemCount orderedAt
                 customer { email } items { lineNo quantity unitPrice discount lineTotal
                 product { sku unitPrice } } statusHistory { fromStatus toStatus } } }""",
            {"id": str(oid)},
        )
    )
    order = body["order"]
    row = sql_one(
        api_engine,
        "SELECT o.total_amount, o.item_count, o.status, c.email FROM app.orders o"
        " JOIN app.customers c ON c.id = o.customer_id WHERE o.id = :id",
        id=oid,
    )
    assert order["totalAmount"] == f"{row.total_amount:.2f}"
    assert order["itemCount"] == row.item_count
    assert order["status"] == row.status.upper()
    assert order["customer"]["email"] == row.email
    assert order["orderedAt"].endswith("+00:00")
    lines = sql_ids(api_engine, "SELECT line_no FROM app.order_items WHERE order_id = :id"
                    " ORDER BY line_no", id=oid)  # fmt: skip
    assert [i["lineNo"] for i in order["items"]] == lines
    for item in order["items"]:
        assert item["lineTotal"] == f"{item['quantity'] * float(item['unitPrice']):.2f}"
    assert order["statusHistory"][0] == {"fromStatus": None, "toStatus": "PENDING"}


def test_unknown_or_bad_ids(gql: Gql, shop: Shop) -> None:
    body = gql("{ customer(id: 999999999) { id } order(id: 424242424) { id } }")
    assert body == {"data": {"customer": None, "order": None}}
    bad = gql('{ customer(id: "abc") { id } }')  # refused before anything runs (HTTP 400)
    assert codes(bad) == ["BAD_USER_INPUT"]
    assert bad["data"] is None


def test_one_statement_whatever_the_shape_or_the_data(
    gql: Gql, shop: Shop, statements: StatementLog
) -> None:
    counts = []
    for c, o in ((100, 10), (2, 1), (100, 500)):
        statements.clear()
        data(gql(NESTED, {"c": c, "o": o}))
        counts.append(len(statements.reads))
    # customers, their orders and totals, the lines with their products: one statement
    assert counts == [1, 1, 1], statements.reads


def test_the_issue_query_is_one_statement(gql: Gql, shop: Shop, statements: StatementLog) -> None:
    statements.clear()
    data(
        gql(
            "{ customers(first: 100) { edges { node { orders(first: 10) { edges { node {"
            " items { product { sku } } } } } } } } }"
        )
    )
    assert len(statements.reads) == 1, statements.reads


def test_summary_matches_sql(gql: Gql, shop: Shop, api_engine: Engine) -> None:
    body = data(
        gql(
            "{ customers { edges { node { id summary { orderCount lifetimeValue"
            " averageOrderValue lastOrderAt averageRating } } } } }"
        )
    )
    for cust in nodes(body["customers"]):
        row = sql_one(
            api_engine,
            "SELECT count(*) FILTER (WHERE status <> 'cancelled') AS n,"
            " count(*) FILTER (WHERE status = 'paid') AS paid,"
            " coalesce(sum(total_amount) FILTER (WHERE status = 'paid'), 0) AS ltv,"
            " max(ordered_at) FILTER (WHERE status <> 'cancelled') AS last_at"
            " FROM app.orders WHERE customer_id = :c",
            c=int(cust["id"]),
        )
        s = cust["summary"]
        assert s["orderCount"] == row.n
        assert s["lifetimeValue"] == f"{row.ltv:.2f}"
        if row.paid:  # only paid orders (no refunds in this shop) count as revenue
            assert s["averageOrderValue"] == f"{row.ltv / row.paid:.2f}"
        else:
            assert s["averageOrderValue"] is None
        assert s["lastOrderAt"] == (row.last_at and row.last_at.isoformat())
