"""What an error tells a client: the shop's words, never PostgreSQL's (no table, column
or constraint names, no SQL), no field-name suggestions while introspection is off, no
cube SQL in production unless the operator turns it on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.errors import from_db_error
from tests.api.conftest import Shop
from tests.security.conftest import Parties, bearer, make_app, post, token
from tests.security.test_rls import as_principal

RAW = re.compile(
    r"duplicate key|violates|constraint|relation |table |permission denied|_fkey|_key\b|_check"
    r"|\bapp\.|\bml\.|\bdw\.|SQLSTATE|DETAIL",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def client(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    with make_app(sec_engine, production=True) as c:
        yield c


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    import json

    text = json.dumps(body["errors"])
    assert not RAW.search(text), text
    return body["errors"][0]


def test_a_duplicate_email_is_a_conflict_in_the_shops_words(client: Any, parties: Parties) -> None:
    query = """mutation ($e: String!) { createCustomer(input: {email: $e, firstName: "A",
        lastName: "B", country: "DE", region: "R", city: "C"}) { id } }"""
    _, first = post(client, token("admin"), query, {"e": "leak-check@example.com"})
    assert "errors" not in first, first
    _, body = post(client, token("admin"), query, {"e": "leak-check@example.com"})
    error = _clean(body)
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"].get("field") == "email", error


def test_a_missing_reference_is_bad_user_input_in_the_shops_words(
    client: Any, parties: Parties
) -> None:
    query = """mutation ($c: ID!) { submitFeedback(input: {customerId: $c, productId: "987654",
        kind: REVIEW, rating: 4}) { id } }"""
    _, body = post(client, token("admin"), query, {"c": str(parties.a)})
    error = _clean(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"].get("field") == "productId", error


def test_a_check_violation_names_the_field_not_the_constraint(client: Any) -> None:
    query = """mutation { createProduct(input: {sku: "LEAK-1", name: "x", category: "c",
        subcategory: "s", brand: "b", unitPrice: "-1", cost: "1", stock: 1}) { id } }"""
    _, body = post(client, token("admin"), query)
    error = _clean(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error


def test_permission_denied_is_forbidden_without_the_table(
    sec_engine: Engine, parties: Parties
) -> None:
    with (
        as_principal(sec_engine, "customer", parties.a) as conn,
        pytest.raises(sa.exc.DBAPIError) as exc,
    ):
        conn.execute(sa.text("SELECT * FROM ml.model_version"))
    mapped = from_db_error(exc.value)
    assert mapped is not None and mapped.code == "FORBIDDEN"
    assert not RAW.search(mapped.message) and not RAW.search(str(mapped.fields)), mapped.message


@pytest.mark.parametrize(
    "query",
    [
        '{ product(id: "1") { nam } }',
        "{ orders(filter: {status: {eq: PAID_}}) { totalCount } }",
        "{ custmers { totalCount } }",
    ],
)
def test_no_suggestions_in_production(client: Any, parties: Parties, query: str) -> None:
    for tok in (token("customer", parties.a), token("analyst")):
        status, body = post(client, tok, query)
        assert status == 400, body
        message = body["errors"][0]["message"]
        assert "Did you mean" not in message, message
    # admins (who may introspect) keep the help
    _, body = post(client, token("admin"), query)
    assert "Did you mean" in body["errors"][0]["message"], body


def test_variables_get_no_suggestions_in_production(client: Any) -> None:
    query = "query ($s: OrderStatus!) { orders(filter: {status: {eq: $s}}) { totalCount } }"
    status, body = post(client, token("analyst"), query, {"s": "PAID_"})
    assert status == 400 and "Did you mean" not in body["errors"][0]["message"], body


CUBE = "{ cube { sales { orderCount } } }"


def _cube_report(client: Any) -> dict[str, Any]:
    _, body = post(client, token("analyst"), CUBE)
    assert "errors" not in body, body
    report: dict[str, Any] = body["extensions"]["cube"][0]
    return report


def test_cube_sql_is_not_shown_in_production(
    client: Any, sec_engine: Engine, sec_shop: Shop
) -> None:
    report = _cube_report(client)
    assert "sql" not in report and "params" not in report, report
    with make_app(sec_engine, production=True, cube_sql=True) as c:
        assert "sql" in _cube_report(c)
    with make_app(sec_engine) as c:  # development: shown by default
        assert "sql" in _cube_report(c)


# --- the database's write guards, reached with the request checks forgotten ---------------
# Layer 2 refuses these before anything runs; the triggers of 0006/0009 are the floor under
# it, and what they say reaches a client through the same mapping: the entity's GraphQL
# type, never its table, and values as the API spells them.

TABLES = re.compile(
    r"\b(customers|products|orders|order_items|order_status_history|returns|support_tickets)\b"
)
CREATE_CUSTOMER = """mutation { createCustomer(input: {email: "guard@example.com",
    firstName: "A", lastName: "B", country: "DE", region: "R", city: "C"}) { id } }"""
UPDATE_PRODUCT = """mutation ($p: ID!) { updateProduct(id: $p, input: {name: "free"}) { id } }"""
SET_STATUS = """mutation ($o: ID!) { setOrderStatus(orderId: $o, status: PAID) { id } }"""


def _pending_order(engine: Engine, customer: int) -> int:
    with engine.begin() as conn:
        oid = conn.execute(
            sa.text(
                "SELECT app.place_order(:c, jsonb_build_array(jsonb_build_object("
                "'product_id', (SELECT min(id) FROM app.products), 'quantity', 1)),"
                " 'web', 'card')"
            ),
            {"c": customer},
        ).scalar_one()
    return int(oid)


@pytest.fixture(scope="module")
def unchecked(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    from tests.security.test_isolation import _no_checks

    with make_app(sec_engine, production=True, access=_no_checks()) as c:
        yield c


def _guarded(body: dict[str, Any]) -> dict[str, Any]:
    """The one FORBIDDEN error of a write a guard refused, checked for database words."""
    import json

    assert body["data"] is None and len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    text = json.dumps(error)
    assert not RAW.search(text) and not TABLES.search(text), text
    assert "table" not in error["extensions"], error
    assert error["extensions"]["code"] == "FORBIDDEN", error
    return error


def test_an_analysts_write_is_refused_naming_the_type_not_the_table(unchecked: Any) -> None:
    status, body = post(unchecked, token("analyst"), CREATE_CUSTOMER)
    error = _guarded(body)
    assert status == 403
    assert error["extensions"] == {
        "code": "FORBIDDEN",
        "reason": "read_only_role",
        "role": "analyst",
        "entity": "Customer",
    }
    assert error["message"] == "role analyst may not write (insert on Customer)"


def test_a_field_the_role_may_not_change_is_refused_naming_the_type(
    unchecked: Any, sec_shop: Shop
) -> None:
    status, body = post(
        unchecked, token("service"), UPDATE_PRODUCT, {"p": str(sec_shop.products[0])}
    )
    error = _guarded(body)
    assert status == 403
    assert error["extensions"] == {
        "code": "FORBIDDEN",
        "reason": "field_not_writable",
        "role": "service",
        "entity": "Product",
    }
    assert error["message"] == "role service may not change these fields of Product"


def test_a_customer_setting_a_status_hears_it_as_the_enum_value(
    unchecked: Any, sec_engine: Engine, parties: Parties
) -> None:
    oid = str(_pending_order(sec_engine, parties.a))
    status, body = post(unchecked, token("customer", parties.a), SET_STATUS, {"o": oid})
    error = _guarded(body)
    assert status == 403
    assert error["extensions"] == {
        "code": "FORBIDDEN",
        "reason": "customer_may_only_cancel",
        "role": "customer",
        "entity": "Order",
        "id": oid,
        "to": "PAID",
    }
    assert error["message"] == "a customer may only cancel an order, not set it PAID"
    with sec_engine.connect() as conn:
        got = conn.execute(sa.text("SELECT status FROM app.orders WHERE id = :o"), {"o": int(oid)})
        assert got.scalar_one() == "pending"


def test_a_guards_refusal_over_a_websocket_names_the_type(unchecked: Any) -> None:
    with unchecked.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"], headers=bearer(token("analyst"))
    ) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": CREATE_CUSTOMER}})
        msg = ws.receive_json()
    assert msg["type"] == "next", msg
    error = _guarded(msg["payload"])
    assert error["extensions"]["entity"] == "Customer", error
    assert error["message"] == "role analyst may not write (insert on Customer)"
