"""Authentication: nothing but /healthz without a token; API keys (hashed, revocable) and
HS256 JWTs (signature, exp, claims checked); roles decide what a principal may do."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.apikeys import create_key, hash_key, list_keys, revoke_key
from api.auth import JwtRules, UnauthenticatedError, decode_jwt, encode_jwt
from api.security import SecurityConfig
from db.errors import BadUserInputError, ConfigError, NotFoundError
from tests.api.conftest import Shop
from tests.security.conftest import SECRET, Parties, bearer, make_app, post, token

WHO = "{ customers { totalCount } }"


def code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


def test_without_a_token_only_healthz(client: Any) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")  # open too, and holds no secret
    assert ready.status_code in {200, 503}
    text = ready.text.lower()
    for secret in ("password", "postgresql://", "secret", "token", "select ", "error"):
        assert secret not in text, ready.text
    assert set(ready.json()) == {"ready", "api", "warehouse", "models"}
    resp = client.post("/graphql", json={"query": WHO})
    assert resp.status_code == 401 and code(resp.json()) == "UNAUTHENTICATED"
    assert resp.headers["www-authenticate"] == "Bearer"
    assert client.get("/graphql").status_code == 401  # GraphiQL too
    for header in ("Basic dXNlcjpwdw==", "Bearer", "Bearer not-a-token", "Bearer a.b.c"):
        resp = client.post("/graphql", json={"query": WHO}, headers={"Authorization": header})
        assert resp.status_code == 401, header
        assert code(resp.json()) == "UNAUTHENTICATED"


# what tells when the shop last changed, how often it loads, or which code it runs
_ACTIVITY = ("newestChangeAt", "version", "lastRunId", "lastRunAt", "lagSeconds", "state",
             "oldestPendingAt", "revision", "expectedRevision")  # fmt: skip


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    return set()


def test_in_production_the_open_probes_tell_an_anonymous_caller_only_whether(
    prod: Any, api_key: Callable[..., str]
) -> None:
    """Probe 8 (2026-12-07): an anonymous poller of /healthz read, to the microsecond, when
    any customer last wrote (``newestChangeAt``) and counted the loads (``version``), the
    same facts GraphQL gives staff only. In production an anonymous caller (or a customer)
    is told only whether each part is up; the staff's tokens get the detail."""
    for path in ("/healthz", "/readyz"):
        for headers in ({}, bearer(token("customer", 1))):
            resp = prod.get(path, headers=headers)
            assert resp.status_code in {200, 503}, (path, resp.text)
            told = _keys(resp.json())
            assert not told & set(_ACTIVITY), (path, headers, resp.json())
        for role in ("admin", "service", "analyst"):
            resp = prod.get(path, headers=bearer(token(role)))
            assert resp.status_code in {200, 503}, (path, role, resp.text)
            assert "revision" in _keys(resp.json()), (path, role, resp.json())
    healthz = prod.get("/healthz").json()
    assert healthz["status"] == "ok" and healthz["database"] == "ok"
    assert set(healthz["warehouse"]) == {"ok", "failures"}, healthz
    readyz = prod.get("/readyz").json()
    assert set(readyz) == {"ready", "api", "warehouse", "models"}
    assert all(set(m) == {"ready"} for m in readyz["models"].values()), readyz
    # a customer's API key is no staff either
    key = api_key("customer", customer_id=1)
    for path in ("/healthz", "/readyz"):
        assert not _keys(prod.get(path, headers=bearer(key)).json()) & set(_ACTIVITY)
    # the status never depends on a credential (the hostile review: a liveness probe whose
    # token expired or was rotated failed every replica at once): a wrong, expired, blank
    # or other-scheme one is no one, told what anyone is
    expired = token("service", ttl=-3600)
    for header in ("Bearer not-a-token", f"Bearer {expired}", "Basic dXNlcjpwdw==", ""):
        for path in ("/healthz", "/readyz"):
            resp = prod.get(path, headers={"Authorization": header})
            assert resp.status_code == prod.get(path).status_code, (path, header, resp.text)
            assert resp.json() == prod.get(path).json(), (path, header)


def test_outside_production_the_open_probes_keep_their_detail(client: Any) -> None:
    assert "revision" in client.get("/healthz").json()
    assert "version" in _keys(client.get("/readyz").json())


def test_demo_open_makes_anonymous_an_admin(sec_engine: Engine, sec_shop: Shop) -> None:
    with make_app(sec_engine, demo_open=True, demo_hosts=("testserver",)) as client:
        status, body = post(client, None, WHO)
    assert status == 200 and body["data"]["customers"]["totalCount"] == len(sec_shop.customers)


