"""Feedback is the shop's evidence about its products (the cube's averageRating and
complaintCount, the dashboard, the models' inputs): a customer key reviews only what it
bought and received, once per product, names only its own orders and their products,
gives at most 20 feedback a day and edits them at most 20 times a day. A probe once wrote
all of these, and 599 ten-thousand-character complaints about one product in ten seconds
(its averageRating fell to 1.02)."""

from __future__ import annotations

import threading
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

    first = _review(client, tok, customer, product)
    second = {"customerId": str(customer), "productId": str(product), "rating": 1}
    status, body = post(client, tok, SUBMIT, {"i": second})  # a second one
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


def _review(client: Any, who: str, customer: int, product: int) -> str:
    """The id of the 5-star review ``who`` gives ``product`` for ``customer``."""
    review = {"customerId": str(customer), "productId": str(product), "rating": 5}
    status, body = post(client, who, SUBMIT, {"i": review})
    assert status == 200 and "errors" not in body, body
    return str(body["data"]["submitFeedback"]["id"])


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
    mine = _review(client, tok, customer, product)

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


def _edits(engine: Engine, customer: int) -> list[float]:
    """Ages in seconds of the edits app.feedback_edits holds for ``customer`` (as the
    owner)."""
    with engine.connect() as conn:
        return [
            float(r[0])
            for r in conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM now() - edited_at) FROM app.feedback_edits"
                    " WHERE customer_id = :c ORDER BY edited_at"
                ),
                {"c": customer},
            )
        ]


def _age_edits(engine: Engine, customer: int, hours: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE app.feedback_edits SET edited_at = edited_at - make_interval(hours => :h)"
                " WHERE customer_id = :c"
            ),
            {"c": customer, "h": hours},
        )


def test_a_customer_key_edits_its_feedback_20_times_a_day(
    client: Any, sec_engine: Engine, api_key: Any, buyer: tuple[int, int, int, int]
) -> None:
    """updateFeedback rewrote a 10,000-character comment as often as the request rate let
    it (50 a second in production: tens of GB of WAL a day per key, a dead row and a
    pipeline wake-up each), the loop 0028 closed for new feedback: a customer principal
    edits its feedback at most 20 times in a rolling 24 hours (migration 0033)."""
    customer, _, product, _ = buyer
    key = api_key("customer", customer)
    mine = _review(client, key, customer, product)
    with sec_engine.begin() as conn:  # a day ago and more: out of the window, pruned
        conn.execute(
            sa.text(
                "INSERT INTO app.feedback_edits (customer_id, edited_at)"
                " SELECT :c, now() - interval '24 hours' - make_interval(mins => g)"
                " FROM generate_series(1, 30) AS g"
            ),
            {"c": customer},
        )

    for n in range(20):
        comment = str(n % 10) * 10_000
        status, body = post(client, key, EDIT, {"id": mine, "i": {"rating": 1, "comment": comment}})
        assert status == 200 and "errors" not in body, (n, body)
    assert _row(sec_engine, mine) == ("review", product, 1, "9" * 10_000)
    assert len(ages := _edits(sec_engine, customer)) == 20 and max(ages) < 600, ages

    edit = {"id": mine, "i": {"rating": 2, "comment": "y" * 10_000}}
    resp = client.post("/graphql", json={"query": EDIT, "variables": edit}, headers=bearer(key))
    ext = _refusal(resp.json())
    assert (resp.status_code, ext["code"], ext["field"], ext["reason"], ext["max"]) == (
        429, "RATE_LIMITED", "id", "daily limit", 20,
    ), resp.text  # fmt: skip
    assert 86_000 < ext["retryAfter"] <= 86_400
    assert resp.headers["Retry-After"] == str(ext["retryAfter"])
    # the customer's token is the same customer
    status, body = post(client, token("customer", customer), EDIT, edit)
    assert (status, _refusal(body)["code"]) == (429, "RATE_LIMITED"), body
    assert _row(sec_engine, mine) == ("review", product, 1, "9" * 10_000)  # unchanged
    assert len(_edits(sec_engine, customer)) == 20  # a refusal is not counted

    # the shop's admin is not bound, nor counted
    for n in range(25):
        status, body = post(client, token("admin"), EDIT, {"id": mine, "i": {"rating": 1 + n % 5}})
        assert status == 200 and "errors" not in body, (n, body)
    assert len(_edits(sec_engine, customer)) == 20

    # a rolling window: 23 hours on, the next is an hour away; a day on, it is taken
    _age_edits(sec_engine, customer, 23)
    status, body = post(client, key, EDIT, edit)
    assert 3_000 < _refusal(body)["retryAfter"] <= 3_600, body
    _age_edits(sec_engine, customer, 2)
    status, body = post(client, key, EDIT, edit)
    assert status == 200 and body["data"]["updateFeedback"]["rating"] == 2, body
    assert len(ages := _edits(sec_engine, customer)) == 1 and ages[0] < 600, ages


