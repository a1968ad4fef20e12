"""While the database is unreachable every path answers SERVICE_UNAVAILABLE: HTTP 503
with Retry-After and a coded GraphQL body (never a plain-text 500 or a dropped
connection), a WebSocket closes with 1013 (try again later) or answers the operation
with the code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.websockets import WebSocketDisconnect

from db.engine import make_engine
from tests.security.conftest import bearer, make_app, token
from tests.security.transports import ws_init, ws_outcome, ws_send

DOWN = "postgresql://postgres@127.0.0.1:9/nowhere?connect_timeout=2"
FAKE_KEY = "cdms_0123abcd_" + "A" * 43


@pytest.fixture(scope="module")
def down() -> Iterator[Any]:
    engine: Engine = make_engine(DOWN)
    with make_app(engine) as client:
        yield client


def _unavailable(resp: Any) -> None:
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["retry-after"]) >= 1
    body = resp.json()
    for one in body if isinstance(body, list) else [body]:  # a batch: every operation
        assert one["data"] is None
        assert one["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"


@pytest.mark.parametrize(
    "payload",
    [
        {"query": "{ products { totalCount } }"},
        [{"query": "{ products { totalCount } }"}, {"query": "{ __typename }"}],
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "a" * 64}}},
        {"query": 'mutation { updateProduct(id: "1", input: {name: "x"}) { id } }'},
    ],
)
@pytest.mark.parametrize("credential", ["jwt", "apikey"])
def test_http_answers_503_while_the_database_is_down(
    down: Any, payload: Any, credential: str
) -> None:
    tok = token("admin") if credential == "jwt" else FAKE_KEY
    _unavailable(down.post("/graphql", json=payload, headers=bearer(tok)))


def test_healthz_says_unavailable(down: Any) -> None:
    resp = down.get("/healthz")
    assert resp.status_code == 503 and resp.json()["database"] == "unreachable"
    ready = down.get("/readyz")
    assert ready.status_code == 503 and ready.json()["api"]["database"] == "unreachable"


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
def test_websockets_while_the_database_is_down(down: Any, protocol: str) -> None:
    # an API key cannot be checked: the socket is closed with "try again later"
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        down.websocket_connect("/graphql", subprotocols=[protocol], headers=bearer(FAKE_KEY)) as ws,
    ):
        ws_init(ws, protocol)
    assert closed.value.code == 1013
    # a JWT is checked without the database: the operation gets the code
    with down.websocket_connect(
        "/graphql", subprotocols=[protocol], headers=bearer(token("admin"))
    ) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": "{ products { totalCount } }"})
        out = ws_outcome(ws, "1")
        assert out.codes == ["SERVICE_UNAVAILABLE"] and out.data is None, out
