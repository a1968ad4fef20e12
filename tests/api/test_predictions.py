"""Prediction fields in reads (schema/sql.py, schema/predictions.py, ml.stored).

On a warehouse like the ML tests' (three models trained and active) whose orders and tickets
are all scored (``ml.stored.refresh``), a prediction query is answered by its one statement
— no feature statement, no model run — for every shape of selection. An object without a
current stored row is computed on request (one feature statement per kind, one model run
per model) and agrees with what was stored; a deactivated model gives MODEL_UNAVAILABLE at
the field's path; the same holds where Strawberry resolves a relational field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.config import DbSettings
from db.engine import make_engine
from ml import stored
from ml.serving import close_store, store_for
from schema import lane
from tests.api.conftest import TestClient, make_client
from tests.api.helpers import lane_prepared, model_runs, post
from tests.ml.conftest import deactivated, shop_warehouse, train_all


@dataclass
class World:
    engine: Engine
    client: TestClient
    statements: list[str]  # through SQLAlchemy and the read lane, session settings aside


@pytest.fixture(scope="module")
def world(clone_database: Callable[[str], str]) -> Iterator[World]:
    engine = make_engine(shop_warehouse(clone_database, "ml_predictions"))
    train_all(engine)
    written = stored.refresh(engine)
    assert written["ml.order_predictions"] > 2 * 5_000 and written["ml.ticket_predictions"] > 0
    store_for(engine)  # the models, loaded before statements are counted
    log: list[str] = []

    def seen(statement: str, *_: Any) -> None:
        if "set_config" not in statement:
            log.append(statement)

    sa.event.listen(engine, "before_cursor_execute", lambda c, cur, s, *a: seen(s))
    undo = lane.observe(seen)
    try:
        with make_client(engine) as client:
            yield World(engine, client, log)
    finally:
        undo()
        close_store(engine)


def answer(w: World, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body, with the statements and model runs it took."""
    w.statements.clear()
    runs = model_runs(w.engine)
    body = post(w.client, query, variables)
    after = model_runs(w.engine)
    body["_statements"] = list(w.statements)
    body["_runs"] = {k: v - runs.get(k, 0) for k, v in after.items() if v != runs.get(k, 0)}
    return body


SELECTIONS = {
    "the usual selection (the stored JSON as it is)": "predictedStatus { label probability }"
    " predictedTotal { value }",
    "aliases and __typename (built from the columns)": "s: predictedStatus { __typename"
    " l: label probability } t: predictedTotal { v: value __typename }",
    "model and probabilities": "predictedStatus { label model { name version __typename }"
    " probabilities { label probability } } predictedTotal { model { version } value }",
    "probabilities reshaped": "predictedStatus { probabilities { p: probability __typename"
    " label } probability }",
}


@pytest.mark.parametrize("name", list(SELECTIONS))
def test_stored_predictions_answer_in_one_statement(world: World, name: str) -> None:
    query = """query($n: Int!) { orders(first: $n, orderBy: [{id: DESC}]) { edges { node { id
        status SEL } } } supportTickets(first: 50) { edges { node { id
        predictedStatus { label probability } } } } }""".replace("SEL", SELECTIONS[name])
    body = answer(world, query, {"n": 500})
    assert "errors" not in body, body["errors"]
    assert len(body["data"]["orders"]["edges"]) == 500
    assert len(body["_statements"]) == 1 and "ml.order_predictions" in body["_statements"][0]
    assert body["_runs"] == {}  # no model ran: every prediction came from the store
    values = [e["node"] for e in body["data"]["orders"]["edges"]]
    assert len({repr(sorted(v.items())) for v in values}) > 50  # real, varied answers


def test_a_page_with_predictions_is_planned_once_not_per_request(world: World) -> None:
    """The page size is in the text, so the prepared statement's generic plan serves every
    run (with a bound LIMIT the join under it looked dear and every request was planned)."""
    query = """query($n: Int!) { orders(first: $n, orderBy: [{id: DESC}]) { edges { node {
        id predictedStatus { label probability } predictedTotal { value } } } } }"""
    for _ in range(6 * DbSettings.from_env().pool_size):  # each pooled connection, 6 times
        assert len(post(world.client, query, {"n": 500})["data"]["orders"]["edges"]) == 500
    plans = [
        (generic, custom)
        for statement, generic, custom in lane_prepared(world.engine)
        if re.search(r"LIMIT 501\b.*ml\.order_predictions", statement, re.S)
    ]
    assert plans, "the statement was not prepared"
    assert all(generic >= 1 and custom == 0 for generic, custom in plans), plans


