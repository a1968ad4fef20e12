"""Limits and bad input: each gets its code and a 4xx or 200-with-errors, never a 500."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
import pytest
from graphql import GraphQLError
from sqlalchemy.engine import Engine

from db.config import to_libpq_url
from schema.errors import INTERNAL_MESSAGE, classify
from tests.api.conftest import Gql, Shop, TestClient, make_client
from tests.api.helpers import codes, data

JSON = "application/json"


def test_depth_limit(gql: Gql, shop: Shop) -> None:
    deep = "{ customers { edges { node { orders { edges { node { customer { orders { edges {"
    deep += " node { customer { orders { edges { node { id } } } } } } } } } } } } } } }"
    body = gql(deep)
    assert codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body.get("data") is None


def test_alias_limit(gql: Gql, shop: Shop) -> None:
    query = "{ " + " ".join(f"a{i}: customer(id: {i}) {{ id }}" for i in range(31)) + " }"
    assert codes(gql(query)) == ["QUERY_TOO_COMPLEX"]
    fine = "{ " + " ".join(f"a{i}: customer(id: {i}) {{ id }}" for i in range(5)) + " }"
    assert "errors" not in gql(fine)


def test_token_limit(gql: Gql, shop: Shop) -> None:
    query = "{ customers { edges { node { " + "id " * 6000 + "} } } }"
    assert codes(gql(query)) == ["QUERY_TOO_COMPLEX"]


def test_batches(client: TestClient, shop: Shop) -> None:
    ok = client.post("/graphql", json=[{"query": "{ customer(id: 1) { id } }"}] * 2)
    assert ok.status_code == 200
    assert [r["data"]["customer"]["id"] for r in ok.json()] == ["1", "1"]
    too_many = client.post("/graphql", json=[{"query": "{ customer(id: 1) { id } }"}] * 11)
    assert too_many.status_code == 400
    assert codes(too_many.json()) == ["QUERY_TOO_COMPLEX"]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"{not json", {"content-type": "application/json"}),
        (b'{"query": 5}', {"content-type": "application/json"}),
        (b'{"variables": {}}', {"content-type": "application/json"}),
        (b'{"query": "{ customer(id: 1) { id } }", "variables": [1]}', {}),
        (b"[]", {}),
        (b"\xff\xfe", {"content-type": "application/json; charset=utf-16"}),
    ],
)
def test_malformed_requests_are_400_with_graphql_errors(
    client: TestClient, shop: Shop, body: bytes, headers: dict[str, str]
) -> None:
    resp = client.post("/graphql", content=body, headers={"content-type": JSON, **headers})
    assert resp.status_code == 400
    assert codes(resp.json()) == ["BAD_USER_INPUT"]


def test_ten_megabyte_body_is_refused_quickly(client: TestClient, shop: Shop) -> None:
    big = b'{"query": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    started = time.perf_counter()
    resp = client.post("/graphql", content=big, headers={"content-type": JSON})
    assert resp.status_code == 413
    assert codes(resp.json()) == ["PAYLOAD_TOO_LARGE"]
    assert time.perf_counter() - started < 2


def test_a_content_length_of_thousands_of_digits_is_too_large(api_engine: Engine) -> None:
    """A Content-Length past Python's 4,300-digit limit on converting a string to an int,
    or holding a digit that is no ASCII one (latin-1's superscript two), made the size
    check raise (a 500) instead of answering 413, or reading the body."""
    import asyncio
    import json

    from api.app import create_app
    from api.security import SecurityConfig
    from tests.api.conftest import options

    app = create_app(api_engine, SecurityConfig(demo_open=True), options())
    body = b'{"query": "{ __typename }"}'

    def post(declared: bytes) -> tuple[int, Any]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/graphql",
            "headers": [(b"content-type", JSON.encode()), (b"host", b"localhost"),
                        (b"content-length", declared)],
            "query_string": b"",
            "client": ("127.0.0.1", 40000),  # (demo-open: this machine's)
        }  # fmt: skip
        asyncio.run(app(scope, receive, send))
        return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))

    for declared in (b"9" * 5_000, b"1" + b"0" * 30, b"0" * 5_000 + b"9" * 8):
        status, answer = post(declared)
        assert (status, codes(answer)) == (413, ["PAYLOAD_TOO_LARGE"]), (declared[:20], answer)
    status, answer = post(b"\xb2")  # says nothing: the body is read as it comes
    assert (status, answer["data"]) == (200, {"__typename": "Query"}), answer


def test_unknown_fields_and_wrong_types(gql: Gql, shop: Shop) -> None:
    assert codes(gql("{ customers { nope } }")) == ["BAD_USER_INPUT"]
    assert codes(gql('{ customers(first: "ten") { totalCount } }')) == ["BAD_USER_INPUT"]
    assert codes(gql("{ customers(")) == ["BAD_USER_INPUT"]
    assert codes(gql("query ($n: Int!) { customers(first: $n) { totalCount } }")) == [
        "BAD_USER_INPUT"
    ]


def test_statement_timeout(api_engine: Engine, api_url: str, shop: Shop) -> None:
    """A read blocked behind a lock is cancelled by the per-request statement_timeout."""
    locked = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(to_libpq_url(api_url)) as conn:
            conn.execute("LOCK TABLE app.products IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(10)
            conn.rollback()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        with make_client(api_engine, statement_timeout_ms=300) as client:
            started = time.perf_counter()
            resp = client.post("/graphql", json={"query": "{ products { totalCount } }"})
            elapsed = time.perf_counter() - started
        assert resp.status_code == 200
        assert codes(resp.json()) == ["TIMEOUT"]
        assert elapsed < 5
    finally:
        release.set()
        holder.join()


def test_graphiql_on_get_and_health(client: TestClient, shop: Shop) -> None:
    page = client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    assert client.get("/healthz").status_code in {200, 503}
    assert client.put("/graphql", content=b"{}").status_code == 405


def test_unexpected_errors_are_masked_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    err = GraphQLError("boom: secret dsn", original_error=RuntimeError("secret dsn"))
    with caplog.at_level(logging.ERROR, logger="cdms.api"):
        masked = classify(err, "req123")
    assert masked.message == INTERNAL_MESSAGE
    assert masked.extensions == {"code": "INTERNAL", "requestId": "req123"}
    assert "secret" not in str(masked.formatted)
    assert "req123" in caplog.text and "secret dsn" in caplog.text


def test_an_unexpected_error_of_a_read_is_masked_json(
    client: TestClient,
    shop: Shop,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fault past the checks (a bug, a driver error no code maps) is INTERNAL with the
    request id, as JSON: never a plain-text 500 (an orderBy of 99 keys was one)."""
    from schema import lane

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("secret dsn")

    monkeypatch.setattr(lane, "fetch", broken)
    with caplog.at_level(logging.ERROR, logger="cdms.api"):
        resp = client.post("/graphql", json={"query": "{ orders(first: 1) { totalCount } }"})
    assert resp.status_code == 500 and resp.headers["content-type"] == "application/json"
    error = resp.json()["errors"][0]
    assert error["message"] == INTERNAL_MESSAGE and error["extensions"]["code"] == "INTERNAL"
    assert "secret" not in resp.text and error["extensions"]["requestId"] in caplog.text


def test_expected_errors_keep_their_fields(gql: Gql, shop: Shop) -> None:
    body = gql("{ orders(first: 600) { totalCount } }")
    err = body["errors"][0]
    assert err["extensions"] == {"code": "BAD_USER_INPUT", "field": "first", "max": 500}
    assert "locations" in err and "traceback" not in str(body).lower()
    assert data(gql("{ orders(first: 1) { totalCount } }"))["orders"]["totalCount"] > 0


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"query": "subscription { orderStatusChanged(customerId: 1) { orderId } }"}, 400),
        ({"query": "query A { customer(id: 1) { id } }", "operationName": "Z"}, 400),
    ],
)
def test_operations_that_cannot_run(
    client: TestClient, shop: Shop, payload: dict[str, str], status: int
) -> None:
    resp = client.post("/graphql", json=payload)
    assert resp.status_code == status
    assert codes(resp.json()) == ["BAD_USER_INPUT"]


