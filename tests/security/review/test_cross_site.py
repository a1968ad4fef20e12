"""Cross-site request forgery and cross-site WebSocket hijacking (the black-box review).

In demo-open mode (``CDMS_DEMO_OPEN=1``, the README's first command) a request without a
token runs as an admin. Any page a visitor of the demo opens could then:

- POST a mutation with ``Content-Type: text/plain`` (or a form's media type, or none: a
  ``Blob`` body), a "simple" request a browser sends cross-site without asking the
  server first: it was parsed as JSON and run (``updateProduct`` set a price of 0.01);
- open a WebSocket to the API (CORS does not apply to WebSockets) and read every
  customer's e-mail.

Now a POST whose media type is not ``application/json`` is ``415 UNSUPPORTED_MEDIA_TYPE``
before anything runs, whatever the mode; a WebSocket handshake whose ``Origin`` is neither
the server's own nor one of ``CDMS_CORS_ORIGINS`` is refused (4403, HTTP 403) before
``connection_init``. A client that sends no ``Origin`` (not a browser) is unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.websockets import WebSocketDisconnect

from tests.api.conftest import Shop
from tests.security.conftest import Parties, bearer, token
from tests.security.review.conftest import code_of, count, lenient_app
from tests.security.transports import receive, register, ws_init, ws_outcome, ws_send

EVIL = "http://evil.example"
LOOPBACK = ("127.0.0.1", 50000)  # a browser of this machine (demo-open lets it in alone)
PROTOCOLS = ("graphql-transport-ws", "graphql-ws")
EMAILS = "{ customers(first: 2) { edges { node { email } } } }"


@pytest.fixture(scope="module")
def demo(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    """The app as ``CDMS_DEMO_OPEN=1 cdms serve`` runs it: no token is an admin."""
    with lenient_app(
        sec_engine, LOOPBACK, demo_open=True, demo_hosts=("testserver",), production=False
    ) as c:
        yield c


@pytest.fixture(scope="module")
def demo_cors(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    """The same, with ``CDMS_CORS_ORIGINS=https://shop.example``."""
    with lenient_app(
        sec_engine,
        LOOPBACK,
        demo_open=True,
        demo_hosts=("testserver",),
        production=False,
        cors_origins=("https://shop.example",),
    ) as c:
        yield c


def _price(engine: Engine, product: int) -> int:
    cents = "SELECT (unit_price * 100)::int FROM app.products WHERE id = :p"
    return count(engine, cents, p=product)


def _reprice(product: int) -> bytes:
    query = f'mutation {{ updateProduct(id: {product}, input: {{unitPrice: "0.01"}}) {{ id }} }}'
    return ('{"query": "' + query.replace('"', '\\"') + '"}').encode()


# --- 1. POST bodies that are not application/json ------------------------------------------


@pytest.mark.parametrize(
    "media",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,  # fetch() with a Blob or ArrayBuffer body sends no Content-Type
        "application/jsonp",
        "application/json-seq",
        "text/json",
    ],
)
def test_a_cross_site_simple_post_is_refused_with_415_and_writes_nothing(
    demo: Any, sec_engine: Engine, sec_shop: Shop, media: str | None
) -> None:
    product = sec_shop.products[0]
    before = _price(sec_engine, product)
    headers = {"Origin": EVIL} | ({} if media is None else {"Content-Type": media})
    resp = demo.post("/graphql", content=_reprice(product), headers=headers)
    assert resp.status_code == 415, resp.text  # before: 200, and the price was 0.01
    assert code_of(resp.json()) == "UNSUPPORTED_MEDIA_TYPE"
    assert resp.json()["data"] is None
    assert _price(sec_engine, product) == before


@pytest.mark.parametrize("role", ["admin", "customer"])
def test_the_media_type_is_required_with_a_token_too(
    prod: Any, parties: Parties, role: str
) -> None:
    tok = token(role, parties.a if role == "customer" else None)
    for media in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = bearer(tok) | ({} if media is None else {"Content-Type": media})
        resp = prod.post("/graphql", content=b'{"query": "{ __typename }"}', headers=headers)
        assert resp.status_code == 415, (media, resp.text)
        assert code_of(resp.json()) == "UNSUPPORTED_MEDIA_TYPE"


