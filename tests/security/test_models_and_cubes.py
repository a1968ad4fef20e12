"""Cube queries, the model registry and predictions: who may ask (customers never), and
that the roles allowed run them as cdms_api (grants on dw/ml in place)."""

from __future__ import annotations

from typing import Any

from tests.security.conftest import Parties, post, token

CUBE = "{ cube { sales { revenue lineCount } } }"
MODELS = "{ models { name version } }"
PREDICT = '{ predictOrderValue(input: {customerId: "1"}) { value } }'
PREDICT_CHURN = (
    '{ predictChurnRisk(input: {segment: "consumer", country: "Germany", tenureDays: 1, '
    "recencyDays: 1, ordersTotal: 1, orders90d: 1, orders365d: 1, revenue365d: 1}) { label } }"
)
NESTED_CHURN = "{ customers(first: 1) { edges { node { id churnRisk { label } } } } }"
NESTED_PREDICTION = "{ orders(first: 1) { edges { node { id predictedStatus { status } } } } }"


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return str(errors[0]["extensions"]["code"]) if errors else None


def test_customers_get_no_cubes_models_or_predictions(client: Any, parties: Parties) -> None:
    tok = token("customer", parties.a)
    for query in (
        CUBE,
        "{ cubeMeta { name } }",
        MODELS,
        PREDICT,
        PREDICT_CHURN,
        NESTED_CHURN,
        NESTED_PREDICTION,
    ):
        status, body = post(client, tok, query)
        assert status == 403 and code(body) == "FORBIDDEN", (query, body)


def test_service_predicts_but_has_no_cubes(client: Any) -> None:
    tok = token("service")
    for query in (CUBE, MODELS):
        status, body = post(client, tok, query)
        assert status == 403 and code(body) == "FORBIDDEN", (query, body)
    status, body = post(client, tok, NESTED_PREDICTION)
    assert code(body) != "FORBIDDEN", body  # allowed (no model trained here: null or an error)


def test_analysts_run_cube_queries_and_list_models_under_rls(client: Any) -> None:
    tok = token("analyst")
    status, body = post(client, tok, CUBE)
    assert status == 200 and "errors" not in body, body
    assert set(body["data"]["cube"][0]["sales"]) == {"revenue", "lineCount"}
    status, body = post(client, tok, MODELS)
    assert status == 200 and "errors" not in body and body["data"]["models"] == [], body


def test_a_refused_drill_down_spells_the_role_as_every_refusal_does(
    sec_engine: Any, parties: Parties
) -> None:
    """With the request checks forgotten the resolver still refuses a customer's
    cubeDrillDown, naming the role as tokens and the other refusals spell it."""
    from tests.security.conftest import make_app
    from tests.security.test_isolation import _no_checks

    query = '{ cubeDrillDown(member: "customers.country", value: "DE") { children } }'
    with make_app(sec_engine, access=_no_checks()) as client:
        status, body = post(client, token("customer", parties.a), query)
    assert status == 403, body
    (error,) = body["errors"]
    assert error["extensions"] == {
        "code": "FORBIDDEN",
        "reason": "role",
        "role": "customer",
        "field": "cubeDrillDown",
    }
    assert error["message"] == "role customer may not query cubes"
