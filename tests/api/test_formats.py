"""The formats of the API's values are PostgreSQL's (docs/api.md, "Formats"): pinned here
value by value, on rows written for the purpose."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import make_engine
from tests.api.conftest import TestClient, make_client
from tests.api.helpers import data, post


@pytest.fixture(scope="module")
def client(clone_database: Callable[[str], str]) -> Iterator[TestClient]:
    engine: Engine = make_engine(clone_database("formats"))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO app.customers (id, email, first_name, last_name, gender, birth_date,"
                " segment, country, region, city, signup_at) VALUES (7, 'k@example.com',"
                " 'Jürgen', 'O''Brien \"the\" \\ 1st', 'male', '1990-04-01', 'home_office',"
                " 'DE', 'NRW', 'Köln', '2025-03-01 12:00:00.5+01')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO app.products (id, sku, name, category, subcategory, brand,"
                " unit_price, cost, stock) VALUES (3, 'F-1', 'Widget', 'tools', 'sub', 'acme',"
                " 10.10, 5, 100), (4, 'F-2', 'Gadget', 'tools', 'sub', 'acme', 10.11, 5, 100)"
            )
        )
        for i, at in enumerate(("2025-03-02 00:00:00+00", "2025-03-03 08:30:15.123456+00")):
            conn.execute(
                sa.text(
                    "INSERT INTO app.orders (id, customer_id, channel, payment_method,"
                    " ordered_at) VALUES (:id, 7, 'web', 'card', :at)"
                ),
                {"id": 40 + i, "at": at},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO app.order_items (order_id, line_no, product_id, quantity,"
                    " unit_price) VALUES (:o, 1, 3, :q, 10.10)"
                ),
                {"o": 40 + i, "q": 1 + i},
            )
        conn.execute(sa.text("INSERT INTO app.feedback (customer_id, rating) VALUES (7, 4)"))
    with make_client(engine) as c:
        yield c


def test_each_kind_is_written_as_postgresql_writes_it(client: TestClient) -> None:
    body = data(
        post(
            client,
            """{ customer(id: 7) { id firstName lastName gender birthDate segment city signupAt
                 summary { orderCount returnRate }
                 orders(first: 2, orderBy: [{orderedAt: ASC}]) { totalCount
                   aggregate { sum { totalAmount itemCount } avg { totalAmount itemCount } }
                   edges { cursor node { id orderedAt totalAmount items { quantity unitPrice
                     lineTotal } } } } } }""",
            None,
        )
    )
    c = body["customer"]
    assert c["id"] == "7"  # ID: a string
    assert c["firstName"] == "Jürgen" and c["city"] == "Köln"  # text as stored
    assert c["lastName"] == 'O\'Brien "the" \\ 1st'
    assert c["gender"] == "MALE" and c["segment"] == "HOME_OFFICE"  # enums: upper case
    assert c["birthDate"] == "1990-04-01"  # Date
    assert c["signupAt"] == "2025-03-01T11:00:00.5+00:00"  # UTC, fraction without zeros
    assert c["summary"] == {"orderCount": 2, "returnRate": None}  # Int, null
    orders = c["orders"]
    assert orders["totalCount"] == 2
    assert orders["aggregate"] == {
        "sum": {"totalAmount": "30.30", "itemCount": 3},  # money sum, Int sum
        "avg": {"totalAmount": "15.15", "itemCount": "1.50"},  # computed: two decimals
    }
    first, second = (e["node"] for e in orders["edges"])
    assert first["orderedAt"] == "2025-03-02T00:00:00+00:00"  # no fraction when there is none
    assert second["orderedAt"] == "2025-03-03T08:30:15.123456+00:00"
    assert first["totalAmount"] == "10.10" and first["items"] == [
        {"quantity": 1, "unitPrice": "10.10", "lineTotal": "10.10"}
    ]
    cursor = orders["edges"][1]["cursor"]
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert raw == ["orderedAt:asc,id:asc", "2025-03-03T08:30:15.123456+00:00", 41]


def test_averages_round_half_away_from_zero(client: TestClient) -> None:
    query = '{ products(filter: {id: {in: ["3", "4"]}}) { aggregate { avg { unitPrice } } } }'
    body = data(post(client, query, None))
    # (10.10 + 10.11) / 2 = 10.105: PostgreSQL's round() gives 10.11 (half to even: 10.10)
    assert body["products"]["aggregate"]["avg"]["unitPrice"] == "10.11"


def test_strawberry_paths_write_the_same_formats(client: TestClient) -> None:
    """A mutation's payload and a query mixing a relational root with a resolver root run
    on Strawberry: their values are written as a plain read writes them (a Date, a Float
    without a fraction: 4, not 4.0)."""
    selection = "{ id gender birthDate segment signupAt summary { orderCount averageRating } }"

    def answer(query: str, key: str) -> object:
        resp = client.post("/graphql", json={"query": query})
        assert resp.status_code == 200, resp.text
        # numbers as written: 4 and 4.0 are the same Python number
        return json.loads(resp.text, parse_int=str, parse_float=str)["data"][key]

    plain = answer("{ customer(id: 7) " + selection + " }", "customer")
    assert plain["birthDate"] == "1990-04-01"  # type: ignore[index]
    assert plain["summary"]["averageRating"] == "4"  # type: ignore[index]
    assert answer("{ customer(id: 7) " + selection + " models { name } }", "customer") == plain
    update = 'mutation { updateCustomer(id: "7", input: {region: "NRW"}) ' + selection + " }"
    assert answer(update, "updateCustomer") == plain


def test_an_aggregate_of_more_than_fifty_keys_is_one_object(
    clone_database: Callable[[str], str],
) -> None:
    """PostgreSQL's json_build_object takes at most 100 arguments: an object of more than 50
    keys is built in parts, and an aggregate's (a deployment allowing more aliases than the
    default) went through a str.format that its braces broke (a bare 500)."""
    engine = make_engine(clone_database("formats_wide"))
    fields = " ".join(f"n{i}: count" for i in range(60))
    with make_client(engine, max_aliases=100) as c:
        body = data(post(c, "{ products { aggregate { " + fields + " } } }", None))
    assert body["products"]["aggregate"] == {f"n{i}": 0 for i in range(60)}
    engine.dispose()
