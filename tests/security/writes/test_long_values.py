"""A value too long for an index of the shop (PostgreSQL's btree holds entries of at most
2,704 bytes: SQLSTATE 54000, program_limit_exceeded) is the client's input, not a server
failure: BAD_USER_INPUT, HTTP 400, in the shop's words, nothing written. Before, an
admin's ``createCustomer`` with a 300 KB ``lastName`` (indexed by ``lower(last_name)``),
``email`` or ``city``, or ``createProduct`` with a long ``name``, was ``INTERNAL``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.api.conftest import Shop
from tests.security.conftest import make_app, post, token

LONG = "x" * 300_000

CUSTOMER = (
    "mutation ($email: String!, $last: String!, $city: String!) { createCustomer(input:"
    ' {email: $email, firstName: "a", lastName: $last, country: "DE", region: "r",'
    " city: $city}) { id } }"
)
PRODUCT = (
    'mutation ($name: String!) { createProduct(input: {sku: "LONG-1", name: $name,'
    ' category: "c", subcategory: "s", brand: "b", unitPrice: "1.00", cost: "0.50"}) { id } }'
)

CASES: dict[str, tuple[str, dict[str, str], str]] = {
    "a customer's last name": (
        CUSTOMER, {"email": "long1@example.com", "last": LONG, "city": "c"}, "customers"
    ),
    "a customer's email": (
        CUSTOMER, {"email": LONG + "@example.com", "last": "b", "city": "c"}, "customers"
    ),
    "a customer's city": (
        CUSTOMER, {"email": "long2@example.com", "last": "b", "city": LONG}, "customers"
    ),
    "a product's name": (PRODUCT, {"name": LONG}, "products"),
}  # fmt: skip


@pytest.fixture(scope="module")
def client(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    with make_app(sec_engine, production=True) as c:
        yield c


@pytest.mark.parametrize("name", list(CASES))
def test_a_value_too_long_for_an_index_is_bad_user_input(
    client: Any, sec_engine: Engine, name: str
) -> None:
    query, variables, table = CASES[name]
    sql = f"SELECT count(*) FROM app.{table}"
    with sec_engine.connect() as conn:
        before = conn.execute(sa.text(sql)).scalar_one()
    status, body = post(client, token("admin"), query, variables)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", body  # before: INTERNAL
    assert status == 400, body
    assert "index" not in error["message"] and "btree" not in error["message"], error
    with sec_engine.connect() as conn:
        assert conn.execute(sa.text(sql)).scalar_one() == before
