"""Bearer tokens: a malformed or hostile JWT is a 401 (HTTP) or a refused handshake
(WebSocket), never a 500; ``exp`` must be a finite time within a bounded lifetime;
``customer_id`` a canonical positive integer; two Authorization headers are refused."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.websockets import WebSocketDisconnect

from tests.api.conftest import Shop
from tests.security.conftest import SECRET, Parties, bearer, make_app, token

WHO = {"query": "{ products { totalCount } }"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged(claims_json: str, secret: str = SECRET) -> str:
    """An HS256 token over a payload given as JSON text (so it may hold NaN, 1e308...)."""
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(claims_json.encode())
    mac = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


@pytest.fixture(scope="module")
def client(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    with make_app(sec_engine, production=True) as c:
        yield c


def _status(client: Any, tok: str) -> tuple[int, Any]:
    resp = client.post("/graphql", json=WHO, headers=bearer(tok))
    return resp.status_code, resp.json()


@pytest.mark.parametrize(
    "tok",
    [
        "eyJhbGciOiJIUzI1NiJ9.e30.A",  # a signature that is not base64 of 32 bytes
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "eyJhbGciOiJIUzI1NiJ9..",
        "a.b.c",
        "...",
        "eyJhbGciOiJub25lIn0.eyJyb2xlIjoiYWRtaW4ifQ.",  # alg none
    ],
)
def test_malformed_tokens_are_401_without_a_traceback(
    client: Any, tok: str, caplog: pytest.LogCaptureFixture
) -> None:
    status, body = _status(client, tok)
    assert status == 401 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_a_malformed_token_refuses_the_websocket_handshake(client: Any) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect(
            "/graphql",
            subprotocols=["graphql-transport-ws"],
            headers=bearer("eyJhbGciOiJIUzI1NiJ9.e30.A"),
        ) as ws,
    ):
        ws.receive_json()
    assert closed.value.code == 4401


@pytest.mark.parametrize("exp", ["NaN", "Infinity", "-Infinity", "1e308", "1e30", '"soon"', "true"])
def test_exp_must_be_a_finite_time_within_the_lifetime(client: Any, exp: str) -> None:
    status, body = _status(client, forged(f'{{"role": "admin", "exp": {exp}}}'))
    assert status == 401, body


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e308"])
def test_other_time_claims_must_be_finite(client: Any, claim: str, value: str) -> None:
    exp = int(time.time()) + 600
    status, body = _status(client, forged(f'{{"role": "admin", "exp": {exp}, "{claim}": {value}}}'))
    assert status == 401, body


@pytest.mark.parametrize(
    "customer_id",
    ['" 2 "', '"1_0"', '"\\u0661"', "1000000000000000000000000000000", '"02"', "0", "-1",
     "true", "2.0", '"2.5"', '"+2"', "9223372036854775808"],
)  # fmt: skip
def test_customer_id_must_be_a_canonical_positive_bigint(client: Any, customer_id: str) -> None:
    exp = int(time.time()) + 600
    status, body = _status(
        client, forged(f'{{"role": "customer", "exp": {exp}, "customer_id": {customer_id}}}')
    )
    assert status == 401, (customer_id, body)


def test_customer_id_as_a_number_or_a_plain_string_works(client: Any, parties: Parties) -> None:
    exp = int(time.time()) + 600
    for cid in (str(parties.a), f'"{parties.a}"'):
        status, body = _status(
            client, forged(f'{{"role": "customer", "exp": {exp}, "customer_id": {cid}}}')
        )
        assert status == 200 and body["data"]["products"]["totalCount"] == 5, body


def test_audience_and_issuer_when_configured(sec_engine: Engine, sec_shop: Shop) -> None:
    with make_app(sec_engine, jwt_audience="cdms", jwt_issuer="https://idp.example") as c:
        good = token("admin", aud="cdms", iss="https://idp.example")
        assert c.post("/graphql", json=WHO, headers=bearer(good)).status_code == 200
        for bad in (token("admin"), token("admin", aud="other", iss="https://idp.example"),
                    token("admin", aud="cdms", iss="https://evil.example")):  # fmt: skip
            assert c.post("/graphql", json=WHO, headers=bearer(bad)).status_code == 401


def test_two_authorization_headers_are_refused(client: Any) -> None:
    resp = client.post(
        "/graphql",
        json=WHO,
        headers=[
            ("Authorization", f"Bearer {token('customer', 1)}"),
            ("Authorization", f"Bearer {token('admin')}"),
        ],
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


HUGE = "9" * 400  # a JSON integer Python reads whole, and float() cannot hold


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_a_signed_token_with_a_huge_integer_time_is_a_401(
    client: Any, claim: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 400-digit time claim raised OverflowError past the decoder: a plain-text 500 over
    HTTP and in the WebSocket handshake (probe of 2026-12-07)."""
    exp = int(time.time()) + 600
    claims = {"exp": str(exp), claim: HUGE}
    tok = forged("{" + ", ".join(f'"{k}": {v}' for k, v in claims.items()) + ', "role": "admin"}')
    status, body = _status(client, tok)
    assert status == 401 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect(
            "/graphql", subprotocols=["graphql-transport-ws"], headers=bearer(tok)
        ) as ws,
    ):
        ws.receive_json()
    assert closed.value.code == 4401
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_a_subject_longer_than_200_characters_is_refused(client: Any) -> None:
    """The subject is recorded as the actor of every write (status history, returns...):
    a 40,000-character sub was stored in each row it wrote."""
    status, body = _status(client, token("admin", sub="s" * 201))
    assert status == 401 and "sub" in body["errors"][0]["message"], body
    status, body = _status(client, token("admin", sub="s" * 200))
    assert status == 200, body


