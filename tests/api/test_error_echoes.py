"""An error never echoes unbounded input: of a value or a name a client sent it quotes at
most 64 characters, with an ellipsis and the length (a 900,000-character ticket subject
came back whole in the message and again in ``extensions.value``: 1.8 MB for one refused
request), whoever words it: a procedure (app.raise_bad_column), our scalars and resolvers,
or graphql-core's validation."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.api.conftest import Shop, TestClient

OPEN = """mutation ($input: OpenSupportTicketInput!) { openSupportTicket(input: $input) { id } }"""


def _refused(client: TestClient, query: str, **variables: Any) -> dict[str, Any]:
    resp = client.post("/graphql", json={"query": query, "variables": variables})
    assert resp.status_code == 400, resp.text[:2000]
    assert len(resp.text) < 1_000, resp.text[:2000]
    body: dict[str, Any] = resp.json()
    assert body["data"] is None and len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    return error


def _tickets(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM app.support_tickets")).scalar_one())


def test_a_long_subject_is_quoted_64_characters_long(
    w_client: TestClient, w_engine: Engine, w_shop: Shop
) -> None:
    before = _tickets(w_engine)
    ticket = {"customerId": str(w_shop.customers[1]), "category": "OTHER", "channel": "WEB"}
    error = _refused(w_client, OPEN, input={**ticket, "subject": "y" * 900_000})
    assert error["message"] == f"invalid subject: {'y' * 64}… (900,000 characters)"
    assert error["extensions"]["field"] == "subject"
    assert error["extensions"]["value"] == "y" * 64 + "…"
    error = _refused(w_client, OPEN, input={**ticket, "subject": ""})
    assert error["message"] == "subject must not be empty"
    assert (error["extensions"]["field"], error["extensions"]["reason"]) == ("subject", "empty")
    assert _refused(w_client, OPEN, input={**ticket, "subject": "  "})["message"] == (
        "subject must not be blank"
    )
    assert _tickets(w_engine) == before


def test_graphql_validation_quotes_names_and_values_64_characters_long(
    w_client: TestClient, w_shop: Shop
) -> None:
    long = "y" * 200_000
    cid = w_shop.customers[0]
    for query, variables in [
        (f"{{ {'y' * 64} }}", {}),  # an unknown field (a longer name: refused unquoted, below)
        (f'mutation {{ submitFeedback(input: {{customerId: "{cid}", rating: "{long}"}})'
         " { id } }", {}),  # a literal of the wrong type
        ("mutation ($c: TicketCategory!) { openSupportTicket(input: {customerId:"
         f' "{cid}", category: $c, channel: WEB, subject: "s"}}) {{ id }} }}', {"c": long}),
    ]:  # fmt: skip
        error = _refused(w_client, query, **variables)
        if "(200,000 characters)" not in error["message"]:
            assert f"'{'y' * 64}'" in error["message"], error
            continue
        assert "y" * 64 + "…" in error["message"], error
    # a name of more than 64 characters (an unknown field or argument) is refused before
    # validation, naming only its length (tests/security/test_name_lengths.py)
    for query in (f"{{ {long} }}", f"{{ customers({long}: 1) {{ totalCount }} }}"):
        resp = w_client.post("/graphql", json={"query": query})
        assert resp.status_code == 400 and len(resp.text) < 1_000, resp.text[:2000]
        assert resp.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert "(200,000 characters)" not in resp.text and "200,000 characters" in resp.text


def test_our_own_messages_quote_values_64_characters_long(
    w_client: TestClient, w_shop: Shop
) -> None:
    long = "y" * 200_000
    update = """mutation ($id: ID!, $input: UpdateProductInput!) {
      updateProduct(id: $id, input: $input) { id } }"""
    error = _refused(w_client, update, id=str(w_shop.products[0]), input={"unitPrice": long})
    assert error["message"] == f"invalid unitPrice: not a decimal number: '{'y' * 64}…'" + (
        " (200,000 characters)"
    )
    assert (error["extensions"]["field"], error["extensions"]["value"]) == (
        "unitPrice",
        "y" * 64 + "…",
    )
    error = _refused(w_client, "query ($id: ID!) { customer(id: $id) { id } }", id=long)
    assert "(200,000 characters)" in error["message"]
    error = _refused(w_client, f'{{ cube(timezone: "{long}") {{ orders {{ count }} }} }}')
    assert "(200,000 characters)" in error["message"]
    assert error["extensions"]["value"] == "y" * 64 + "…"
    resp = w_client.post("/graphql", json={"query": "query Q { __typename }",
                                           "operationName": long})  # fmt: skip
    assert resp.status_code == 400 and len(resp.text) < 1_000, resp.text[:2000]


def test_the_pages_and_probes_quote_a_path_64_characters_long(w_client: TestClient) -> None:
    """The dashboard's and GraphiQL's 404 named the whole path it was asked for (a 60,000
    character path came back whole); the other routes outside /graphql echo nothing of a
    path, a query string or a method."""
    long = "y" * 60_000
    for prefix in ("/dashboard/", "/dashboard/static/", "/graphiql/", "/graphiql/static/"):
        resp = w_client.get(prefix + long)
        assert resp.status_code == 404 and len(resp.text) < 1_000, resp.text[:300]
        error = resp.json()["errors"][0]
        assert error["extensions"]["code"] == "NOT_FOUND", error
        assert f"{prefix}{'y' * (64 - len(prefix))}…" in error["message"], error
        assert f"({len(prefix) + 60_000:,} characters)" in error["message"], error
    # a short one is named whole
    missing = w_client.get("/graphiql/static/nope.js").json()["errors"][0]["message"]
    assert missing == "no such GraphiQL file: '/graphiql/static/nope.js'"
    for method, url in [
        ("POST", "/dashboard/" + long),
        ("DELETE", "/graphiql/static/" + long),
        ("GET", "/healthz?" + long),
        ("GET", f"/readyz?{long[:30_000]}={long[:30_000]}"),
        ("POST", "/healthz?" + long),
        ("GET", "/" + long),
        ("POST", "/" + long),
        ("GET", "/graphql/" + long),
        ("GET", "/graphql?" + long),
        ("PUT", "/graphql?" + long),
    ]:
        resp = w_client.request(method, url)
        # (/readyz answers 503 while this shop's warehouse is not loaded)
        assert resp.status_code != 500 and len(resp.text) < 5_000, (method, resp.text[:300])
        assert "y" * 65 not in resp.text, (method, url[:40], resp.text[:300])