def test_two_content_types_are_refused(demo: Any) -> None:
    resp = demo.post(
        "/graphql",
        content=b'{"query": "{ __typename }"}',
        headers=[("Content-Type", "application/json"), ("Content-Type", "text/plain")],
    )
    assert resp.status_code == 415, resp.text


@pytest.mark.parametrize(
    "media", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_posts_are_answered_as_before(demo: Any, media: str) -> None:
    resp = demo.post(
        "/graphql", content=b'{"query": "{ __typename }"}', headers={"Content-Type": media}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"data": {"__typename": "Query"}}


def test_batches_and_persisted_queries_over_json_posts(demo: Any, sec_engine: Engine) -> None:
    batch = demo.post("/graphql", json=[{"query": "{ __typename }"}] * 2)
    assert batch.status_code == 200 and len(batch.json()) == 2, batch.text
    sha = register(sec_engine, "{ __typename }")
    persisted = demo.post(
        "/graphql", json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}}}
    )
    assert persisted.status_code == 200, persisted.text
    assert persisted.json() == {"data": {"__typename": "Query"}}
    plain = demo.post(
        "/graphql", content=b'[{"query": "{ __typename }"}]', headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code == 415, plain.text


# --- 2. WebSocket handshakes from another origin -------------------------------------------


def _subscribe(client: Any, protocol: str, headers: dict[str, str], url: str = "/graphql") -> Any:
    """Handshake, connection_init, the e-mails: the outcome of the operation."""
    with client.websocket_connect(url, subprotocols=[protocol], headers=dict(headers)) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": EMAILS})
        return ws_outcome(ws, "1")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "origin",
    [
        EVIL,
        "null",  # a sandboxed frame, a file: page
        "http://testserver.evil.example",
        "http://evil.example/http://testserver",
        "http://testserver:8001",  # another port of the same host: another origin
        "https://shop.example.evil",
    ],
)
def test_a_cross_site_websocket_is_refused_before_connection_init(
    demo_cors: Any, protocol: str, origin: str
) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        demo_cors.websocket_connect(
            "/graphql", subprotocols=[protocol], headers={"Origin": origin}
        ) as ws,
    ):
        ws_init(ws, protocol)  # before: acked, and the e-mails followed
    assert refused.value.code == 4403


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "origin",
    [
        None,  # not a browser: no Origin at all
        "http://testserver",  # the page the server itself serves (GraphiQL, the dashboard)
        "https://testserver",  # behind a TLS proxy the server sees ws://, the page https:
        "HTTP://TestServer",
        "https://shop.example",  # CDMS_CORS_ORIGINS
    ],
)
def test_same_origin_listed_and_originless_sockets_are_served(
    demo_cors: Any, protocol: str, origin: str | None
) -> None:
    headers = {} if origin is None else {"Origin": origin}
    out = _subscribe(demo_cors, protocol, headers)
    assert out.codes == [] and len(out.data["customers"]["edges"]) == 2, out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_hosts_port_is_part_of_its_origin(demo: Any, protocol: str) -> None:
    url = "ws://127.0.0.1:8000/graphql"  # the Host header: 127.0.0.1:8000
    out = _subscribe(demo, protocol, {"Origin": "http://127.0.0.1:8000"}, url)
    assert out.codes == [], out
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        demo.websocket_connect(
            url, subprotocols=[protocol], headers={"Origin": "http://127.0.0.1:9999"}
        ) as ws,
    ):
        ws_init(ws, protocol)
    assert refused.value.code == 4403


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_origin_is_checked_with_a_token_too(prod: Any, parties: Parties, protocol: str) -> None:
    """A page of another site cannot set a WebSocket's headers, but it can put a token it
    learnt in connection_init: the origin decides first, whatever the credential."""
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        prod.websocket_connect("/graphql", subprotocols=[protocol], headers={"Origin": EVIL}) as ws,
    ):
        ws_init(ws, protocol, {"Authorization": f"Bearer {token('admin')}"})
    assert refused.value.code == 4403