def _set(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_objects_without_a_current_stored_row_are_computed_as_stored(world: World) -> None:
    engine = world.engine
    query = """{ orders(first: 20, orderBy: [{id: DESC}]) { edges { node { id
        predictedStatus { label probability model { version } } predictedTotal { value } } } } }"""
    stored_answer = answer(world, query)
    assert stored_answer["_runs"] == {}
    with engine.connect() as conn:
        ids = conn.execute(
            sa.text("SELECT id FROM app.orders ORDER BY id DESC LIMIT 20")
        ).scalars().all()  # fmt: skip
    # one order's row is gone, the others carry a version that is not the active one
    _set(engine, "DELETE FROM ml.order_predictions WHERE order_id = :o", o=ids[0])
    _set(
        engine,
        "UPDATE ml.order_predictions SET order_status_version = order_status_version + 100,"
        " order_value_version = order_value_version + 100 WHERE order_id = ANY(:o)",
        o=list(ids[1:]),
    )
    try:
        computed = answer(world, query)
        assert "errors" not in computed, computed["errors"]
        features = [s for s in computed["_statements"] if "ml.order_features" in s]
        assert len(features) == 1  # one feature statement for the 20 orders
        assert computed["_runs"] == {"order_status": 1, "order_value": 1}  # one run per model
        for a, b in zip(
            stored_answer["data"]["orders"]["edges"], computed["data"]["orders"]["edges"],
            strict=True,
        ):  # fmt: skip
            sa_, sb = a["node"]["predictedStatus"], b["node"]["predictedStatus"]
            assert sa_["label"] == sb["label"] and sa_["model"] == sb["model"]
            assert math.isclose(sa_["probability"], sb["probability"], rel_tol=1e-6)
            assert math.isclose(
                a["node"]["predictedTotal"]["value"], b["node"]["predictedTotal"]["value"],
                abs_tol=0.01,
            )  # fmt: skip
    finally:
        assert stored.refresh(engine)["ml.order_predictions"] == 40  # 20 orders, 2 models
    assert answer(world, query)["_runs"] == {}


def test_a_deactivated_model_is_unavailable_at_the_fields_path(world: World) -> None:
    query = """{ orders(first: 3, orderBy: [{id: ASC}]) { edges { node { id
        predictedStatus { label } predictedTotal { value } } } } }"""
    with deactivated(world.engine, "order_status"):
        body = answer(world, query)
        # the same through Strawberry (a resolver root beside the relational one)
        mixed = answer(world, query.replace("{ orders", "{ models { name } orders", 1))
    for got in (body, mixed):
        nodes = [e["node"] for e in got["data"]["orders"]["edges"]]
        assert [n["predictedStatus"] for n in nodes] == [None] * 3
        assert all(n["predictedTotal"]["value"] > 0 for n in nodes)  # still stored
        assert [e["extensions"]["code"] for e in got["errors"]] == ["MODEL_UNAVAILABLE"] * 3
        assert [e["path"] for e in got["errors"]] == [
            ["orders", "edges", i, "node", "predictedStatus"] for i in range(3)
        ]
        assert got["_runs"] == {}


def test_customer_churn_risk_is_stored_and_answers_as_computed_online(world: World) -> None:
    """churn_risk is stored per customer (as of today's cut-off) by the same refresh as the
    other models: a page of customers answers from the store in one statement, with no model
    run, and the answer equals the one computed on request without stored rows."""
    engine = world.engine
    query = """{ customers(first: 100, orderBy: [{id: ASC}]) { edges { node { id
        churnRisk { label probability probabilities { label probability }
                    model { name version } } } } } }"""
    with engine.connect() as conn:
        held = conn.execute(
            sa.text("SELECT count(*) FROM ml.customer_predictions"
                    " WHERE as_of = date_trunc('day', now(), 'UTC')")
        ).scalar_one()  # fmt: skip
        customers = conn.execute(
            sa.text("SELECT count(*) FROM dw.dim_customer WHERE is_current")
        ).scalar_one()
    assert held == customers > 100
    # once first: the process may not have loaded the model yet (a look at the registry),
    # whatever ran before this test in it
    answer(world, query)
    from_store = answer(world, query)
    assert "errors" not in from_store, from_store["errors"]
    assert from_store["_runs"] == {}  # no model ran: every prediction came from the store
    assert len(from_store["_statements"]) == 1
    assert "ml.customer_predictions" in from_store["_statements"][0]
    _set(engine, "DELETE FROM ml.customer_predictions")
    try:
        online = answer(world, query)
        assert "errors" not in online, online["errors"]
        assert online["_runs"] == {"churn_risk": 1}  # computed on request, one run
        a = [e["node"] for e in from_store["data"]["customers"]["edges"]]
        b = [e["node"] for e in online["data"]["customers"]["edges"]]
        assert len(a) == len(b) == 100
        for x, y in zip(a, b, strict=True):
            rx, ry = x["churnRisk"], y["churnRisk"]
            assert x["id"] == y["id"] and rx["label"] == ry["label"]
            assert rx["model"] == ry["model"] == {"name": "churn_risk", "version": rx["model"][
                "version"]}  # fmt: skip
            assert math.isclose(rx["probability"], ry["probability"], rel_tol=1e-6)
        assert len({x["churnRisk"]["probability"] for x in a}) > 10  # real, varied answers
    finally:
        written = stored.refresh(engine)
    assert written["ml.customer_predictions"] == 2 * customers  # order value, churn risk
    # a row of another day is not served (its features were as of another cut-off)
    _set(engine, "UPDATE ml.customer_predictions SET as_of = as_of - interval '1 day'")
    try:
        assert answer(world, query)["_runs"] == {"churn_risk": 1}
    finally:
        assert stored.refresh(engine)["ml.customer_predictions"] == 2 * customers


def test_customer_expected_order_value_is_stored_and_answers_as_on_request_byte_for_byte(
    world: World,
) -> None:
    """expectedOrderValue is stored beside the churn risk (today's cut-off, the same
    refresh): a page of 500 customers answers from the store in one statement with no model
    run, and gives the very answer the same page gets computed on request once the stored
    rows are deleted (the same model version): every value's text byte for byte (``257``,
    not ``257.0``); only the computed answers are logged."""
    from ml.prediction_log import log_for

    engine = world.engine
    query = """{ customers(first: 500, orderBy: [{id: ASC}]) { edges { node { id
        expectedOrderValue { value } v: expectedOrderValue { __typename value
        model { name version } } } } } }"""
    with engine.connect() as conn:
        customers = conn.execute(
            sa.text("SELECT count(*) FROM dw.dim_customer WHERE is_current")
        ).scalar_one()
        held = conn.execute(
            sa.text(
                "SELECT count(*) FROM ml.customer_predictions AS p JOIN ml.model_version AS v"
                " ON v.name = 'order_value' AND v.active AND v.version = p.order_value_version"
                " WHERE p.as_of = date_trunc('day', now(), 'UTC')"
            )
        ).scalar_one()
    assert held == customers >= 500

    def raw() -> tuple[bytes, dict[str, int], list[str]]:
        world.statements.clear()
        runs = model_runs(engine)
        resp = world.client.post("/graphql", json={"query": query})
        assert resp.status_code == 200 and b'"errors"' not in resp.content, resp.text[:300]
        after = model_runs(engine)
        ran = {k: v - runs.get(k, 0) for k, v in after.items() if v != runs.get(k, 0)}
        return resp.content, ran, list(world.statements)

    def logged() -> int:
        log_for(engine).flush()
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM ml.prediction_log"
                        " WHERE entity = 'customer' AND model = 'order_value'"
                    )
                ).scalar_one()
            )

    raw()  # once first: the process may not have loaded the model yet
    log_before = logged()
    from_store, runs, statements = raw()
    assert runs == {}  # no model ran: every value came from the store
    assert len(statements) == 1 and "ml.customer_predictions" in statements[0]
    assert logged() == log_before  # a stored prediction is not logged per read
    _set(engine, "DELETE FROM ml.customer_predictions")
    try:
        on_request, runs, _ = raw()
        assert runs == {"order_value": 1}  # one run for the page
        assert logged() > log_before  # computed on request: logged, as before
    finally:
        written = stored.refresh(engine)
    assert written["ml.customer_predictions"] == 2 * customers  # order value, churn risk
    # the same answer: every value's text byte for byte, the same document; only the JSON's
    # spacing differs (a read answered by its statement passes PostgreSQL's text through,
    # " : "; one with predictions computed after it is re-encoded, ":"), as for every read
    texts = _value_texts(from_store)
    assert texts == _value_texts(on_request) and len(texts) == 1_000
    assert len(set(texts)) > 10  # real, varied answers
    assert json.loads(on_request) == json.loads(from_store)
    assert _compact(on_request) == _compact(from_store)
    # a row of another day is not served (its features were as of another cut-off)
    _set(engine, "UPDATE ml.customer_predictions SET as_of = as_of - interval '1 day'")
    try:
        assert raw()[1] == {"order_value": 1}
    finally:
        assert stored.refresh(engine)["ml.customer_predictions"] == 2 * customers


