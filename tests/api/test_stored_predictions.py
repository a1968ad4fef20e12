"""Stored predictions on the compiled read path (ml.stored, schema/compiled/sql.py).

On a warehouse like the ML tests' (three models trained and active) whose orders and
tickets are all scored (``ml.stored.refresh``), a prediction query is answered by its page
statement alone — no feature statement, no model run, and a repeated query by the fast lane
— with the very JSON the Strawberry path computes on request, for every shape of selection.
An object without a current stored row (deleted, or scored by another version) is computed
on request; a deactivated model gives MODEL_UNAVAILABLE even where rows are stored.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from graphql import parse
from sqlalchemy.engine import Engine

from db.config import DbSettings
from db.engine import make_engine
from ml import stored
from ml.serving import close_store, store_for
from schema.app import schema
from schema.compiled import lane
from schema.compiled.execute import compile_operation
from schema.context import ApiLimits
from tests.api.helpers import demo_client, lane_prepared, model_runs, post
from tests.ml.conftest import deactivated, shop_warehouse, train_all

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@dataclass
class Paths:
    engine: Engine
    compiled: TestClient
    strawberry: TestClient
    statements: list[str]  # through SQLAlchemy and the fast lane, session settings aside


@pytest.fixture(scope="module")
def engine(clone_database: Callable[[str], str]) -> Iterator[Engine]:
    engine = make_engine(shop_warehouse(clone_database, "ml_stored"))
    train_all(engine)
    written = stored.refresh(engine)
    assert written["ml.order_predictions"] > 2 * 5_000 and written["ml.ticket_predictions"] > 0
    with engine.connect() as conn:  # one row per order, both models' columns set
        assert conn.execute(
            sa.text("SELECT count(*) FILTER (WHERE order_value_doc IS NULL OR order_status_doc"
                    " IS NULL), count(*) FROM ml.order_predictions")
        ).one() == (0, written["ml.order_predictions"] // 2)  # fmt: skip
    yield engine
    close_store(engine)


@pytest.fixture(scope="module")
def paths(engine: Engine) -> Iterator[Paths]:
    log: list[str] = []
    store_for(engine)  # the models, loaded before statements are counted

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "set_config" not in statement:
            log.append(statement)

    def seen(statement: str) -> None:
        if "set_config" not in statement:
            log.append(statement)

    sa.event.listen(engine, "before_cursor_execute", before)
    undo = lane.observe(seen)

    try:
        with demo_client(engine, True) as compiled, demo_client(engine, False) as plain:
            yield Paths(engine, compiled, plain, log)
    finally:
        undo()
        sa.event.remove(engine, "before_cursor_execute", before)


def both(p: Paths, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The compiled body (with the statements and model runs it took), identical — keys
    in order, numbers as written — to the Strawberry path's, which runs the models."""
    p.statements.clear()
    runs = model_runs(p.engine)
    fast = post(p.compiled, query, variables)
    issued = list(p.statements)
    after = model_runs(p.engine)
    slow = post(p.strawberry, query, variables)
    assert json.dumps(fast) == json.dumps(slow), f"\ncompiled:   {fast}\nstrawberry: {slow}"
    fast["_statements"] = issued
    fast["_runs"] = {k: v - runs.get(k, 0) for k, v in after.items() if v != runs.get(k, 0)}
    return fast


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
def test_stored_predictions_answer_in_one_statement_as_computed(paths: Paths, name: str) -> None:
    query = """query($n: Int!) { orders(first: $n, orderBy: [{id: DESC}]) { edges { node { id
        status SEL } } } supportTickets(first: 50) { edges { node { id
        predictedStatus { label probability } } } } }""".replace("SEL", SELECTIONS[name])
    body = both(paths, query, {"n": 500})
    assert "errors" not in body, body["errors"]
    assert len(body["data"]["orders"]["edges"]) == 500
    assert len(body["_statements"]) == 1 and "json_build_object" in body["_statements"][0]
    assert body["_runs"] == {}  # no model ran: every prediction came from the store
    values = [e["node"] for e in body["data"]["orders"]["edges"]]
    assert len({json.dumps(v, sort_keys=True) for v in values}) > 50  # real, varied answers


def test_a_repeated_query_is_served_by_the_fast_lane_with_its_stored_predictions(
    paths: Paths,
) -> None:
    query = """query($id: ID!) { order(id: $id) { id predictedStatus { label probability
        model { version } } predictedTotal { value } customer { id } } }"""
    post(paths.compiled, query, {"id": "10"})  # the first request builds the template
    hits = lane.stats.hits
    for oid in ("11", "12", "13"):
        body = both(paths, query, {"id": oid})
        assert body["data"]["order"]["predictedStatus"]["label"] in {
            "delivered", "cancelled", "returned"
        }  # fmt: skip
        assert body["_runs"] == {} and len(body["_statements"]) == 1
    assert lane.stats.hits == hits + 3