def test_demo_open_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDMS_DEMO_OPEN", raising=False)
    assert SecurityConfig.from_env().demo_open is False
    monkeypatch.setenv("CDMS_DEMO_OPEN", "1")
    assert SecurityConfig.from_env().demo_open is True
    monkeypatch.setenv("CDMS_JWT_SECRET", "short")
    with pytest.raises(ConfigError):
        SecurityConfig.from_env()


def test_api_keys_are_hashed_work_and_revoke(
    client: Any, sec_engine: Engine, parties: Parties
) -> None:
    key, secret = create_key(sec_engine, "customer", parties.a, name="phone app")
    assert secret.startswith(key.key_prefix + "_")
    with sec_engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT key_hash FROM app.api_keys WHERE id = :id"), {"id": key.id}
        ).scalar_one()
        dump = conn.execute(sa.text("SELECT api_keys::text FROM app.api_keys")).scalars().all()
    assert stored == hash_key(secret) and not any(secret in row for row in dump)
    status, body = post(client, secret, WHO)
    assert status == 200 and body["data"]["customers"]["totalCount"] == 1
    listed = {k.id: k for k in list_keys(sec_engine)}
    assert listed[key.id].last_used_at is not None and listed[key.id].revoked_at is None
    revoked = revoke_key(sec_engine, key.id)
    assert revoked.revoked_at is not None
    assert revoke_key(sec_engine, key.id).revoked_at == revoked.revoked_at  # idempotent
    status, body = post(client, secret, WHO)
    assert status == 401 and "revoked" in body["errors"][0]["message"]
    # a key that was never issued, with the right shape
    status, _ = post(client, secret[:-4] + "AAAA", WHO)
    assert status == 401


def test_api_key_bad_input_changes_nothing(sec_engine: Engine, parties: Parties) -> None:
    before = len(list_keys(sec_engine))
    with pytest.raises(BadUserInputError):
        create_key(sec_engine, "root")
    with pytest.raises(BadUserInputError):
        create_key(sec_engine, "customer")
    with pytest.raises(BadUserInputError):
        create_key(sec_engine, "admin", parties.a)
    with pytest.raises(NotFoundError):
        create_key(sec_engine, "customer", 10**9)
    with pytest.raises(NotFoundError):
        revoke_key(sec_engine, 10**9)
    assert len(list_keys(sec_engine)) == before


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_jwts_are_checked(client: Any, sec_shop: Shop, parties: Parties) -> None:
    now = int(time.time())
    good = token("customer", parties.a)
    assert post(client, good, WHO)[1]["data"]["customers"]["totalCount"] == 1
    assert post(client, token("analyst"), WHO)[1]["data"]["customers"]["totalCount"] == len(
        sec_shop.customers
    )
    head, _, sig = good.split(".")
    admin_payload = _b64({"role": "admin", "exp": now + 600})
    refused = {
        "expired": token("customer", parties.a, ttl=-3600),
        "forged": encode_jwt({"role": "admin", "exp": now + 600}, "another-secret-" * 3),
        "tampered": f"{head}.{admin_payload}.{sig}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{admin_payload}.",
        "no exp": encode_jwt({"role": "admin"}, SECRET),
        "unknown role": token("root"),
        "customer without id": token("customer"),
        "customer id not a number": encode_jwt(
            {"role": "customer", "customer_id": "x", "exp": now + 600}, SECRET
        ),
    }
    for why, tok in refused.items():
        status, body = post(client, tok, WHO)
        assert status == 401 and code(body) == "UNAUTHENTICATED", why


def test_jwt_unit() -> None:
    rules = JwtRules(SECRET)
    tok = encode_jwt({"role": "admin", "exp": 1_000}, SECRET)
    assert decode_jwt(tok, rules, now=1_000).role == "admin"
    assert decode_jwt(tok, rules, now=1_029).role == "admin"  # leeway
    assert decode_jwt(tok, rules, now=1_000).expires_at == 1_030
    with pytest.raises(UnauthenticatedError, match="expired"):
        decode_jwt(tok, rules, now=1_031)
    nbf = encode_jwt({"role": "admin", "exp": 5_000, "nbf": 2_000}, SECRET)
    with pytest.raises(UnauthenticatedError, match="not yet valid"):
        decode_jwt(nbf, rules, now=1_000)


def test_jwts_refused_without_a_secret(sec_engine: Engine) -> None:
    """The caller learns that the server takes API keys, not which of its settings is unset
    (hostile probe 11: the message named CDMS_JWT_SECRET to anyone)."""
    with make_app(sec_engine, jwt_secret=None) as client:
        status, body = post(client, token("admin"), WHO)
    assert (status, body["errors"][0]["message"]) == (401, "this server takes API keys, not JWTs")