def _value_texts(body: bytes) -> list[str]:
    """Every ``"value"``'s number as the response writes it."""
    return re.findall(r'"value" ?: ?([^,}\s]+)', body.decode())


def _compact(body: bytes) -> bytes:
    return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()


PLACE_TWO = """mutation ($c: ID!, $p: ID!) {
  a: placeOrder(input: {customerId: $c, items: [{productId: $p, quantity: 1}], channel: WEB,
    paymentMethod: CARD}) { id predictedStatus { label probability } predictedTotal { value } }
  b: placeOrder(input: {customerId: $c, items: [{productId: $p, quantity: 2}], channel: MOBILE,
    paymentMethod: PAYPAL}) { id predictedStatus { label probability } predictedTotal { value } }
}"""


def _buyer(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        customer = conn.execute(sa.text("SELECT min(id) FROM app.customers")).scalar_one()
        product = conn.execute(
            sa.text("SELECT min(id) FROM app.products WHERE active AND stock >= 10")
        ).scalar_one()
    return {"c": str(customer), "p": str(product)}


def test_orders_placed_in_one_operation_answer_their_predictions(world: World) -> None:
    """The operation's orders are not committed while its payloads are read (its fields
    are written all or nothing): their features are read in its transaction, so each gets
    the prediction a read of it gets once committed. (Last in the module: the refreshes
    above count the orders without a stored row.)"""
    body = answer(world, PLACE_TWO, _buyer(world.engine))
    assert "errors" not in body, body["errors"]
    later = """query ($id: ID!) { order(id: $id) { predictedStatus { label probability }
        predictedTotal { value } } }"""
    for alias in ("a", "b"):
        placed = body["data"][alias]
        assert placed["predictedStatus"]["label"] and placed["predictedTotal"]["value"] > 0
        read = answer(world, later, {"id": placed["id"]})
        assert "errors" not in read, read["errors"]
        got = read["data"]["order"]
        assert got["predictedStatus"]["label"] == placed["predictedStatus"]["label"]
        assert math.isclose(
            got["predictedStatus"]["probability"], placed["predictedStatus"]["probability"]
        )
        assert math.isclose(got["predictedTotal"]["value"], placed["predictedTotal"]["value"])


def test_a_prediction_unavailable_in_a_payload_leaves_the_order_placed(world: World) -> None:
    """A model that is not loaded nulls the prediction at its path, with its error, as in a
    read; the orders were placed and answered, so they are committed (the answer shows them)."""
    with deactivated(world.engine, "order_status"):
        body = answer(world, PLACE_TWO, _buyer(world.engine))
    assert [e["extensions"]["code"] for e in body["errors"]] == ["MODEL_UNAVAILABLE"] * 2
    assert [e["path"] for e in body["errors"]] == [[k, "predictedStatus"] for k in ("a", "b")]
    assert "commitLsn" in body["extensions"]
    ids = [int(body["data"][k]["id"]) for k in ("a", "b")]
    with world.engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT count(*) FROM app.orders WHERE id = ANY(:ids)"), {"ids": ids}
        ).scalar_one()
    assert found == 2 and all(body["data"][k]["predictedTotal"]["value"] > 0 for k in "ab")


