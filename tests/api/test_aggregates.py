"""totalCount and aggregates agree with SQL, at the root and per parent."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.engine import Engine

from tests.api.conftest import Gql, Shop
from tests.api.helpers import data, nodes, sql_one

AGG = """
aggregate {
  count
  sum { totalAmount itemCount }
  avg { totalAmount itemCount }
  min { totalAmount orderedAt }
  max { totalAmount orderedAt }
}"""


def _money(v: Decimal | None) -> str | None:
    return None if v is None else f"{v.quantize(Decimal('0.01'))}"


def _check(agg: dict[str, object], row: object) -> None:
    assert agg["count"] == row.n  # type: ignore[attr-defined]
    assert agg["sum"] == {"totalAmount": _money(row.s), "itemCount": row.items}  # type: ignore[attr-defined]
    assert agg["avg"]["totalAmount"] == _money(row.a)  # type: ignore[index, attr-defined]
    assert agg["min"]["totalAmount"] == _money(row.mn)  # type: ignore[index, attr-defined]
    assert agg["max"]["totalAmount"] == _money(row.mx)  # type: ignore[index, attr-defined]


SQL = (
    "SELECT count(*) AS n, sum(total_amount) AS s, sum(item_count) AS items,"
    " avg(total_amount) AS a, min(total_amount) AS mn, max(total_amount) AS mx,"
    " min(ordered_at) AS first_at FROM app.orders WHERE "
)


def test_root_aggregates_follow_the_filter(gql: Gql, shop: Shop, api_engine: Engine) -> None:
    body = data(
        gql("{ orders(filter: {status: {ne: CANCELLED}}, first: 1) { totalCount " + AGG + " } }")
    )
    row = sql_one(api_engine, SQL + "status <> 'cancelled'")
    assert body["orders"]["totalCount"] == row.n
    _check(body["orders"]["aggregate"], row)
    assert body["orders"]["aggregate"]["min"]["orderedAt"] == row.first_at.isoformat()


def test_per_parent_aggregates(gql: Gql, shop: Shop, api_engine: Engine) -> None:
    body = data(gql("{ customers { edges { node { id orders(first: 1) { totalCount " + AGG
                    + " } } } } }"))  # fmt: skip
    for cust in nodes(body["customers"]):
        row = sql_one(api_engine, SQL + "customer_id = :c", c=int(cust["id"]))
        assert cust["orders"]["totalCount"] == row.n
        _check(cust["orders"]["aggregate"], row)


def test_other_entities_have_aggregates(gql: Gql, shop: Shop, api_engine: Engine) -> None:
    body = data(
        gql(
            "{ feedback { totalCount aggregate { avg { rating } max { rating } } }"
            "  products { aggregate { sum { stock } min { unitPrice } } }"
            "  customers { aggregate { min { signupAt } } } }"
        )
    )
    row = sql_one(api_engine, "SELECT count(*) AS n, avg(rating) AS a, max(rating) AS mx"
                  " FROM app.feedback")  # fmt: skip
    assert body["feedback"]["totalCount"] == row.n
    assert body["feedback"]["aggregate"]["avg"]["rating"] == _money(row.a)
    assert body["feedback"]["aggregate"]["max"]["rating"] == row.mx
    prow = sql_one(api_engine, "SELECT sum(stock) AS s, min(unit_price) AS m FROM app.products")
    assert body["products"]["aggregate"] == {
        "sum": {"stock": prow.s},
        "min": {"unitPrice": _money(prow.m)},
    }
