"""Limits and production mode: per-principal rate limit, query cost, introspection for
admins only (the GraphiQL page for anyone), the persisted-query allow-list, CORS."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.ratelimit import LocalBuckets
from tests.api.conftest import Shop
from tests.security.conftest import Parties, bearer, make_app, post, token
from tests.security.transports import register

WHO = "{ customers { totalCount } }"
INTROSPECT = "{ __schema { queryType { name } } }"


def code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


def test_token_bucket() -> None:
    b = LocalBuckets(rate=2.0, burst=3)
    assert [b.take("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("k", now=0.0) == 0.5  # one token comes back in 0.5 s
    assert b.take("other", now=0.0) == 0.0  # buckets are per principal
    assert b.take("k", now=0.5) == 0.0


def test_rate_limit_answers_429_with_retry_after(sec_engine: Engine, sec_shop: Shop) -> None:
    with make_app(sec_engine, rate_per_s=0.2, burst=3) as client:
        a, b = token("analyst", sub="a"), token("analyst", sub="b")
        statuses = [post(client, a, WHO)[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        resp = client.post("/graphql", json={"query": WHO}, headers=bearer(a))
        assert resp.status_code == 429 and code(resp.json()) == "RATE_LIMITED"
        assert 1 <= int(resp.headers["retry-after"]) <= 5
        assert post(client, b, WHO)[0] == 200  # another principal has its own bucket
        assert client.get("/healthz").status_code == 200  # never limited
        assert all(client.get("/readyz").status_code in {200, 503} for _ in range(10))


def test_a_count_and_relation_tests_cost_at_first_zero(
    sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """``first: 0`` returns no node, but its ``totalCount`` reads every row the filter lets
    through and each relation test is a subquery per row: the probe of 2026-12-07 cost 0.
    A count costs 1 at least, each relation test a default page (50)."""
    query = "query ($f: OrderFilter) { orders(first: 0, filter: $f) { totalCount } }"
    three = {
        "or": [
            {"returns": {"some": {}}},
            {"items": {"some": {"product": {"some": {"name": {"contains": "zzz"}}}}}},
        ]
    }
    with make_app(sec_engine, max_cost=100) as client:
        tok = token("customer", parties.a)
        status, body = post(client, tok, query, {"f": {"status": {"eq": "PAID"}}})
        assert status == 200 and "errors" not in body, body  # cost 1
        status, body = post(client, tok, query, {"f": three})
        assert status == 400 and code(body) == "QUERY_TOO_COMPLEX", body
        assert body["errors"][0]["extensions"]["cost"] == 151, body  # 1 + 3 x 50
        status, body = post(client, tok, query, {"f": three["or"][0]})
        assert status == 200 and "errors" not in body, body  # 1 + 50


def test_query_cost_limit(sec_engine: Engine, sec_shop: Shop) -> None:
    nested = """query ($c: Int, $o: Int) { customers(first: $c) { edges { node {
        orders(first: $o) { edges { node { id } } } } } } }"""
    with make_app(sec_engine, max_cost=1_000) as client:
        tok = token("admin")
        status, body = post(client, tok, nested, {"c": 10, "o": 10})
        assert status == 200 and "errors" not in body  # 10 + 10 * 10 = 110
        status, body = post(client, tok, nested, {"c": 100, "o": 100})  # 100 + 100 * 100
        assert status == 400 and code(body) == "QUERY_TOO_COMPLEX"
        message = body["errors"][0]["message"]
        assert "10100" in message and "1000" in message
        # connections without `first` count at the default page size (50): 50 + 50 * 50
        status, body = post(
            client, tok, "{ customers { edges { node { orders { totalCount } } } } }"
        )
        assert status == 400 and "2550" in body["errors"][0]["message"]


def test_plain_lists_count_for_cost(sec_engine: Engine, sec_shop: Shop, parties: Parties) -> None:
    """An order's ``items`` and ``statusHistory`` take no page argument: each counts as
    LIST_ROWS (10) objects, and what is under it ten times. The probe of 2026-12-07 read
    ``orders > items > product > feedback(first: 99)``, 8.65 MB, at a cost of 49,999."""
    lines = "{ orders(first: 10) { edges { node { items { quantity } } } } }"
    history = "{ orders(first: 10) { edges { node { statusHistory { toStatus } } } } }"
    under = """{ orders(first: 2) { edges { node { items { product {
        feedback(first: 5) { edges { node { rating } } } } } } } } }"""
    with make_app(sec_engine, max_cost=100) as client:
        tok = token("customer", parties.a)
        for query in (lines, history):
            status, body = post(client, tok, query)
            assert status == 400 and code(body) == "QUERY_TOO_COMPLEX", body
            assert body["errors"][0]["extensions"]["cost"] == 110, body  # 10 + 10 x 10
        status, body = post(client, tok, under)
        assert status == 400 and code(body) == "QUERY_TOO_COMPLEX", body
        assert body["errors"][0]["extensions"]["cost"] == 122, body  # 2 + 2 x (10 + 10 x 5)
        status, body = post(
            client, tok, "{ orders(first: 9) { edges { node { items { quantity } } } } }"
        )
        assert status == 200 and "errors" not in body, body  # 9 + 9 x 10 = 99


def test_production_introspection_for_admins_only_graphiql_for_all(
    sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    with make_app(sec_engine, production=True) as client:
        for tok in (token("analyst"), token("service"), token("customer", parties.a)):
            status, body = post(client, tok, INTROSPECT)
            assert status == 403 and code(body) == "FORBIDDEN"
            status, body = post(client, tok, "{ products { edges { node { __type: id } } } }")
            assert status == 200  # an alias is not introspection
            # the GraphiQL page holds no data: served to anyone; the server still decides
            # what the token may run (introspection above: 403)
            resp = client.get("/graphql", headers={**bearer(tok), "Accept": "text/html"})
            assert resp.status_code == 200 and "graphiql" in resp.text.lower()
        status, body = post(client, token("admin"), INTROSPECT)
        assert status == 200 and body["data"]["__schema"]["queryType"]["name"] == "Query"
        resp = client.get("/graphql", headers={**bearer(token("admin")), "Accept": "text/html"})
        assert resp.status_code == 200 and "graphiql" in resp.text.lower()
    with make_app(sec_engine) as client:  # development: introspection for everyone
        assert post(client, token("customer", parties.a), INTROSPECT)[0] == 200


def _persisted(client: Any, tok: str, sha: str, query: str | None = None) -> tuple[int, Any]:
    payload: dict[str, Any] = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}}}
    if query is not None:
        payload["query"] = query
    resp = client.post("/graphql", json=payload, headers=bearer(tok))
    return resp.status_code, resp.json()


def test_persisted_queries(sec_engine: Engine, sec_shop: Shop, parties: Parties) -> None:
    sha = register(sec_engine, "query Products { products { totalCount } }")
    with make_app(sec_engine, persisted_only=True) as client:
        tok = token("customer", parties.a)
        status, body = _persisted(client, tok, sha)
        assert status == 200 and body["data"]["products"]["totalCount"] == 5
        status, body = _persisted(client, tok, "0" * 64)
        assert status == 400 and code(body) == "PERSISTED_QUERY_NOT_FOUND"
        status, body = _persisted(client, tok, sha, "{ customers { totalCount } }")
        assert status == 400 and code(body) == "PERSISTED_QUERY_NOT_FOUND"  # hash mismatch
        status, body = post(client, tok, WHO)
        assert status == 400 and code(body) == "PERSISTED_QUERY_REQUIRED"
        assert post(client, token("admin"), WHO)[0] == 200  # admins may still explore
    with sec_engine.begin() as conn, __import__("pytest").raises(sa.exc.IntegrityError):
        conn.execute(  # the table refuses a hash that is not the query's
            sa.text("INSERT INTO app.persisted_queries (sha256, query) VALUES (:h, '{ x }')"),
            {"h": "1" * 64},
        )


def test_a_withdrawn_persisted_query_is_refused_after_the_recheck_window(
    sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """A query removed from the allow-list (``cdms persisted remove``) stops being served:
    at once with no cache window, after it (CDMS_APIKEY_CACHE_SECONDS) otherwise."""
    query = "query ProductCount { products { totalCount } }"
    sha = register(sec_engine, query)
    delete = sa.text("DELETE FROM app.persisted_queries WHERE sha256 = :h")
    tok = token("customer", parties.a)
    with make_app(sec_engine, persisted_only=True) as client:  # apikey_cache_s=0
        assert _persisted(client, tok, sha)[0] == 200
        with sec_engine.begin() as conn:
            conn.execute(delete, {"h": sha})
        status, body = _persisted(client, tok, sha)
        assert status == 400 and code(body) == "PERSISTED_QUERY_NOT_FOUND"
    sha = register(sec_engine, query)
    with make_app(sec_engine, persisted_only=True, apikey_cache_s=0.5) as client:
        assert _persisted(client, tok, sha)[0] == 200
        with sec_engine.begin() as conn:
            conn.execute(delete, {"h": sha})
        deadline = time.monotonic() + 10
        while _persisted(client, tok, sha)[0] == 200:  # served from the cache a while
            assert time.monotonic() < deadline, "the removed query is still served"
            time.sleep(0.1)
        status, body = _persisted(client, tok, sha)
        assert status == 400 and code(body) == "PERSISTED_QUERY_NOT_FOUND"


def test_cors_origins(sec_engine: Engine, sec_shop: Shop) -> None:
    with make_app(sec_engine, cors_origins=("https://shop.example",)) as client:
        pre = client.options(
            "/graphql",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://shop.example"
        bad = client.options(
            "/graphql",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in bad.headers


def test_checks_cache_what_an_operation_is_but_decide_per_principal_and_values(
    sec_engine: Engine,
) -> None:
    """The pipeline caches the parse, the validation and the measure of an operation, never
    a verdict: the same document is allowed or refused by role, customer and the request's
    page sizes."""
    from graphql import OperationType

    from api.auth import Principal
    from api.pipeline import Operation, Pipeline, Policy, Refusal
    from api.rules import Limits
    from schema.app import graphql_schema

    gschema = graphql_schema()
    pipeline = Pipeline(gschema, sec_engine, Policy(production=True, limits=Limits(max_cost=1_000)))
    admin = Principal("admin", None, "t:admin", "a")
    analyst = Principal("analyst", None, "t:analyst", "b")
    customer = Principal("customer", 7, "customer:7", "c")
    kinds = (OperationType.QUERY,)

    def refused(
        query: str, who: Principal, variables: dict[str, Any] | None = None, p: Any = pipeline
    ) -> str | None:
        try:
            p.check(query, Operation(query, variables), who, kinds)
        except Refusal as refusal:
            return refusal.code
        return None

    models = "{ models { name } __schema { queryType { name } } }"
    for _ in range(2):  # the second round runs on the cached parse and measure
        assert refused(models, admin) is None
        assert refused(models, analyst) == "FORBIDDEN"  # introspection in production
        assert refused(models, customer) == "FORBIDDEN"
    mine = "query ($c: ID!) { customer(id: $c) { id } }"
    for _ in range(2):
        assert refused(mine, customer, {"c": "7"}) is None
        assert refused(mine, customer, {"c": "8"}) == "FORBIDDEN"
    paged = "query ($n: Int) { customers(first: $n) { edges { node { id } } } }"
    fixed = "{ customers(first: 500) { edges { node { orders(first: 5) { totalCount } } } } }"
    for _ in range(2):
        assert refused(paged, admin, {"n": 10}) is None
        assert refused(paged, admin, {"n": 5000}) is None  # capped at the max page, 500
        assert refused(fixed, admin) == "QUERY_TOO_COMPLEX"  # 500 + 500 * 5
    strict = Pipeline(gschema, sec_engine, Policy(limits=Limits(max_cost=100)))
    assert refused(paged, admin, {"n": 100}, strict) is None
    assert refused(paged, admin, {"n": 101}, strict) == "QUERY_TOO_COMPLEX"


def test_graphql_answers_are_never_sniffed(
    sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """An answer holds a customer's data: a browser reads it as JSON only (probe of
    2026-12-07: no X-Content-Type-Options was sent)."""
    with make_app(sec_engine, production=True) as client:
        tok = token("customer", parties.a)
        answers = [
            client.post("/graphql", json={"query": WHO}, headers=bearer(tok)),
            client.post("/graphql", json=[{"query": WHO}], headers=bearer(tok)),  # a batch
            client.post("/graphql", json={"query": "{ nope }"}, headers=bearer(tok)),  # 400
            client.post("/graphql", json={"query": INTROSPECT}, headers=bearer(tok)),  # 403
        ]
        for resp in answers:
            assert resp.headers["x-content-type-options"] == "nosniff", resp.headers


def test_a_new_long_document_takes_rate_tokens_by_its_length(
    sec_engine: Engine, sec_shop: Shop
) -> None:
    """Parsing and validating a document of 5,000 tokens is ~0.2 s of CPU: distinct long
    documents were bounded by the request rate alone. A document not parsed yet takes a
    token more per 2,000 characters; the same one again costs one token."""
    from api.pipeline import PARSE_CHARS_PER_TOKEN

    def long(i: int) -> str:  # ~20,000 characters: 10 tokens more than a known one
        fields = " ".join(f"f{k}: __typename" for k in range(1_200))
        return f"query L{i} {{ customers(first: 1) {{ totalCount }} }} # {fields}"

    assert len(long(0)) // PARSE_CHARS_PER_TOKEN == 10
    with make_app(sec_engine, rate_per_s=0.01, burst=25) as client:
        tok = token("analyst", sub="long-documents")
        assert post(client, tok, long(1))[0] == 200  # 1 + 10 tokens: 14 left
        for _ in range(3):
            assert post(client, tok, long(1))[0] == 200  # known: 1 each, 11 left
        status, body = post(client, tok, long(2))  # a new one: 11 needed... just enough
        assert status == 200, body
        status, body = post(client, tok, long(3))  # 0 left
        assert status == 429 and code(body) == "RATE_LIMITED", body


def _long(i: int) -> str:  # ~20,000 characters: 10 parse tokens, more than a burst of 5
    fields = " ".join(f"f{k}: __typename" for k in range(1_200))
    return f"query L{i} {{ customers(first: 1) {{ totalCount }} }} # {fields}"


def test_a_new_document_longer_than_the_burst_gets_through_after_its_retry_after(
    sec_engine: Engine, sec_shop: Shop
) -> None:
    """The hostile review of 2026-12-07: a new document's parse tokens were taken after
    its operation's token, so a document worth more tokens than the burst left was
    refused for ever (429, Retry-After 1, each try burning a token; with the production
    50,100 any document of >= ~198,000 new characters). An honest client that waits what
    it is told now gets through: the parse charge is at most what the bucket holds after
    the operations' tokens."""
    with make_app(sec_engine, rate_per_s=2, burst=5) as client:
        tok = token("analyst", sub="longer-than-the-burst")
        status, body = post(client, tok, _long(1))  # a full bucket: 1 + at most 4
        assert status == 200, body
        answers = []
        for _ in range(4):  # another new one, with the bucket empty: wait as told
            resp = client.post("/graphql", json={"query": _long(2)}, headers=bearer(tok))
            answers.append((resp.status_code, resp.headers.get("retry-after")))
            if resp.status_code == 200:
                break
            assert resp.status_code == 429 and code(resp.json()) == "RATE_LIMITED"
            time.sleep(int(resp.headers["retry-after"]))
        assert answers[-1][0] == 200, answers
        assert len(answers) <= 3, answers  # told the true wait: not 1 s, 1 s, 1 s, ...


def test_a_refused_parse_charge_tells_the_wait_of_the_whole_retry(
    sec_engine: Engine, sec_shop: Shop
) -> None:
    """Retry-After of a refused parse charge: the time until the bucket holds what the
    retry takes, its operations' tokens and the parse tokens (was 1 whatever the deficit)."""
    with make_app(sec_engine, rate_per_s=0.05, burst=5) as client:
        tok = token("analyst", sub="parse-retry-after")
        for _ in range(2):
            assert post(client, tok, "{ customers(first: 1) { totalCount } }")[0] == 200
        # 3 tokens left: 1 taken for the operation, then 4 parse tokens refused with 2 left;
        # the retry needs 5, 3 more at 0.05 a second: 60 s
        resp = client.post("/graphql", json={"query": _long(3)}, headers=bearer(tok))
        assert resp.status_code == 429 and code(resp.json()) == "RATE_LIMITED", resp.text
        assert 55 <= int(resp.headers["retry-after"]) <= 60, resp.headers
        assert resp.json()["errors"][0]["extensions"]["retryAfter"] == int(
            resp.headers["retry-after"]
        )
