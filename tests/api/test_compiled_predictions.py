"""Prediction fields on the compiled read path: byte-identical to the Strawberry path.

Both paths run on a warehouse like the ML tests' (tests/ml/conftest.py's shop: seeded,
loaded, three models trained): every query of the corpus must give the same JSON body, data
and errors alike (MODEL_UNAVAILABLE and NOT_IN_WAREHOUSE with their paths and locations,
nulls, several kinds of objects in one query), and the compiled path must have answered
with its page statement plus one feature statement per object kind and ONE model run per
model.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import make_engine
from ml.serving import close_store, store_for
from tests.api.helpers import demo_client, model_runs, post
from tests.ml.conftest import deactivated, place_order, shop_warehouse, train_all

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@dataclass
class Paths:
    engine: Engine
    compiled: TestClient
    strawberry: TestClient
    statements: list[str]
    ids: list[list[int]]  # the ids bound to each feature statement


@pytest.fixture(scope="module")
def ml_engine(clone_database: Callable[[str], str]) -> Iterator[Engine]:
    """A warehouse like tests/ml's (same shop), with the three models trained and active."""
    engine = make_engine(shop_warehouse(clone_database, "ml_compiled"))
    train_all(engine)
    yield engine
    close_store(engine)


@pytest.fixture(scope="module")
def paths(ml_engine: Engine) -> Iterator[Paths]:
    log: list[str] = []
    ids: list[list[int]] = []
    store_for(ml_engine)  # the models, loaded before statements are counted

    def before(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        registry = "ml.model_version" in statement and "json_build_object" not in statement
        if "set_config" not in statement and not registry:
            log.append(statement)
            if "_features WHERE" in statement:
                ids.append(list(params["ids"]))

    sa.event.listen(ml_engine, "before_cursor_execute", before)

    with demo_client(ml_engine, True) as compiled, demo_client(ml_engine, False) as plain:
        yield Paths(ml_engine, compiled, plain, log, ids)
    sa.event.remove(ml_engine, "before_cursor_execute", before)


def both(p: Paths, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Both paths, identical bodies; returns the compiled body with what it issued."""
    p.statements.clear()
    p.ids.clear()
    runs = model_runs(p.engine)
    fast = post(p.compiled, query, variables)
    issued = list(p.statements)
    after = model_runs(p.engine)
    slow = post(p.strawberry, query, variables)
    assert json.dumps(fast) == json.dumps(slow), f"\ncompiled:   {fast}\nstrawberry: {slow}"
    fast["_statements"] = issued
    fast["_ids"] = p.ids[: len([s for s in issued if "_features WHERE" in s])]
    fast["_runs"] = {k: after[k] - runs.get(k, 0) for k in after}
    return fast


PREDICTION = """predictedStatus { __typename label probability
    probabilities { __typename label p: probability } model { name version __typename } }"""

CORPUS: dict[str, tuple[str, dict[str, Any], dict[str, int], int]] = {
    # name: (query, variables, model runs, feature statements)
    "500 orders, both order models, aliases and fragments": (
        """query($n: Int!) { orders(first: $n, orderBy: [{id: DESC}]) { totalCount
            edges { cursor node { id status ...P
              total: predictedTotal { value __typename model { version name } } } } } }
           fragment P on Order { PREDICTION predictedStatus { label } }""".replace(
            "PREDICTION", PREDICTION
        ),
        {"n": 500},
        {"order_status": 1, "order_value": 1},
        1,
    ),
    "several kinds in one query, nested": (
        """{ customers(first: 20, orderBy: [{id: ASC}]) { edges { node { id
              expectedOrderValue { value model { name } }
              orders(first: 3) { edges { node { id PREDICTION customer { id } } } }
              supportTickets(first: 2) { edges { node { id predictedStatus { label
                probabilities { label probability } } } } } } } }
            supportTickets(first: 5) { edges { node { id
              predictedStatus { label probability model { name } } } } }
            order(id: 1) { id predictedTotal { value } customer { expectedOrderValue { value } } }
          }""".replace("PREDICTION", PREDICTION),
        {},
        {"order_status": 1, "order_value": 1, "support_status": 1},
        3,
    ),
    "null objects, @skip and @include": (
        """query($no: Boolean!) { order(id: 999999999) { id PREDICTION }
            orders(first: 3, orderBy: [{id: ASC}]) { edges { node { id
              predictedStatus @skip(if: $no) { label }
              predictedTotal @include(if: $no) { value } } } } }""".replace(
            "PREDICTION", PREDICTION
        ),
        {"no": True},
        {"order_value": 1},
        1,
    ),
}


@pytest.mark.parametrize("name", list(CORPUS))
def test_prediction_fields_compile_and_match_the_strawberry_path(paths: Paths, name: str) -> None:
    query, variables, runs, feature_statements = CORPUS[name]
    body = both(paths, query, variables)
    assert "errors" not in body, body["errors"]
    issued = body["_statements"]
    assert "json_build_object" in issued[0]  # the compiled page statement...
    features = [s for s in issued[1:] if "features" in s or "WITH scope" in s]
    assert len(features) == feature_statements  # ...one feature statement per kind
    assert len(issued) == 1 + feature_statements, issued
    assert {k: v for k, v in body["_runs"].items() if v} == runs  # ONE run per model
    if name.startswith("500 orders"):  # features of exactly the orders the page returned
        page = [int(e["node"]["id"]) for e in body["data"]["orders"]["edges"]]
        assert len(page) == 500
        assert body["_ids"] == [page]


def test_a_repeated_prediction_query_is_answered_again_with_predictions(paths: Paths) -> None:
    """Statement caches (per variable values, templates over root ids) keep the plan's
    prediction fields: a cached statement still gets its predictions filled in."""
    query = "query($id: ID!) { order(id: $id) { id predictedStatus { label probability } } }"
    first = post(paths.compiled, query, {"id": "1"})
    again = post(paths.compiled, query, {"id": "1"})
    other = post(paths.compiled, query, {"id": "2"})
    assert first == again
    for body in (first, other):
        assert "errors" not in body, body
        assert isinstance(body["data"]["order"]["predictedStatus"]["label"], str)
    assert other == post(paths.strawberry, query, {"id": "2"})


def test_model_unavailable_errors_match(paths: Paths) -> None:
    engine = paths.engine
    with deactivated(engine, "order_status"):
        body = both(
            paths,
            """{ orders(first: 3, orderBy: [{id: ASC}]) { edges { node { id
                 predictedStatus { label } predictedTotal { value } } } }
                 order(id: 2) { s: predictedStatus { label } } }""",
        )
        # errors of several kinds and depths, each in the Strawberry path's order
        mixed = both(
            paths,
            """query($o: ID!) { customers(first: 2, orderBy: [{id: DESC}]) { edges { node {
                 orders(first: 2) { edges { node { predictedTotal { value }
                   predictedStatus { label } } } } } } }
               order(id: $o) { predictedTotal { value } predictedStatus { label } }
               orders(first: 1, orderBy: [{id: DESC}]) { edges { node {
                 predictedStatus { label } customer { id } } } } }""",
            {"o": "3"},
        )
        assert {e["extensions"]["code"] for e in mixed["errors"]} == {"MODEL_UNAVAILABLE"}
    nodes = [e["node"] for e in body["data"]["orders"]["edges"]]
    assert [n["predictedStatus"] for n in nodes] == [None] * 3
    assert all(n["predictedTotal"]["value"] > 0 for n in nodes)
    assert body["data"]["order"] == {"s": None}
    assert [e["extensions"]["code"] for e in body["errors"]] == ["MODEL_UNAVAILABLE"] * 4
    assert [e["path"] for e in body["errors"]] == [
        ["orders", "edges", i, "node", "predictedStatus"] for i in range(3)
    ] + [["order", "s"]]
    assert all(e["locations"] for e in body["errors"])
    assert body["_runs"].get("order_status", 0) == 0 and body["_runs"]["order_value"] == 1


def test_objects_not_in_the_warehouse_get_null_and_not_in_warehouse(paths: Paths) -> None:
    engine = paths.engine
    with engine.begin() as conn:
        customer, new_order = place_order(conn)
        new_ticket = conn.execute(
            sa.text("SELECT app.open_ticket(:c, 'delivery', 'high', 'email', 'Late?', :o)"),
            {"c": customer, "o": new_order},
        ).scalar_one()
    try:
        body = both(
            paths,
            """query($o: ID!, $t: ID!) { orders(first: 2, orderBy: [{id: DESC}]) { edges {
                 node { id predictedStatus { label } predictedTotal { value } } } }
               supportTicket(id: $t) { id predictedStatus { label } }
               order(id: $o) { id status predictedTotal { value } } }""",
            {"o": str(new_order), "t": str(new_ticket)},
        )
    finally:
        with engine.begin() as conn:
            conn.execute(
                sa.text("SELECT app.set_order_status(:id, 'cancelled')"), {"id": new_order}
            )
    newest = body["data"]["orders"]["edges"][0]["node"]
    assert newest == {"id": str(new_order), "predictedStatus": None, "predictedTotal": None}
    assert body["data"]["orders"]["edges"][1]["node"]["predictedStatus"] is not None
    assert body["data"]["supportTicket"] == {"id": str(new_ticket), "predictedStatus": None}
    assert body["data"]["order"]["predictedTotal"] is None
    # in the Strawberry path's order: by kind (orders first appear first), model, key
    assert [(e["extensions"]["code"], e["path"]) for e in body["errors"]] == [
        ("NOT_IN_WAREHOUSE", ["orders", "edges", 0, "node", "predictedStatus"]),
        ("NOT_IN_WAREHOUSE", ["orders", "edges", 0, "node", "predictedTotal"]),
        ("NOT_IN_WAREHOUSE", ["order", "predictedTotal"]),
        ("NOT_IN_WAREHOUSE", ["supportTicket", "predictedStatus"]),
    ]
    assert "not in the warehouse yet" in body["errors"][0]["message"]