def test_an_operation_rolled_back_logs_no_prediction_of_its_orders(world: World) -> None:
    """The predictions a payload computed for an order its operation then rolled back (a
    later field refused) are not logged: they were served to no one, of an order that is
    not (the hostile review of 2026-12-07: the log kept rows of orders that never were).
    Those of a committed operation are."""
    from ml.prediction_log import log_for

    refused = PLACE_TWO.replace("quantity: 2", "quantity: 99999")  # b: OUT_OF_STOCK

    def ghosts() -> int:  # logged rows of order ids no order has
        log_for(world.engine).flush()
        with world.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM ml.prediction_log WHERE entity = 'order'"
                        " AND entity_id NOT IN (SELECT id FROM app.orders)"
                    )
                ).scalar_one()
            )

    before = ghosts()
    body = answer(world, refused, _buyer(world.engine))
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "OUT_OF_STOCK"
    assert ghosts() == before
    body = answer(world, PLACE_TWO, _buyer(world.engine))
    assert "errors" not in body, body["errors"]
    log_for(world.engine).flush()
    with world.engine.connect() as conn:
        logged = conn.execute(
            sa.text(
                "SELECT count(DISTINCT entity_id) FROM ml.prediction_log"
                " WHERE entity = 'order' AND entity_id = ANY(:ids)"
            ),
            {"ids": [int(body["data"][k]["id"]) for k in ("a", "b")]},
        ).scalar_one()
    assert logged == 2