# --- DNS rebinding: another site's name resolving to this machine ----------------------

PRICE = 'mutation { updateProduct(id: %s, input: {unitPrice: "0.02"}) { id unitPrice } }'
ME = "{ customers(first: 1) { totalCount } }"


@pytest.fixture(scope="module")
def demo_default(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    """``CDMS_DEMO_OPEN=1`` as served, with no ``CDMS_DEMO_HOSTS``, to a browser of this
    machine (a loopback client address)."""
    with lenient_app(sec_engine, LOOPBACK, demo_open=True, production=False) as c:
        yield c


@pytest.mark.parametrize(
    "host", ["evil.example:8000", "evil.example", "testserver", "127.0.0.1.evil.example"]
)
def test_a_demo_server_reached_by_another_name_wants_a_token(
    demo_default: Any, sec_engine: Engine, sec_shop: Shop, host: str
) -> None:
    """A page of ``evil.example`` whose name the attacker re-resolves to 127.0.0.1 is
    same-origin with the API for the browser (its JSON posts need no preflight, its
    socket's Origin matches its Host): the demo's admin is not given to that name."""
    product = sec_shop.products[0]
    resp = demo_default.post(
        f"http://{host}/graphql",
        json={"query": PRICE % product},
        headers={"Origin": f"http://{host}"},
    )
    assert resp.status_code == 401 and code_of(resp.json()) == "UNAUTHENTICATED", resp.text
    forged = f"SELECT count(*) FROM app.products WHERE id = {product} AND unit_price = 0.02"
    assert count(sec_engine, forged) == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_rebound_socket_wants_a_token(demo_default: Any, protocol: str) -> None:
    url = "ws://evil.example:8000/graphql"
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        demo_default.websocket_connect(
            url, subprotocols=[protocol], headers={"Origin": "http://evil.example:8000"}
        ) as ws,
    ):
        ack = ws_init(ws, protocol)  # before: acked as the admin
        assert ack["type"] != "connection_ack", ack
        receive(ws)  # (the close that follows a connection_error)
    assert refused.value.code == 4401


@pytest.mark.parametrize(
    "host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "app.localhost"]
)
def test_a_demo_server_reached_as_this_machine_needs_no_token(demo_default: Any, host: str) -> None:
    resp = demo_default.post(f"http://{host}/graphql", json={"query": ME})
    assert resp.status_code == 200 and resp.json()["data"]["customers"]["totalCount"] > 0


def test_names_listed_in_demo_hosts_need_no_token(sec_engine: Engine, sec_shop: Shop) -> None:
    with lenient_app(sec_engine, demo_open=True, production=False, demo_hosts=("shop.lan",)) as c:
        resp = c.post("http://shop.lan:8000/graphql", json={"query": ME})
        assert resp.status_code == 200, resp.text
        resp = c.post("http://other.lan:8000/graphql", json={"query": ME})
        assert resp.status_code == 401, resp.text


# --- another machine: a demo-open server bound to a network address ------------------------

LAN_CLIENT = ("192.0.2.7", 50000)


