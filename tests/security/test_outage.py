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

import api.ws
from api.apikeys import create_key
from db.engine import make_engine
from db.errors import DatabaseUnavailableError
from tests.api.conftest import Shop
from tests.security.conftest import Parties, bearer, make_app, token
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


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
def test_an_open_socket_whose_key_cannot_be_checked_again_gets_the_code(
    sec_engine: Engine, sec_shop: Shop, parties: Parties, protocol: str, monkeypatch: Any
) -> None:
    """A socket opened while the database was up, with an API key whose cached check has
    run out (``CDMS_APIKEY_CACHE_SECONDS=0``: every operation looks it up): when the
    database goes away, the next operation is answered SERVICE_UNAVAILABLE and the socket
    stays open (it was torn down by the unhandled error)."""
    key = create_key(sec_engine, "customer", parties.a, name="outage")[1]
    with (
        make_app(sec_engine, apikey_cache_s=0) as client,
        client.websocket_connect("/graphql", subprotocols=[protocol], headers=bearer(key)) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": "{ __typename }"})
        assert ws_outcome(ws, "1").data == {"__typename": "Query"}

        async def database_away(*_: Any, **__: Any) -> Any:
            raise DatabaseUnavailableError("the database is unavailable; try again shortly")

        real = api.ws.authenticate
        monkeypatch.setattr(api.ws, "authenticate", database_away)
        ws_send(ws, protocol, "2", {"query": "{ __typename }"})
        out = ws_outcome(ws, "2")
        assert out.closed is None and out.codes == ["SERVICE_UNAVAILABLE"], out
        monkeypatch.setattr(api.ws, "authenticate", real)  # back: the socket still answers
        ws_send(ws, protocol, "3", {"query": "{ __typename }"})
        assert ws_outcome(ws, "3").data == {"__typename": "Query"}


def test_a_write_on_a_server_still_read_only_answers_503(
    sec_engine: Engine, sec_shop: Shop
) -> None:
    """A failover: HAProxy sends writes to the standby Patroni is promoting while PostgreSQL
    still replays (read-only). The write is refused as 503 SERVICE_UNAVAILABLE, which a
    client retries, never as INTERNAL; reads are served meanwhile."""
    url = sec_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    read_only = (
        url + ("&" if "?" in url else "?") + "options=-c%20default_transaction_read_only%3Don"
    )
    pid = sec_shop.products[0]
    write = f'mutation {{ updateProduct(id: "{pid}", input: {{name: "x"}}) {{ id }} }}'
    with make_app(make_engine(read_only)) as client:
        _unavailable(client.post("/graphql", json={"query": write}, headers=bearer(token("admin"))))
        read = client.post("/graphql", json={"query": "{ products { totalCount } }"},
                           headers=bearer(token("admin")))  # fmt: skip
        assert read.status_code == 200 and "errors" not in read.json(), read.text


def test_no_connection_free_for_an_api_key_lookup_is_503(
    sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """Every pooled connection busy (here: the only one, taken): looking up an API key
    times out waiting for one, which is 503 SERVICE_UNAVAILABLE in JSON with Retry-After
    (was the pool's TimeoutError, a plain-text 500), as are a read and the rate limiter's
    statement."""
    import sqlalchemy as sa

    key = create_key(sec_engine, "customer", parties.a, name="busy")[1]
    engine = sa.create_engine(
        sec_engine.url.render_as_string(hide_password=False),
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.2,
    )
    try:
        with make_app(engine, apikey_cache_s=0) as client, engine.connect():
            for tok in (key, token("admin")):
                _unavailable(
                    client.post(
                        "/graphql",
                        json={"query": "{ products { totalCount } }"},
                        headers=bearer(tok),
                    )
                )
    finally:
        engine.dispose()
