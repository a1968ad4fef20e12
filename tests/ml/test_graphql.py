"""Prediction fields and what-if roots through the GraphQL schema (real database, real
ONNX sessions): batching, missing models, objects not loaded yet (online features), input
validation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ml import online, stored
from ml.features import kinds_of, load_ids
from ml.serving import store_for
from ml.specs import ORDER_STATUS, ORDER_VALUE
from ml.train import TrainedModel
from tests.ml.conftest import deactivated, place_order, unstored


def run(engine: Engine, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The operation as served (demo-open: the admin principal), errors as (message, path,
    code)."""
    from tests.api.conftest import make_client
    from tests.api.helpers import post

    with make_client(engine) as client:
        body = post(client, query, variables)
    out: dict[str, Any] = {"data": body["data"]}
    if body.get("errors"):
        out["errors"] = [
            {"message": e["message"], "path": e.get("path"), "code": e["extensions"]["code"]}
            for e in body["errors"]
        ]
    return out


@pytest.fixture
def statements(ml_engine: Engine) -> Iterator[list[str]]:
    """Every statement sent: through SQLAlchemy, and by the read lane's raw connections."""
    from schema import lane

    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(ml_engine, "before_cursor_execute", listen)
    undo = lane.observe(seen.append)
    yield seen
    undo()
    sa.event.remove(ml_engine, "before_cursor_execute", listen)


ORDERS = """query($n: Int!) { orders(first: $n, orderBy: [{id: ASC}]) {
  edges { node { id status
    predictedStatus { label probability probabilities { label probability }
                      model { name version } }
    predictedTotal { value model { name version } } } } } }"""