@pytest.fixture(scope="module")
def demo_on_lan(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    """``CDMS_DEMO_OPEN=1 CDMS_HOST=0.0.0.0 cdms serve``, asked by another machine of the
    network, which addresses the server by its IP address as a LAN client does."""
    with lenient_app(sec_engine, LAN_CLIENT, demo_open=True, production=False) as c:
        yield c


@pytest.mark.parametrize("host", ["192.0.2.2:8713", "127.0.0.1:8000", "localhost:8000"])
def test_a_demo_server_wants_a_token_from_another_machine(
    demo_on_lan: Any, sec_engine: Engine, sec_shop: Shop, host: str
) -> None:
    """Probe 13 (M4): the Host check let any IP address in, so every neighbour on the
    network was the admin without a token. The client's address must be loopback."""
    product = sec_shop.products[0]
    for headers in ({}, {"X-Forwarded-For": "127.0.0.1"}):  # (uvicorn's to trust, not ours)
        resp = demo_on_lan.post(
            f"http://{host}/graphql", json={"query": PRICE % product}, headers=headers
        )
        assert resp.status_code == 401 and code_of(resp.json()) == "UNAUTHENTICATED", resp.text
    forged = f"SELECT count(*) FROM app.products WHERE id = {product} AND unit_price = 0.02"
    assert count(sec_engine, forged) == 0
    resp = demo_on_lan.post(f"http://{host}/graphql", json={"query": EMAILS})
    assert resp.status_code == 401 and "customers" not in resp.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_demo_socket_wants_a_token_from_another_machine(demo_on_lan: Any, protocol: str) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        demo_on_lan.websocket_connect("ws://192.0.2.2:8713/graphql", subprotocols=[protocol]) as ws,
    ):
        ack = ws_init(ws, protocol)  # before: acked as the admin
        assert ack["type"] != "connection_ack", ack
        receive(ws)  # (the close that follows a connection_error)
    assert refused.value.code == 4401


@pytest.mark.parametrize(
    "client", [("127.0.0.1", 1), ("127.8.9.10", 1), ("::1", 1), ("::ffff:127.0.0.1", 1)]
)
def test_a_demo_server_lets_loopback_clients_in(
    sec_engine: Engine, sec_shop: Shop, client: tuple[str, int]
) -> None:
    with lenient_app(sec_engine, client, demo_open=True, production=False) as c:
        resp = c.post("http://127.0.0.1:8000/graphql", json={"query": ME})
        assert resp.status_code == 200 and resp.json()["data"]["customers"]["totalCount"] > 0


@pytest.mark.parametrize("client", [("testclient", 1), ("192.168.1.5", 1), ("::ffff:10.0.0.1", 1)])
def test_a_demo_server_wants_a_token_from_a_client_that_is_not_loopback(
    sec_engine: Engine, sec_shop: Shop, client: tuple[str, int]
) -> None:
    with lenient_app(sec_engine, client, demo_open=True, production=False) as c:
        assert c.post("http://127.0.0.1:8000/graphql", json={"query": ME}).status_code == 401


def test_a_name_of_demo_hosts_opens_the_demo_to_the_network(
    sec_engine: Engine, sec_shop: Shop
) -> None:
    """The operator's explicit choice (docs/security.md): whoever reaches the server under
    a name of ``CDMS_DEMO_HOSTS`` is the admin, from any address; other names and IP
    addresses still need a loopback client."""
    with lenient_app(
        sec_engine, LAN_CLIENT, demo_open=True, production=False, demo_hosts=("shop.lan",)
    ) as c:
        assert c.post("http://shop.lan:8000/graphql", json={"query": ME}).status_code == 200
        assert c.post("http://192.0.2.2:8000/graphql", json={"query": ME}).status_code == 401


def test_serve_warns_of_proxies_that_may_claim_loopback() -> None:
    """uvicorn takes the client's address from ``X-Forwarded-For`` when the peer is one of
    ``FORWARDED_ALLOW_IPS``: a proxy that is not loopback (or ``*``) lets its clients
    claim 127.0.0.1, so ``cdms serve`` says so on a demo-open server."""
    from api.security import SecurityConfig, demo_warnings

    demo = SecurityConfig(demo_open=True)
    for trusted in ("*", "10.0.0.0/8", "127.0.0.1, 192.168.1.1"):
        (said,) = demo_warnings(demo, "127.0.0.1", trusted)
        assert f"FORWARDED_ALLOW_IPS={trusted}" in said and "loopback" in said
    for trusted in (None, "127.0.0.1,::1", "127.0.0.0/8"):
        assert demo_warnings(demo, "127.0.0.1", trusted) == []
    assert demo_warnings(SecurityConfig(), "0.0.0.0", "*") == []  # not demo-open