def test_named_operation_and_introspection(gql: Gql, shop: Shop) -> None:
    body = gql("query A { customer(id: 1) { id } } query B { __typename }", operationName="B")
    assert body == {"data": {"__typename": "Query"}}


def test_exhausted_pool_is_service_unavailable(api_url: str, shop: Shop) -> None:
    """More concurrent requests than pooled connections: a clear error, not INTERNAL."""
    import sqlalchemy as sa

    from db.config import to_sqlalchemy_url

    engine = sa.create_engine(
        to_sqlalchemy_url(api_url), pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    try:
        with engine.connect(), make_client(engine) as client:  # the only connection is taken
            read = client.post("/graphql", json={"query": "{ products { totalCount } }"})
            write = client.post(
                "/graphql",
                json={"query": 'mutation { updateProduct(id: 1, input: {brand: "x"}) { id } }'},
            )
        assert codes(read.json()) == ["SERVICE_UNAVAILABLE"]
        assert codes(write.json()) == ["SERVICE_UNAVAILABLE"]
    finally:
        engine.dispose()


def test_streamed_body_over_the_limit_is_refused(api_engine: Engine) -> None:
    """Without a Content-Length, the size is checked while streaming and reading stops."""
    import asyncio
    import json

    from api.app import create_app
    from api.security import SecurityConfig
    from tests.api.conftest import options

    endpoint = create_app(
        api_engine,
        SecurityConfig(demo_open=True),
        options(max_body_bytes=1000),
    )
    received = 0
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b" " * 400, "more_body": received < 1000}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "headers": [(b"content-type", JSON.encode()), (b"host", b"localhost")],
        "query_string": b"",
        "client": ("127.0.0.1", 40000),  # (demo-open: this machine's)
    }
    asyncio.run(endpoint(scope, receive, send))
    assert sent[0]["status"] == 413
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert codes(body) == ["PAYLOAD_TOO_LARGE"]
    assert received == 3  # 1,200 bytes read of the 400,000 offered