def test_500_orders_one_feature_statement_and_one_run_per_model(
    ml_engine: Engine, trained: dict[str, TrainedModel], statements: list[str]
) -> None:
    store = store_for(ml_engine)
    status, value = store.get("order_status"), store.get("order_value")
    runs = (status.runs, value.runs)
    with unstored(ml_engine):  # computed on request
        statements.clear()
        body = run(ml_engine, ORDERS, {"n": 500})
        issued = list(statements)
        statements.clear()
        run(ml_engine, ORDERS, {"n": 20})
        small = len(statements)
    assert "errors" not in body, body["errors"]
    nodes = [e["node"] for e in body["data"]["orders"]["edges"]]
    assert len(nodes) == 500
    feature_sql = [s for s in issued if "ml.order_features" in s]
    assert len(feature_sql) == 1  # predictedStatus and predictedTotal share one statement
    assert "ANY" in feature_sql[0]
    assert not [s for s in issued if "AS prior_cancel_rate" in s]  # no feature query
    assert (status.runs, value.runs) == (runs[0] + 2, runs[1] + 2)  # 500 orders, then 20
    # the answers are the model's on the features of exactly these orders, as the feature
    # query computes them (the table holds the same values)
    ids = [int(n["id"]) for n in nodes]
    with ml_engine.connect() as conn:
        frame = load_ids(conn, "orders.sql", ids, kinds_of(ORDER_STATUS, ORDER_VALUE))
    order = np.argsort(frame.keys)
    scores = status.score({k: v[order] for k, v in frame.inputs(ORDER_STATUS).items()})
    totals = value.score({k: v[order] for k, v in frame.inputs(ORDER_VALUE).items()}).values
    assert scores.labels is not None and scores.probabilities is not None and totals is not None
    assert [n["predictedStatus"]["label"] for n in nodes] == scores.labels
    for j, n in enumerate(nodes):
        p = n["predictedStatus"]
        assert p["model"] == {"name": "order_status", "version": status.version}
        probs = {x["label"]: x["probability"] for x in p["probabilities"]}
        assert set(probs) == {"cancelled", "delivered", "returned"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert p["probability"] == max(probs.values()) == probs[p["label"]]
        assert probs == pytest.approx(
            dict(zip(status.classes, scores.probabilities[j], strict=True))
        )
        assert n["predictedTotal"]["value"] == pytest.approx(totals[j], abs=0.006)
        assert n["predictedTotal"]["value"] > 0
    assert len(issued) == small  # the statement count does not grow with the page size


def test_stored_predictions_answer_as_computed_without_a_model_run(
    ml_engine: Engine, trained: dict[str, TrainedModel], statements: list[str]
) -> None:
    """With every order scored (``ml.stored``), the page and its stored predictions are one
    statement and no model runs; the answer is what computing on request gives."""
    assert sum(stored.refresh(ml_engine).values()) == 0  # the fixture's data is all scored
    store = store_for(ml_engine)
    runs = (store.get("order_status").runs, store.get("order_value").runs)
    statements.clear()
    body = run(ml_engine, ORDERS, {"n": 500})
    issued = list(statements)
    assert (store.get("order_status").runs, store.get("order_value").runs) == runs
    assert not [s for s in issued if "ml.order_features" in s]
    assert len([s for s in issued if "ml.order_predictions" in s]) == 1
    with unstored(ml_engine):
        computed = run(ml_engine, ORDERS, {"n": 500})
    assert body == computed
    assert len(body["data"]["orders"]["edges"]) == 500


def test_ticket_and_customer_predictions(
    ml_engine: Engine, trained: dict[str, TrainedModel], statements: list[str]
) -> None:
    query = """{ supportTickets(first: 50) { edges { node { id predictedStatus {
        label probabilities { label probability } model { name } } } } }
      customers(first: 50) {
        edges { node { id expectedOrderValue { value model { name } } } } } }"""
    store = store_for(ml_engine)
    support_runs = store.get("support_status").runs
    with unstored(ml_engine):  # computed on request
        body = run(ml_engine, query)
    assert "errors" not in body, body["errors"]
    tickets = [e["node"] for e in body["data"]["supportTickets"]["edges"]]
    assert len(tickets) == 50
    assert {t["predictedStatus"]["label"] for t in tickets} <= {"resolved", "unresolved"}
    assert all(t["predictedStatus"]["model"]["name"] == "support_status" for t in tickets)
    assert store.get("support_status").runs == support_runs + 1
    customers = [e["node"] for e in body["data"]["customers"]["edges"]]
    values = [c["expectedOrderValue"]["value"] for c in customers]
    assert all(v > 0 for v in values) and len(set(values)) > 10


def test_customer_churn_risk_is_computed_from_their_orders_up_to_now(
    ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    query = """{ customers(first: 100, orderBy: [{id: ASC}]) { edges { node { id
        churnRisk { label probability probabilities { label probability }
                    model { name version } } } } } }"""
    body = run(ml_engine, query)
    assert "errors" not in body, body["errors"]
    nodes = [e["node"] for e in body["data"]["customers"]["edges"]]
    assert len(nodes) == 100
    with ml_engine.connect() as conn:
        ordered = {
            str(r[0])
            for r in conn.execute(
                sa.text("SELECT DISTINCT customer_id FROM dw.fact_orders WHERE NOT is_cancelled")
            )
        }
    version = trained["churn_risk"]
    for n in nodes:
        risk = n["churnRisk"]
        assert risk["model"]["name"] == "churn_risk" and risk["label"] in {"active", "churned"}
        classes = {p["label"]: p["probability"] for p in risk["probabilities"]}
        assert set(classes) == {"active", "churned"}
        # probability is the risk (of churned), whatever the label
        assert risk["probability"] == classes["churned"]
        assert (risk["label"] == "churned") == (risk["probability"] >= 0.5)
    # the shop's history ended months before now: those who ordered mostly look churned
    churned = [n for n in nodes if n["id"] in ordered and n["churnRisk"]["label"] == "churned"]
    assert len(churned) > 0.5 * len([n for n in nodes if n["id"] in ordered]), version.metrics


def test_no_active_model_nulls_the_field_and_the_rest_still_answers(
    ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    store = store_for(ml_engine)
    with deactivated(ml_engine, "order_status") as version:
        body = run(
            ml_engine,
            "{ orders(first: 3, orderBy: [{id: ASC}]) { edges { node { id status"
            " predictedStatus { label } predictedTotal { value } } } } }",
        )
        nodes = [e["node"] for e in body["data"]["orders"]["edges"]]
        assert len(nodes) == 3
        assert all(n["predictedStatus"] is None for n in nodes)
        assert all(n["predictedTotal"]["value"] > 0 for n in nodes)  # the other model answers
        assert {e["code"] for e in body["errors"]} == {"MODEL_UNAVAILABLE"}
        assert len(body["errors"]) == 3
        assert all(e["path"][-1] == "predictedStatus" for e in body["errors"])
    assert store.get("order_status").version == version


def test_an_order_not_yet_in_the_warehouse_is_predicted_from_its_operational_rows(
    ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    with ml_engine.begin() as conn:
        _, new_id = place_order(conn)
    try:
        body = run(
            ml_engine,
            "query($id: ID!) { order(id: $id) { id status"
            " predictedStatus { label probability } predictedTotal { value } } }",
            {"id": str(new_id)},
        )
        assert "errors" not in body, body
        order = body["data"]["order"]
        assert order["id"] == str(new_id) and order["status"] == "PENDING"
        # what its features computed from app (ml.online) give
        with ml_engine.connect() as conn:
            frame = online.load(conn, "orders.sql", [new_id], kinds_of(ORDER_STATUS, ORDER_VALUE))
        assert frame.keys.tolist() == [new_id]
        store = store_for(ml_engine)
        value = store.get("order_value").score(frame.inputs(ORDER_VALUE)).values
        status = store.get("order_status").score(frame.inputs(ORDER_STATUS))
        assert value is not None and status.labels is not None
        assert order["predictedTotal"]["value"] == round(float(value[0]), 2)
        assert order["predictedStatus"]["label"] == status.labels[0]
    finally:
        with ml_engine.begin() as conn:
            conn.execute(sa.text("SELECT app.set_order_status(:id, 'cancelled')"), {"id": new_id})


ORDER_INPUT = {
    "segment": "consumer",
    "ageBand": "25-34",
    "country": "Germany",
    "tenureDays": 30.0,
    "priorOrders": 0,
    "channel": "marketplace",
    "paymentMethod": "cash_on_delivery",
    "itemCount": 1,
    "lineCount": 1,
    "basketValue": 49.9,
    "mainCategory": "Apparel",
    "categoryCount": 1,
    "dayOfWeek": 5,
    "month": 11,
}
WHAT_IF = """query($input: OrderStatusInput!) { predictOrderStatus(input: $input) {
  label probability probabilities { label probability } model { name version } } }"""


def test_what_if_predicts_and_matches_the_risk_the_data_planted(
    ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    risky = run(ml_engine, WHAT_IF, {"input": ORDER_INPUT})
    assert "errors" not in risky, risky["errors"]
    safe_input = {
        **ORDER_INPUT, "channel": "store", "paymentMethod": "card", "priorOrders": 12,
        "priorCancelRate": 0.0, "priorReturnRate": 0.0, "tenureDays": 700.0,
    }  # fmt: skip
    safe = run(ml_engine, WHAT_IF, {"input": safe_input})

    def p_cancel(body: dict[str, Any]) -> float:
        probs = body["data"]["predictOrderStatus"]["probabilities"]
        return float(next(p["probability"] for p in probs if p["label"] == "cancelled"))

    assert p_cancel(risky) > p_cancel(safe)
    value = run(
        ml_engine,
        "query($i: OrderValueInput!) { predictOrderValue(input: $i) { value model { name } } }",
        {
            "i": {
                k: v
                for k, v in ORDER_INPUT.items()
                if k not in {"paymentMethod", "basketValue", "dayOfWeek"}
            }
        },
    )
    assert value["data"]["predictOrderValue"]["value"] > 0
    support = run(
        ml_engine,
        """query($i: SupportStatusInput!) { predictSupportStatus(input: $i) { label } }""",
        {
            "i": {
                "category": "other", "priority": "low", "channel": "email",
                "segment": "consumer", "tenureDays": 10.0, "priorOrders": 1, "priorTickets": 0,
            }
        },
    )  # fmt: skip
    assert support["data"]["predictSupportStatus"]["label"] in {"resolved", "unresolved"}


def test_what_if_churn_risk_rises_with_recency_and_lengthening_gaps(
    ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    query = """query($i: ChurnRiskInput!) {
        predictChurnRisk(input: $i) { label probability model { name version } } }"""
    base = {"segment": "consumer", "country": "Germany", "tenureDays": 700.0, "ordersTotal": 12}
    active = {**base, "recencyDays": 5.0, "orders90d": 3, "orders365d": 10,
              "revenue365d": 4000.0, "meanGapDays": 40.0, "lastGapDays": 30.0}  # fmt: skip
    fading = {**base, "recencyDays": 150.0, "orders90d": 0, "orders365d": 2,
              "revenue365d": 500.0, "meanGapDays": 60.0, "lastGapDays": 200.0}  # fmt: skip

    def churned(i: dict[str, object]) -> float:
        body = run(ml_engine, query, {"i": i})
        assert "errors" not in body, body["errors"]
        p = body["data"]["predictChurnRisk"]
        assert p["model"]["name"] == "churn_risk" and p["label"] in {"active", "churned"}
        # the probability is the risk itself (of churned), whatever the likelier label
        assert (p["label"] == "churned") == (p["probability"] >= 0.5)
        return float(p["probability"])

    assert churned(fading) > churned(active) + 0.3
    for bad, field in (
        ({"recencyDays": -1.0}, "input.recencyDays"),
        ({"ordersTotal": 0}, "input.ordersTotal"),  # (>= 1, as its description says)
        ({"orders90d": 11}, "input.orders90d"),  # more in 90 days than in 365
        ({"orders365d": 13}, "input.orders365d"),  # more in 365 days than in all
    ):
        body = run(ml_engine, query, {"i": {**active, **bad}})
        assert [e["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
        assert body["errors"][0]["message"].startswith(field.removeprefix("input."))


def test_what_if_takes_the_api_enum_spelling_of_a_category(
    ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    """``segment: "CONSUMER"`` (Customer.segment's value) is the category ``consumer``,
    not an unknown one: an integrator copies a customer's fields into a what-if."""

    def probability(change: dict[str, object]) -> float:
        body = run(ml_engine, WHAT_IF, {"input": {**ORDER_INPUT, **change}})
        assert "errors" not in body, body["errors"]
        return float(body["data"]["predictOrderStatus"]["probability"])

    api = {"segment": "CONSUMER", "channel": "WEB", "paymentMethod": "CARD"}
    stored = {k: str(v).lower() for k, v in api.items()}
    unknown = {k: "martian" for k in api}
    assert probability(api) == probability(stored)
    assert probability(stored) != probability(unknown)  # the categories do count


def test_what_if_unknown_category_still_predicts(
    ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    body = run(ml_engine, WHAT_IF, {"input": {**ORDER_INPUT, "channel": "carrier-pigeon"}})
    assert "errors" not in body, body["errors"]
    assert body["data"]["predictOrderStatus"]["label"] in {"cancelled", "delivered", "returned"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"itemCount": None}, "itemCount"),  # missing required feature
        ({"itemCount": "three"}, "itemCount"),  # wrong type
        ({"month": 13}, "month"),  # out of range
        ({"discountRate": 1.5}, "discountRate"),
        ({"tenureDays": -1.0}, "tenureDays"),
        # counts no order has: more lines than units, more categories than lines
        ({"lineCount": 2}, "lineCount"),
        ({"categoryCount": 2}, "categoryCount"),
    ],
)
def test_what_if_bad_input_is_bad_user_input(
    ml_engine: Engine, trained: dict[str, TrainedModel], change: dict[str, Any], field: str
) -> None:
    data = {**ORDER_INPUT, **change}
    if change.get(field, 0) is None:
        del data[field]
    body = run(ml_engine, WHAT_IF, {"input": data})
    assert body["data"] is None
    assert [e["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert field in body["errors"][0]["message"]


def test_models_root_lists_versions_metrics_and_importances(
    ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    body = run(
        ml_engine,
        """{ models(activeOnly: true) { name version algorithm trainedAt metrics features
             featureImportances { feature importance } active trainingRows } }""",
    )
    assert "errors" not in body, body["errors"]
    models = {m["name"]: m for m in body["data"]["models"]}
    assert set(models) == {"order_status", "support_status", "order_value", "churn_risk"}
    for name, m in models.items():
        assert m["active"] is True
        assert m["features"] == list(trained[name].spec.feature_names)
        assert m["trainingRows"] == trained[name].row_count
        assert sum(i["importance"] for i in m["featureImportances"]) == pytest.approx(1.0)
    assert models["order_status"]["algorithm"] == "RandomForestClassifier"
    assert models["support_status"]["metrics"]["macro_f1"] == pytest.approx(
        trained["support_status"].metrics["macro_f1"]
    )
    assert (
        models["order_value"]["metrics"]["baseline_mae"] > models["order_value"]["metrics"]["mae"]
    )


def test_prediction_fields_through_the_http_app_under_row_level_security(
    ml_engine: Engine, trained: dict[str, TrainedModel]
) -> None:
    """The served path: /graphql, an admin principal (demo mode), reads as cdms_api."""
    import warnings

    from api.app import create_app
    from api.security import SecurityConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    app = create_app(ml_engine, security=SecurityConfig(demo_open=True, demo_hosts=("testserver",)))
    query = """{ orders(first: 5, orderBy: [{id: ASC}]) { edges { node { id
        predictedStatus { label model { name } }
        predictedTotal { value } } } } models(activeOnly: true) { name } }"""
    with TestClient(app) as client:
        body = client.post("/graphql", json={"query": query}).json()
    assert "errors" not in body, body["errors"]
    nodes = [e["node"] for e in body["data"]["orders"]["edges"]]
    assert len(nodes) == 5
    assert all(n["predictedStatus"]["model"]["name"] == "order_status" for n in nodes)
    assert all(n["predictedTotal"]["value"] > 0 for n in nodes)
    assert len(body["data"]["models"]) == 4
