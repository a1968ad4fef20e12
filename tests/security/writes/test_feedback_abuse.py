"""Feedback is the shop's evidence about its products (the cube's averageRating and
complaintCount, the dashboard, the models' inputs): a customer key reviews only what it
bought and received, once per product, names only its own orders and their products, and
gives at most 20 feedback a day. A probe once wrote all of these, and 599 ten-thousand-
character complaints about one product in ten seconds (its averageRating fell to 1.02)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.api.conftest import Shop
from tests.security.conftest import bearer, make_app, post, token

SUBMIT = """mutation ($i: SubmitFeedbackInput!) { submitFeedback(input: $i) { id kind } }"""


@pytest.fixture(scope="module")
def client(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    with make_app(sec_engine, production=True) as c:
        yield c


@pytest.fixture
def buyer(sec_engine: Engine, sec_shop: Shop) -> tuple[int, int, int, int]:
    """A new customer with one delivered order of one product and one pending order of
    another: (customer, delivered order, its product, pending order)."""
    with sec_engine.begin() as conn:
        customer = conn.execute(
            sa.text(
                "INSERT INTO app.customers (email, first_name, last_name, country, region, city)"
                " VALUES ('fb' || gen_random_uuid() || '@example.com', 'F', 'B', 'DE', 'R', 'C')"
                " RETURNING id"
            )
        ).scalar_one()

        def order(product: int) -> int:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT app.place_order(:c, jsonb_build_array(jsonb_build_object("
                        "'product_id', CAST(:p AS bigint), 'quantity', 1)), 'web', 'card')"
                    ),
                    {"c": customer, "p": product},
                ).scalar_one()
            )

        delivered, pending = order(sec_shop.products[0]), order(sec_shop.products[1])
        for step in ("paid", "shipped", "delivered"):
            status = sa.text("SELECT app.set_order_status(:o, :s)")
            conn.execute(status, {"o": delivered, "s": step})
    return int(customer), delivered, sec_shop.products[0], pending


def _count(engine: Engine, customer: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM app.feedback WHERE customer_id = :c"), {"c": customer}
            ).scalar_one()
        )


def _refusal(body: dict[str, Any]) -> dict[str, Any]:
    assert body["data"] is None, body
    ext: dict[str, Any] = body["errors"][0]["extensions"]
    return ext


def test_a_customer_reviews_only_what_it_bought_and_received(
    client: Any, sec_engine: Engine, sec_shop: Shop, buyer: tuple[int, int, int, int]
) -> None:
    customer, delivered, product, pending = buyer
    tok = token("customer", customer)
    never_bought = str(sec_shop.products[4])
    for given, field, code in [
        ({"orderId": str(pending)}, "productId", "BAD_USER_INPUT"),  # a review rates a product
        ({"orderId": str(pending), "productId": str(sec_shop.products[1])}, "orderId",
         "BAD_USER_INPUT"),  # its own pending order
        ({"productId": never_bought}, "productId", "BAD_USER_INPUT"),  # never bought
        ({"orderId": str(delivered), "productId": never_bought}, "productId",
         "BAD_USER_INPUT"),  # not in that order
    ]:  # fmt: skip
        status, body = post(
            client, tok, SUBMIT, {"i": {"customerId": str(customer), "rating": 1, **given}}
        )
        ext = _refusal(body)
        assert (status, ext["code"], ext.get("field")) == (400, code, field), body
    assert _count(sec_engine, customer) == 0

    review = {"customerId": str(customer), "productId": str(product), "rating": 5}
    status, body = post(client, tok, SUBMIT, {"i": review})
    assert status == 200 and "errors" not in body, body
    first = body["data"]["submitFeedback"]["id"]
    status, body = post(client, tok, SUBMIT, {"i": {**review, "rating": 1}})  # a second one
    ext = _refusal(body)
    assert (ext["code"], ext["field"], ext["reason"], str(ext["id"])) == (
        "CONFLICT", "productId", "already reviewed", first,
    ), body  # fmt: skip
    assert _count(sec_engine, customer) == 1


def test_a_complaint_loop_stops_at_20_a_day(
    client: Any, sec_engine: Engine, sec_shop: Shop, buyer: tuple[int, int, int, int]
) -> None:
    customer, _, product, _ = buyer
    tok = token("customer", customer)
    complaint = {"customerId": str(customer), "productId": str(product), "kind": "COMPLAINT",
                 "rating": 1, "comment": "x" * 10_000}  # fmt: skip
    status, body = post(
        client, tok, SUBMIT, {"i": {**complaint, "productId": str(sec_shop.products[4])}}
    )
    assert _refusal(body)["field"] == "productId", body  # a product it never ordered
    for _ in range(20):
        status, body = post(client, tok, SUBMIT, {"i": complaint})
        assert status == 200 and "errors" not in body, body
    resp = client.post(
        "/graphql", json={"query": SUBMIT, "variables": {"i": complaint}}, headers=bearer(tok)
    )
    ext = _refusal(resp.json())
    assert (resp.status_code, ext["code"], ext["field"], ext["max"]) == (
        429, "RATE_LIMITED", "customerId", 20,
    ), resp.text  # fmt: skip
    assert 86_000 < ext["retryAfter"] <= 86_400
    assert resp.headers["Retry-After"] == str(ext["retryAfter"])
    assert _count(sec_engine, customer) == 20
    # the shop's admin may still write down a complaint it took by phone
    status, body = post(client, token("admin"), SUBMIT, {"i": {**complaint, "comment": "call"}})
    assert status == 200 and "errors" not in body, body


EDIT = """mutation ($id: ID!, $i: UpdateFeedbackInput!) {
  updateFeedback(id: $id, input: $i) { id kind rating comment product { id } } }"""


def _row(engine: Engine, feedback: str) -> tuple[Any, ...]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.text("SELECT kind, product_id, rating, comment FROM app.feedback WHERE id = :i"),
                {"i": int(feedback)},
            ).one()
        )


def test_a_customer_edits_its_own_review_and_nobody_elses(
    client: Any, sec_engine: Engine, sec_shop: Shop, buyer: tuple[int, int, int, int]
) -> None:
    """One review per product is the rule (CONFLICT on a second): the customer changes the
    one it gave instead; what it is about stays, another customer's is not found."""
    customer, _, product, _ = buyer
    tok = token("customer", customer)
    review = {"customerId": str(customer), "productId": str(product), "rating": 5}
    status, body = post(client, tok, SUBMIT, {"i": review})
    assert status == 200 and "errors" not in body, body
    mine = body["data"]["submitFeedback"]["id"]

    status, body = post(client, tok, EDIT, {"id": mine, "i": {"rating": 2, "comment": "broke"}})
    assert status == 200 and "errors" not in body, body
    assert body["data"]["updateFeedback"] == {
        "id": mine, "kind": "REVIEW", "rating": 2, "comment": "broke",
        "product": {"id": str(product)},
    }  # fmt: skip
    assert _row(sec_engine, mine) == ("review", product, 2, "broke")

    other = token("customer", sec_shop.customers[3])
    for who, variables, code, http in [
        (other, {"id": mine, "i": {"rating": 1}}, "NOT_FOUND", 404),  # another's
        (token("analyst"), {"id": mine, "i": {"rating": 1}}, "FORBIDDEN", 403),
        (token("service"), {"id": mine, "i": {"rating": 1}}, "FORBIDDEN", 403),
        (tok, {"id": mine, "i": {"rating": 9}}, "BAD_USER_INPUT", 400),
        (tok, {"id": mine, "i": {"rating": None}}, "BAD_USER_INPUT", 400),
        (tok, {"id": mine, "i": {}}, "BAD_USER_INPUT", 400),
        (tok, {"id": mine, "i": {"kind": "COMPLAINT"}}, "BAD_USER_INPUT", 400),  # no such field
        (tok, {"id": "99999999", "i": {"rating": 1}}, "NOT_FOUND", 404),
    ]:
        status, body = post(client, who, EDIT, variables)
        ext = _refusal(body)
        assert (status, ext["code"]) == (http, code), (variables, body)
    assert _row(sec_engine, mine) == ("review", product, 2, "broke")

    # the shop's admin may correct any (a typo a customer asked about by phone)
    status, body = post(client, token("admin"), EDIT, {"id": mine, "i": {"comment": None}})
    assert status == 200 and body["data"]["updateFeedback"]["comment"] is None, body
