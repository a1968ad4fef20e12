"""Rate limits hold for the whole deployment, not per process: the buckets live in the
database, so two app instances (two workers, two hosts) share one bucket per principal;
requests without valid credentials are limited per client address."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from api.ratelimit import MAX_RETRY_AFTER
from tests.api.conftest import Shop
from tests.security.conftest import bearer, make_app, token

WHO = {"query": "{ products { totalCount } }"}


def test_two_instances_share_one_bucket(sec_engine: Engine, sec_shop: Shop) -> None:
    tok = token("analyst", sub="shared-bucket")
    with (
        make_app(sec_engine, rate_per_s=0.5, burst=4) as one,
        make_app(sec_engine, rate_per_s=0.5, burst=4) as two,
    ):
        statuses = [
            (one if i % 2 else two).post("/graphql", json=WHO, headers=bearer(tok)).status_code
            for i in range(12)
        ]
    assert statuses.count(200) <= 5, statuses  # the burst, and at most one token refilled
    assert statuses.count(429) >= 7, statuses


def test_requests_without_valid_credentials_are_limited_per_address(
    sec_engine: Engine, sec_shop: Shop
) -> None:
    with make_app(sec_engine, rate_per_s=0.5, burst=4) as client:
        statuses = [
            client.post("/graphql", json=WHO, headers={"Authorization": "Bearer nope"}).status_code
            for _ in range(12)
        ]
        assert statuses[:4] == [401] * 4, statuses
        assert statuses.count(429) >= 7, statuses
        resp = client.post("/graphql", json=WHO)
        assert resp.status_code == 429 and int(resp.headers["retry-after"]) >= 1
        # a valid principal has its own bucket
        assert client.post("/graphql", json=WHO, headers=bearer(token("admin"))).status_code == 200


def test_retry_after_is_a_few_digits_whatever_the_rate(sec_engine: Engine, sec_shop: Shop) -> None:
    """The settings refuse such a rate at start-up (tests/api/test_settings.py); an app
    built with one anyway still says a sane Retry-After (was 301 digits at 1e-300/s)."""
    tok = token("analyst", sub="tiny-rate")
    with make_app(sec_engine, rate_per_s=1e-300, burst=1) as app:
        first = app.post("/graphql", json=WHO, headers=bearer(tok))
        second = app.post("/graphql", json=WHO, headers=bearer(tok))
    assert first.status_code == 200, first.text
    assert second.status_code == 429, second.text
    retry = second.headers["Retry-After"]
    assert retry.isdigit() and 1 <= int(retry) <= MAX_RETRY_AFTER, retry
    ext = second.json()["errors"][0]["extensions"]
    assert ext["retryAfter"] == int(retry), ext