HOSTILE_SUBS = [
    'ops\nINFO:     127.0.0.1 - "POST /admin" 200 OK',  # a forged log line
    "ops\x1b]0;owned\x07\x1b[2J",  # retitles and clears the terminal that shows it
    "ops\u202egnp.exe",  # a bidi override: shown reversed
    "ops\r",
    "ops\x85next",  # NEL (Cc), a line break to some readers
    "ops\u2028next",  # line separator (Zl)
    "ops\u2029next",  # paragraph separator (Zp)
    "ops\u2066exe.gnp\u2069",  # a bidi isolate
    "ops\u200fx",  # right-to-left mark
    "ops\u061cx",  # Arabic letter mark
    "ops\ud800",  # a lone surrogate (JSON carries one; no text encoding does)
    "ops\ue000",  # private use: no meaning shared with whoever reads it
]


@pytest.mark.parametrize("sub", HOSTILE_SUBS)
def test_a_subject_with_control_characters_is_refused_on_every_transport(
    client: Any, sub: str
) -> None:
    """A staff token's ``sub`` is the actor of its writes (``changedBy``, returns' and
    tickets' ``*_by``) and reaches log lines: control characters, line breaks and bidi
    overrides in it forged lines and ran escape sequences on the terminal of whoever read
    them (hostile probe 22, L3). Refused as API-key names are: 401 UNAUTHENTICATED over
    HTTP, 4401 in the handshake or at connection_init (both subprotocols)."""
    tok = token("service", sub=sub)
    status, body = _status(client, tok)
    assert status == 401, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED", error
    assert "sub" in error["message"] and sub not in error["message"], error
    for protocol in ("graphql-transport-ws", "graphql-ws"):
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/graphql", subprotocols=[protocol], headers=bearer(tok)),
        ):
            pass
        assert closed.value.code == 4401, protocol
        with client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
            ws.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {tok}"}})
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:  # graphql-ws tells connection_error first
                    ws.receive_json()
            assert closed.value.code == 4401, protocol


def test_a_subject_in_any_script_is_accepted(client: Any) -> None:
    """Text as people write it: ZWNJ in Persian words, ZWJ in emoji sequences and Indic
    conjuncts, a no-break space in a name (isprintable() refused all three: hostile probe 23,
    L4), right-to-left scripts, combining marks."""
    for sub in (
        "jörg.müller",
        "ключ",
        "ops team",
        "運用",
        "Zoë Ångström",
        "x\u0301",
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647",  # Persian, with a ZWNJ
        "Jean\u00a0Dupont",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family: a ZWJ sequence
        "\u0915\u094d\u200d\u0937",  # Devanagari with a ZWJ
        "\u05e9\u05dc\u05d5\u05dd",  # Hebrew
        "\u0645\u062d\u0645\u062f",  # Arabic
        "ops\u200b",  # a zero-width space: forges no line, reorders nothing
    ):
        status, body = _status(client, token("service", sub=sub))
        assert status == 200, (sub, body)


@pytest.mark.parametrize(
    ("tok", "said"),
    [
        (forged('{"role": "admin", "exp": 1}', secret="another-secret-0123456789abcdef"),
         "invalid token: signature does not match"),
        ("eyJhbGciOiJIUzI1NiJ9.e30.A", "invalid token: malformed"),
        ("eyJhbGciOiJub25lIn0.eyJyb2xlIjoiYWRtaW4ifQ.",
         "invalid token: algorithm not allowed (HS256 only)"),
    ],
)  # fmt: skip
def test_a_refused_token_is_told_in_our_words(client: Any, tok: str, said: str) -> None:
    """401 messages echoed PyJWT's and Python's (`sys.set_int_max_str_digits()`...)."""
    status, body = _status(client, tok)
    assert (status, body["errors"][0]["message"]) == (401, said), body
