"""Text holding a NUL character (found by the schemathesis run): PostgreSQL text cannot hold
one, so psycopg refuses the value before sending it. In any argument - a filter, a cube
filter, a mutation's input - that is the client's bad input (``BAD_USER_INPUT``), never an
``INTERNAL`` error, and nothing is written."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import make_engine
from db.errors import BadUserInputError, from_db_error
from tests.api.conftest import build_shop, make_client
from tests.api.helpers import body_of

if TYPE_CHECKING:
    from starlette.testclient import TestClient

NUL = "a\x00b"


@pytest.fixture(scope="module")
def nul_client(clone_database: Callable[[str], str]) -> Iterator[tuple[TestClient, Engine]]:
    engine = make_engine(clone_database("nul"))
    with engine.begin() as conn:
        # an empty warehouse, published (a never-loaded one answers WAREHOUSE_LOADING)
        conn.execute(sa.text("UPDATE dw.etl_state SET version = greatest(version, 1)"))
        build_shop(conn)
    with make_client(engine) as client:
        yield client, engine


OPERATIONS = {
    "filter": "query ($s: String!) { customers(filter: {email: {eq: $s}}) { totalCount } }",
    "filter list": "query ($s: String!) { products(filter: {sku: {in: [$s]}}) { totalCount } }",
    "nested filter": (
        "query ($s: String!) { customers(first: 2) { edges { node { id"
        " orders(filter: {customer: {some: {email: {contains: $s}}}}) { totalCount }"
        " } } } }"
    ),
    "cube filter": (
        "query ($s: String!) { cube(where: {customers: {country: {equals: $s}}})"
        " { customers { count } } }"
    ),
    "models": "query ($s: String!) { models(name: $s) { name } }",
    "createCustomer": (
        """mutation ($s: String!) { createCustomer(input: {email: "nul@example.com",
        firstName: "N", lastName: "U", segment: CONSUMER, country: "DE", region: "R",
        city: $s}) { id } }"""
    ),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_nul_in_text_is_bad_user_input(nul_client: tuple[TestClient, Engine], name: str) -> None:
    client, engine = nul_client
    query = OPERATIONS[name]
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM app.customers")).scalar_one()
    body = body_of(client.post("/graphql", json={"query": query, "variables": {"s": NUL}}))
    errors = body.get("errors") or []
    assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], errors
    assert "NUL" in errors[0]["message"], errors
    with engine.connect() as conn:
        after = conn.execute(sa.text("SELECT count(*) FROM app.customers")).scalar_one()
    assert after == before


def test_psycopg_data_errors_map_to_bad_user_input() -> None:
    err = from_db_error(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    assert isinstance(err, BadUserInputError) and "NUL" in err.message
    assert from_db_error(psycopg.ProgrammingError("syntax")) is None  # still unexpected