def test_a_page_with_predictions_is_planned_once_not_per_request(paths: Paths) -> None:
    """With the page size bound (``LIMIT $1``), the prepared statement's generic plan
    guessed a tenth of the table, the join to the stored predictions under it looked dear,
    and PostgreSQL planned every request again (0.9 ms at 1M orders). The size is inlined:
    nothing is left for a custom plan to differ on, and the generic plan serves every run."""
    query = """query($n: Int!) { orders(first: $n, orderBy: [{id: DESC}]) { edges { node {
        id predictedStatus { label probability } predictedTotal { value } } } } }"""
    stmt = compile_operation(schema, parse(query), None, {"n": 500}, ApiLimits())
    assert "ml.order_predictions" in stmt.sql and "LIMIT 501" in stmt.sql
    assert stmt.params == {}
    for _ in range(6 * DbSettings.from_env().pool_size):  # each pooled connection, 6 times
        assert len(json.loads(lane.fetch(paths.engine, stmt, actor="t", timeout_ms=5000))
                   ["orders"]["edges"]) == 500  # fmt: skip
    plans = [
        (generic, custom)
        for statement, generic, custom in lane_prepared(paths.engine)
        if re.search(r"LIMIT 501\b.*ml\.order_predictions", statement)
    ]
    assert plans, "the statement was not prepared"
    assert all(generic >= 1 and custom == 0 for generic, custom in plans), plans


def _stored_rows(engine: Engine, sql: str, params: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_an_object_without_a_current_stored_row_is_scored_on_request(paths: Paths) -> None:
    engine = paths.engine
    with engine.connect() as conn:
        newest = conn.execute(
            sa.text("SELECT id FROM app.orders ORDER BY id DESC LIMIT 3")
        ).scalars().all()  # fmt: skip
    gone, stale = int(newest[0]), int(newest[2])
    _stored_rows(  # the order_status prediction of this order is not stored
        engine,
        "UPDATE ml.order_predictions SET order_status_version = NULL, order_status_label = NULL,"
        " order_status_probability = NULL, order_status_probabilities = NULL,"
        " order_status_doc = NULL WHERE order_id = :o",
        {"o": gone},
    )
    _stored_rows(  # predictions of a version that is not the active one are never served
        engine,
        "UPDATE ml.order_predictions SET order_status_version = order_status_version + 100,"
        " order_value_version = order_value_version + 100, order_status_doc ="
        """ '{"label": "stale", "probability": 0.5}' WHERE order_id = :o""",
        {"o": stale},
    )
    query = """{ orders(first: 3, orderBy: [{id: DESC}]) { edges { node { id
        predictedStatus { label probability } predictedTotal { value } } } } }"""
    hits = lane.stats.hits
    try:
        for _ in range(2):  # the second time through the fast lane, which completes it
            body = both(paths, query)
            assert "errors" not in body, body["errors"]
            labels = [
                e["node"]["predictedStatus"]["label"] for e in body["data"]["orders"]["edges"]
            ]
            assert "stale" not in labels
            # one feature statement and one run per model, for the two orders lacking a row
            features = [s for s in body["_statements"] if "ml.order_features" in s]
            assert len(features) == 1
            assert body["_runs"] == {"order_status": 1, "order_value": 1}
        assert lane.stats.hits == hits + 1
    finally:
        # the deleted row (one model) and the stale order's two rows are scored again
        assert stored.refresh(engine)["ml.order_predictions"] == 3
    body = both(paths, query)
    assert body["_runs"] == {} and len(body["_statements"]) == 1


def test_a_deactivated_model_is_unavailable_even_where_rows_are_stored(paths: Paths) -> None:
    engine = paths.engine
    query = """{ orders(first: 3, orderBy: [{id: ASC}]) { edges { node { id
        predictedStatus { label } predictedTotal { value } } } } }"""
    hits = lane.stats.hits
    with deactivated(engine, "order_status"):
        body = both(paths, query)
        again = both(paths, query)  # through the fast lane: the same errors, paths, locations
    nodes = [e["node"] for e in body["data"]["orders"]["edges"]]
    assert [n["predictedStatus"] for n in nodes] == [None] * 3
    assert all(n["predictedTotal"]["value"] > 0 for n in nodes)  # still stored
    assert [e["extensions"]["code"] for e in body["errors"]] == ["MODEL_UNAVAILABLE"] * 3
    assert body["_runs"] == {}
    assert lane.stats.hits == hits + 1
    assert json.dumps(again["data"]) == json.dumps(body["data"])
    assert json.dumps(again["errors"]) == json.dumps(body["errors"])
