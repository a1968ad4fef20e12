"""Cross-site request forgery (the black-box review).

In demo-open mode (``CDMS_DEMO_OPEN=1``, the README's first command) a request without a
token runs as an admin. Any page a visitor of the demo opens could POST a mutation with
``Content-Type: text/plain`` (or a form's media type, or none: a ``Blob`` body), a
"simple" request a browser sends cross-site without asking the server first: it was
parsed as JSON and run (``updateProduct`` set a price of 0.01).

Now a POST whose media type is not ``application/json`` is ``415 UNSUPPORTED_MEDIA_TYPE``
before anything runs, whatever the mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.api.conftest import Shop
from tests.security.conftest import Parties, bearer, token
from tests.security.review.conftest import code_of, count, lenient_app
from tests.security.transports import register

EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def demo(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    """The app as ``CDMS_DEMO_OPEN=1 cdms serve`` runs it: no token is an admin."""
    with lenient_app(sec_engine, demo_open=True, production=False) as c:
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