def test_roles(client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties) -> None:
    place = """mutation ($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, channel: WEB,
        paymentMethod: CARD, items: [{productId: $p, quantity: 1}]}) { id } }"""
    product = """mutation { createProduct(input: {sku: "SEC-001", name: "n", category: "c",
        subcategory: "s", brand: "b", unitPrice: "1.00", cost: "1.00"}) { id } }"""
    args = {"c": str(parties.b), "p": str(sec_shop.products[0])}
    # analysts read everything and write nothing
    status, body = post(client, token("analyst"), place, args)
    assert status == 403 and code(body) == "FORBIDDEN"
    # service: orders for anyone, but no catalogue changes
    key, service = create_key(sec_engine, "service", name="integrator")
    status, body = post(client, service, place, args)
    assert status == 200 and "errors" not in body, body
    oid = int(body["data"]["placeOrder"]["id"])
    with sec_engine.connect() as conn:
        who = conn.execute(
            sa.text(
                "SELECT o.created_by, h.changed_by FROM app.orders o"
                " JOIN app.order_status_history h ON h.order_id = o.id WHERE o.id = :id"
            ),
            {"id": oid},
        ).one()
    assert tuple(who) == (f"apikey:{key.id}", f"apikey:{key.id}")
    status, body = post(client, service, product)
    assert status == 403 and code(body) == "FORBIDDEN"
    # a customer neither
    status, body = post(client, token("customer", parties.a), product)
    assert status == 403 and code(body) == "FORBIDDEN"


def test_the_default_app_reads_security_from_the_environment(
    sec_engine: Engine, sec_shop: Shop, parties: Parties, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``cdms serve`` builds: create_app(engine) with CDMS_* settings."""
    from starlette.testclient import TestClient

    from api.app import create_app

    for name in ("CDMS_DEMO_OPEN", "CDMS_ENV", "CDMS_PERSISTED_ONLY", "CDMS_RATE_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDMS_JWT_SECRET", SECRET)
    monkeypatch.setenv("CDMS_MAX_QUERY_COST", "100")
    with TestClient(create_app(sec_engine)) as client:
        assert post(client, None, WHO)[0] == 401
        status, body = post(client, token("customer", parties.a), WHO)
        assert status == 200 and body["data"]["customers"]["totalCount"] == 1
        status, body = post(client, token("admin"), "{ customers(first: 101) { totalCount } }")
        assert status == 400 and code(body) == "QUERY_TOO_COMPLEX"


def _key_lookups(engine: Engine) -> tuple[list[str], Any]:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "app.api_keys" in statement:
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", before)
    return seen, lambda: sa.event.remove(engine, "before_cursor_execute", before)


def test_an_active_key_is_looked_up_once_per_cache_time_and_revoking_it_here_is_immediate(
    sec_engine: Engine, parties: Parties
) -> None:
    key, secret = create_key(sec_engine, "customer", parties.a, name="cached")
    seen, undo = _key_lookups(sec_engine)
    try:
        with make_app(sec_engine, apikey_cache_s=60.0) as client:
            for _ in range(5):
                status, body = post(client, secret, WHO)
                assert status == 200 and body["data"]["customers"]["totalCount"] == 1
            assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 1
            revoke_key(sec_engine, key.id)  # in this process: forgotten at once
            status, body = post(client, secret, WHO)
            assert status == 401 and "revoked" in body["errors"][0]["message"]
    finally:
        undo()


def test_a_key_revoked_elsewhere_is_refused_once_its_cache_time_is_up(
    sec_engine: Engine, parties: Parties
) -> None:
    key, secret = create_key(sec_engine, "customer", parties.a, name="revoked elsewhere")
    with make_app(sec_engine, apikey_cache_s=0.5) as client:
        assert post(client, secret, WHO)[0] == 200
        with sec_engine.begin() as conn:  # as `cdms apikey revoke` in another process does
            conn.execute(
                sa.text("UPDATE app.api_keys SET revoked_at = now() WHERE id = :id"),
                {"id": key.id},
            )
        time.sleep(0.6)
        status, body = post(client, secret, WHO)
        assert status == 401 and "revoked" in body["errors"][0]["message"]
    # without a cache time every request looks the key up
    with make_app(sec_engine, apikey_cache_s=0.0) as client:
        assert post(client, secret, WHO)[0] == 401


def test_the_key_cache_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDMS_APIKEY_CACHE_SECONDS", raising=False)
    assert SecurityConfig.from_env().apikey_cache_s == 5.0
    monkeypatch.setenv("CDMS_APIKEY_CACHE_SECONDS", "0")
    assert SecurityConfig.from_env().apikey_cache_s == 0.0
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("CDMS_APIKEY_CACHE_SECONDS", bad)
        with pytest.raises(ConfigError, match="CDMS_APIKEY_CACHE_SECONDS"):
            SecurityConfig.from_env()