def test_concurrent_edits_never_pass_the_cap(
    client: Any, sec_engine: Engine, api_key: Any, buyer: tuple[int, int, int, int]
) -> None:
    """30 edits of 30 feedback at once (each its own row: no row lock orders them): the
    count and the write are one step under a per-customer lock, so exactly 20 pass."""
    customer = buyer[0]
    with sec_engine.begin() as conn:  # the owner writes what it likes
        ids = [
            str(r[0])
            for r in conn.execute(
                sa.text(
                    "INSERT INTO app.feedback (customer_id, kind, rating, comment)"
                    " SELECT :c, 'complaint', 1, 'late' FROM generate_series(1, 30)"
                    " RETURNING id"
                ),
                {"c": customer},
            )
        ]
    key = api_key("customer", customer)
    start = threading.Barrier(len(ids))
    answers: list[tuple[int, str]] = []

    def edit(feedback: str) -> None:
        start.wait(30)
        status, body = post(client, key, EDIT, {"id": feedback, "i": {"comment": "z" * 10_000}})
        errors = body.get("errors") or [{"extensions": {"code": "OK"}}]
        answers.append((status, errors[0]["extensions"]["code"]))

    workers = [threading.Thread(target=edit, args=(f,)) for f in ids]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert sorted(answers) == [(200, "OK")] * 20 + [(429, "RATE_LIMITED")] * 10, answers
    with sec_engine.connect() as conn:
        changed = conn.execute(
            sa.text(
                "SELECT count(*) FROM app.feedback WHERE customer_id = :c AND comment <> 'late'"
            ),
            {"c": customer},
        ).scalar_one()
    assert changed == 20
    assert len(_edits(sec_engine, customer)) == 20


def test_no_api_role_reads_or_writes_the_edit_log(
    sec_engine: Engine, buyer: tuple[int, int, int, int]
) -> None:
    """app.feedback_edits is written by its trigger only (SECURITY DEFINER): a customer
    that could delete its rows would edit without a bound, and read them another's."""
    customer = buyer[0]
    statements = [
        "SELECT count(*) FROM app.feedback_edits",
        "INSERT INTO app.feedback_edits (customer_id, edited_at) VALUES (:c, now())",
        "UPDATE app.feedback_edits SET edited_at = now() - interval '2 days'"
        " WHERE customer_id = :c",
        "DELETE FROM app.feedback_edits WHERE customer_id = :c",
        "TRUNCATE app.feedback_edits",
    ]
    for db_role, role in (("cdms_customer", "customer"), ("cdms_api", "admin")):
        with sec_engine.connect() as conn, conn.begin():
            conn.execute(
                sa.text(
                    "SELECT set_config('role', :r, true), set_config('cdms.role', :p, true),"
                    " set_config('cdms.customer_id', :c, true)"
                ),
                {"r": db_role, "p": role, "c": str(customer)},
            )
            for sql in statements:
                conn.execute(sa.text("SAVEPOINT s"))
                with pytest.raises(sa.exc.DBAPIError) as exc:
                    conn.execute(sa.text(sql), {"c": customer})
                assert exc.value.orig.sqlstate == "42501", (db_role, sql)  # type: ignore[union-attr]
                conn.execute(sa.text("ROLLBACK TO SAVEPOINT s"))
    with sec_engine.connect() as conn:
        granted = conn.execute(
            sa.text(
                "SELECT a.grantee::regrole::text, a.privilege_type"
                " FROM pg_class AS c, aclexplode(c.relacl) AS a"
                " WHERE c.oid = 'app.feedback_edits'::regclass"
                " AND a.grantee::regrole::text IN ('cdms_api', 'cdms_customer', '-')"
            )
        ).all()
    assert granted == []
