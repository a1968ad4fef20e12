"""Transport x role x operation: every path a client can take (HTTP, a batch, a persisted
query, both WebSocket subprotocols) gets the same verdict from the same checks.

A production-mode app with an API key for every role; customer A calls, customer B is
somebody else. ``ALLOWED`` means the checks let it through (the answer may still carry
an error of the data layer, e.g. no model trained in this database).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.security.conftest import Parties
from tests.security.transports import TRANSPORTS, Outcome, run_over

ALLOWED = "ALLOWED"
FORBIDDEN = "FORBIDDEN"
COSTLY = "QUERY_TOO_COMPLEX"
ROLES = ("admin", "analyst", "service", "customer")

# name -> (query with {a}/{b} for the customers' ids, verdict per role)
QUERIES: dict[str, tuple[str, dict[str, str]]] = {
    "cube": (
        "{ cube { sales { orderCount } } }",
        {"admin": ALLOWED, "analyst": ALLOWED, "service": FORBIDDEN, "customer": FORBIDDEN},
    ),
    "prediction field": (
        "{ orders(first: 1) { edges { node { id predictedStatus { label } } } } }",
        {"admin": ALLOWED, "analyst": ALLOWED, "service": ALLOWED, "customer": FORBIDDEN},
    ),
    "prediction field in a fragment": (
        "query { ...F } fragment F on Query { orders(first: 1) { edges { node { ...O } } } }"
        " fragment O on Order { predictedTotal { value } }",
        {"admin": ALLOWED, "analyst": ALLOWED, "service": ALLOWED, "customer": FORBIDDEN},
    ),
    "another customer": (
        '{ customer(id: "{b}") { id } }',
        {"admin": ALLOWED, "analyst": ALLOWED, "service": ALLOWED, "customer": FORBIDDEN},
    ),
    "another customer by a variable default": (
        'query ($c: ID = "{b}") { customer(id: $c) { id } }',
        {"admin": ALLOWED, "analyst": ALLOWED, "service": ALLOWED, "customer": FORBIDDEN},
    ),
    "another customer in a fragment": (
        'query { ...F } fragment F on Query { customer(id: "{b}") { email } }',
        {"admin": ALLOWED, "analyst": ALLOWED, "service": ALLOWED, "customer": FORBIDDEN},
    ),
    "admin mutation": (
        'mutation { updateProduct(id: "0", input: {name: "x"}) { id } }',
        {"admin": ALLOWED, "analyst": FORBIDDEN, "service": FORBIDDEN, "customer": FORBIDDEN},
    ),
    "a feedback edit (a customer: its own, else not found)": (
        'mutation { updateFeedback(id: "0", input: {rating: 3}) { id } }',
        {"admin": ALLOWED, "analyst": FORBIDDEN, "service": FORBIDDEN, "customer": ALLOWED},
    ),
    "too costly": (
        "{ customers(first: 500) { edges { node { orders(first: 500) { edges { node { id }"
        " } } } } } }",
        {r: COSTLY for r in ROLES},
    ),
    "too costly by variable defaults": (
        "query ($a: Int = 500, $b: Int = 500) { customers(first: $a) { edges { node {"
        " orders(first: $b) { edges { node { id } } } } } } }",
        {r: COSTLY for r in ROLES},
    ),
    # probe 10: every row repeats an alias as a JSON key (api.rules.Limits.max_name_chars)
    "an alias of 64 characters": (
        "{ products(first: 1) { edges { node { " + "a" * 64 + ": id } } } }",
        {r: ALLOWED for r in ROLES},
    ),
    "an alias of 65 characters": (
        "{ products(first: 1) { edges { node { " + "a" * 65 + ": id } } } }",
        {r: COSTLY for r in ROLES},
    ),
    "introspection": (
        "{ __schema { queryType { name } } }",
        {"admin": ALLOWED, "analyst": FORBIDDEN, "service": FORBIDDEN, "customer": FORBIDDEN},
    ),
}

SUBSCRIPTIONS: dict[str, tuple[str, dict[str, str]]] = {
    "another customer's status changes": (
        'subscription { orderStatusChanged(customerId: "{b}") { orderId toStatus } }',
        {"admin": ALLOWED, "analyst": ALLOWED, "service": ALLOWED, "customer": FORBIDDEN},
    ),
    "a restricted field inside a subscription": (
        'subscription { orderStatusChanged(customerId: "{a}") { orderId'
        " order { predictedStatus { label } } } }",
        {"admin": ALLOWED, "analyst": ALLOWED, "service": ALLOWED, "customer": FORBIDDEN},
    ),
}


@pytest.fixture(scope="module")
def keys(sec_engine: Engine, parties: Parties) -> dict[str, str]:
    from api.apikeys import create_key

    out = {r: create_key(sec_engine, r, name=f"matrix {r}")[1] for r in ROLES if r != "customer"}
    out["customer"] = create_key(sec_engine, "customer", parties.a, name="matrix A")[1]
    return out


def _fill(query: str, parties: Parties) -> str:
    return query.replace("{a}", str(parties.a)).replace("{b}", str(parties.b))


def _check(verdict: str, out: Outcome, transport: str) -> None:
    assert out.closed is None, f"socket closed ({out.closed})"
    if verdict == ALLOWED:
        assert FORBIDDEN not in out.codes and COSTLY not in out.codes, out
        assert "INTERNAL" not in out.codes, out
        return
    assert out.codes and out.codes[0] == verdict, out
    assert out.data is None, out
    if out.status is not None and transport != "batch":
        assert out.status == (403 if verdict == FORBIDDEN else 400), out


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", list(QUERIES))
def test_every_transport_gives_the_same_verdict(
    transport: str,
    name: str,
    prod: Any,
    sec_engine: Engine,
    parties: Parties,
    keys: dict[str, str],
) -> None:
    query, verdicts = QUERIES[name]
    for role in ROLES:
        headers = {"Authorization": f"Bearer {keys[role]}"}
        out = run_over(transport, prod, sec_engine, headers, _fill(query, parties))
        _check(verdicts[role], out, transport)


@pytest.mark.parametrize("transport", ["ws", "ws-legacy"])
@pytest.mark.parametrize("name", list(SUBSCRIPTIONS))
def test_subscriptions_pass_the_same_checks_on_both_subprotocols(
    transport: str,
    name: str,
    prod: Any,
    sec_engine: Engine,
    parties: Parties,
    keys: dict[str, str],
) -> None:
    query, verdicts = SUBSCRIPTIONS[name]
    for role in ROLES:
        headers = {"Authorization": f"Bearer {keys[role]}"}
        out = run_over(transport, prod, sec_engine, headers, _fill(query, parties))
        if verdicts[role] == ALLOWED:
            assert out.silent and out.closed is None, (role, out)  # waiting for events
        else:
            _check(verdicts[role], out, transport)


@pytest.mark.parametrize("transport", ["http", "batch", "persisted"])
def test_subscriptions_are_refused_over_http(
    transport: str, prod: Any, sec_engine: Engine, parties: Parties, keys: dict[str, str]
) -> None:
    query = _fill(SUBSCRIPTIONS["another customer's status changes"][0], parties)
    out = run_over(transport, prod, sec_engine, {"Authorization": f"Bearer {keys['admin']}"}, query)
    assert out.codes == ["BAD_USER_INPUT"] and out.data is None, out
    if transport != "batch":
        assert out.status == 400