def test_argument_errors_refuse_the_whole_request_before_anything_runs(
    client: TestClient, shop: Shop
) -> None:
    """Page caps, orderBy, cursors and ids are checked for every operation of a request
    before any of them runs, whatever runs it: a batch is refused whole (its mutation is
    not made), a mutation's payload, a query mixing a resolver root and a cube cell's
    drill answer 400 as a plain read does."""
    product = shop.products[0]
    rename = f'updateProduct(id: "{product}", input: {{name: "Renamed"}})'
    bad_read = {"query": "{ products(first: 501) { totalCount } }"}
    batch = client.post("/graphql", json=[{"query": f"mutation {{ {rename} {{ id }} }}"}, bad_read])
    assert batch.status_code == 400, batch.text
    assert codes(batch.json()) == ["BAD_USER_INPUT"]
    payload = f"mutation {{ {rename} {{ id feedback(first: 501) {{ totalCount }} }} }}"
    mixed = '{ products(after: "garbage") { totalCount } models { name } }'
    drill = "{ cube(limit: 1) { orders { count } drill { orders(first: 501) { totalCount } } } }"
    for query in (payload, mixed, drill):
        resp = client.post("/graphql", json={"query": query})
        assert resp.status_code == 400, resp.text
        assert resp.json()["data"] is None and codes(resp.json()) == ["BAD_USER_INPUT"]
    name = client.post("/graphql", json={"query": f"{{ product(id: {product}) {{ name }} }}"})
    assert data(name.json())["product"]["name"] == "Widget 1"
