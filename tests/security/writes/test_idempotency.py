"""placeOrder with an idempotency key: a retry with the same key returns the first order,
never a second one (also under concurrent retries); the key comes in the input
(``idempotencyKey``) or as the ``Idempotency-Key`` header, and belongs to its customer (any
of its credentials) or, for staff, to its principal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.replicas import parse_lsn
from tests.api.conftest import Shop
from tests.security.conftest import Parties, bearer, make_app, post, token

PLACE = """mutation ($i: PlaceOrderInput!) { placeOrder(input: $i) { id totalAmount
  items { quantity } } }"""


@pytest.fixture(scope="module")
def client(sec_engine: Engine, sec_shop: Shop) -> Iterator[Any]:
    with make_app(sec_engine) as c:
        yield c


def _input(customer: int, product: int, quantity: int = 1, key: str | None = None) -> Any:
    out: dict[str, Any] = {
        "customerId": str(customer),
        "items": [{"productId": str(product), "quantity": quantity}],
        "channel": "WEB",
        "paymentMethod": "CARD",
    }
    if key is not None:
        out["idempotencyKey"] = key
    return {"i": out}


def _count(engine: Engine, customer: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM app.orders WHERE customer_id = :c"), {"c": customer}
            ).scalar_one()
        )


def _stock(engine: Engine, product: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT stock FROM app.products WHERE id = :p"), {"p": product}
            ).scalar_one()
        )


def test_a_retry_with_the_same_key_returns_the_first_order(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    product = sec_shop.products[2]
    orders, stock = _count(sec_engine, parties.a), _stock(sec_engine, product)
    tok = token("customer", parties.a)
    first = post(client, tok, PLACE, _input(parties.a, product, 2, "retry-1"))[1]
    again = post(client, tok, PLACE, _input(parties.a, product, 2, "retry-1"))[1]
    assert "errors" not in first and "errors" not in again, (first, again)
    assert first["data"] == again["data"]
    assert _count(sec_engine, parties.a) == orders + 1
    assert _stock(sec_engine, product) == stock - 2


def test_the_key_may_come_as_a_header(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    product = sec_shop.products[2]
    orders = _count(sec_engine, parties.a)
    headers = {**bearer(token("customer", parties.a)), "Idempotency-Key": "header-1"}
    bodies = [
        client.post(
            "/graphql", json={"query": PLACE, "variables": _input(parties.a, product)},
            headers=headers,
        ).json()
        for _ in range(2)
    ]  # fmt: skip
    assert "errors" not in bodies[0] and bodies[0]["data"] == bodies[1]["data"], bodies
    # the replay's commitLsn: the WAL position after it, at or past the first's (other
    # sessions' WAL may come between the two)
    lsns = [parse_lsn(b["extensions"]["commitLsn"]) for b in bodies]
    assert lsns[1] >= lsns[0], bodies
    assert _count(sec_engine, parties.a) == orders + 1


def test_the_same_key_with_another_basket_is_a_conflict(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    product = sec_shop.products[2]
    tok = token("customer", parties.a)
    assert "errors" not in post(client, tok, PLACE, _input(parties.a, product, 1, "reuse-1"))[1]
    orders = _count(sec_engine, parties.a)
    _, body = post(client, tok, PLACE, _input(parties.a, product, 3, "reuse-1"))
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT", body
    assert body["errors"][0]["extensions"]["reason"] == "idempotency_key_reused"
    assert _count(sec_engine, parties.a) == orders


def test_keys_belong_to_their_principal(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    product = sec_shop.products[2]
    a = post(client, token("customer", parties.a), PLACE, _input(parties.a, product, 1, "k-1"))
    b = post(client, token("customer", parties.b), PLACE, _input(parties.b, product, 1, "k-1"))
    assert "errors" not in a[1] and "errors" not in b[1], (a, b)
    assert a[1]["data"]["placeOrder"]["id"] != b[1]["data"]["placeOrder"]["id"]


def test_a_customers_credentials_share_its_keys(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties, api_key: Any
) -> None:
    """Keys are the customer's, as Stripe's are the account's: a retry through another of
    its credentials (its token, then a key; a key rotated between the try and the retry)
    returns the first order. A staff principal placing an order for the customer with the
    same key is not the customer retrying: its own order."""
    product = sec_shop.products[2]
    orders = _count(sec_engine, parties.a)
    first = post(client, token("customer", parties.a), PLACE, _input(parties.a, product, 1, "x-1"))
    retries = [
        post(client, api_key("customer", parties.a), PLACE, _input(parties.a, product, 1, "x-1"))
        for _ in range(2)  # two keys of the customer
    ]
    assert all("errors" not in r[1] for r in [first, *retries]), (first, retries)
    assert {r[1]["data"]["placeOrder"]["id"] for r in retries} == {
        first[1]["data"]["placeOrder"]["id"]
    }
    assert _count(sec_engine, parties.a) == orders + 1
    key = api_key("customer", parties.a)  # another basket under the same key: a conflict
    body = post(client, key, PLACE, _input(parties.a, product, 2, "x-1"))[1]
    assert body["errors"][0]["extensions"]["reason"] == "idempotency_key_reused", body

    staff = post(client, token("service"), PLACE, _input(parties.a, product, 1, "x-1"))[1]
    assert "errors" not in staff, staff
    assert staff["data"]["placeOrder"]["id"] != first[1]["data"]["placeOrder"]["id"]
    assert _count(sec_engine, parties.a) == orders + 2


def test_concurrent_retries_place_one_order(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    product = sec_shop.products[2]
    orders = _count(sec_engine, parties.a)
    tok = token("customer", parties.a)
    ids: list[Any] = []

    def go() -> None:
        body = post(client, tok, PLACE, _input(parties.a, product, 1, "race-1"))[1]
        ids.append(body["data"]["placeOrder"]["id"] if body.get("data") else body)

    workers = [threading.Thread(target=go) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert len(set(map(str, ids))) == 1 and len(ids) == 6, ids
    assert _count(sec_engine, parties.a) == orders + 1


def test_a_bad_key_is_bad_user_input(client: Any, sec_shop: Shop, parties: Parties) -> None:
    tok = token("customer", parties.a)
    for key in ("", "x" * 201, "bad\nkey"):
        _, body = post(client, tok, PLACE, _input(parties.a, sec_shop.products[2], 1, key))
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", (key, body)


def test_two_keys_for_one_order_are_bad_user_input(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """A request naming two different keys for its placeOrder (two Idempotency-Key headers,
    or a header and input.idempotencyKey that differ) is refused: whichever one the server
    kept, a retry that sends the other would place the order again."""
    product = sec_shop.products[2]
    orders = _count(sec_engine, parties.a)
    auth = bearer(token("customer", parties.a))
    cases = [
        ([("Idempotency-Key", "two-a"), ("Idempotency-Key", "two-b")], _input(parties.a, product)),
        ([("Idempotency-Key", "two-c")], _input(parties.a, product, 1, "two-d")),
    ]
    for headers, variables in cases:
        resp = client.post(
            "/graphql",
            json={"query": PLACE, "variables": variables},
            headers=[*auth.items(), *headers],
        )
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], body
    assert _count(sec_engine, parties.a) == orders
    # the same key twice is one key
    same = client.post(
        "/graphql",
        json={"query": PLACE, "variables": _input(parties.a, product, 1, "two-e")},
        headers=[*auth.items(), ("Idempotency-Key", "two-e")],
    ).json()
    assert "errors" not in same, same


def test_the_same_key_header_twice_is_refused_before_anything_runs(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """Two ``Idempotency-Key`` headers with the same value were taken as one key (a set of
    them), where two ``Cdms-Commit-Lsn`` or ``Authorization`` headers are refused: the
    header is sent once, and a proxy that adds one behind the client's picks for it.
    Refused whatever the values, alone or in a batch, and no order is placed."""
    product = sec_shop.products[2]
    orders = _count(sec_engine, parties.a)
    auth = bearer(token("customer", parties.a))
    one = {"query": PLACE, "variables": _input(parties.a, product)}
    for payload in (one, [one, {"query": "{ __typename }"}]):
        for values in (["twice-1", "twice-1"], ["twice-2", "twice-3"]):
            resp = client.post(
                "/graphql",
                json=payload,
                headers=[*auth.items(), *(("Idempotency-Key", v) for v in values)],
            )
            assert resp.status_code == 400, (payload, values, resp.text)
            body = resp.json()
            assert body["data"] is None, body
            [error] = body["errors"]
            assert error["extensions"]["code"] == "BAD_USER_INPUT", error
            assert error["extensions"]["field"] == "Idempotency-Key", error
            assert "Idempotency-Key" in error["message"], error
    assert _count(sec_engine, parties.a) == orders


def test_a_blank_key_or_a_header_of_joined_keys_is_refused(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """A key of spaces names nothing a client would send again (and a proxy trims a header
    to nothing); ``a1, b1`` in the header is what a proxy makes of two header lines (RFC 9110
    joins repeated fields with commas): taken as one key, a retry through another proxy
    would place the order again. Both 400 naming the key, no order placed."""
    product = sec_shop.products[2]
    orders = _count(sec_engine, parties.a)
    auth = bearer(token("customer", parties.a))
    cases: list[tuple[list[tuple[str, str]], Any, str]] = [
        ([], _input(parties.a, product, 1, "   "), "idempotencyKey"),
        ([], _input(parties.a, product, 1, "\u3000\t"), "idempotencyKey"),
        ([("Idempotency-Key", "a1, b1")], _input(parties.a, product), "Idempotency-Key"),
        ([("Idempotency-Key", "a1,b1")], _input(parties.a, product), "Idempotency-Key"),
    ]
    for headers, variables, field in cases:
        resp = client.post(
            "/graphql",
            json={"query": PLACE, "variables": variables},
            headers=[*auth.items(), *headers],
        )
        assert resp.status_code == 400, (headers, variables, resp.text)
        [error] = resp.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert error["extensions"]["field"] == field, error
    assert _count(sec_engine, parties.a) == orders
    # a comma inside input.idempotencyKey is one key, as before
    kept = post(client, token("customer", parties.a), PLACE, _input(parties.a, product, 1, "k,1"))
    assert "errors" not in kept[1], kept


def test_a_header_key_beyond_visible_ascii_is_refused_and_points_to_the_input(
    client: Any, sec_engine: Engine, sec_shop: Shop, parties: Parties
) -> None:
    """A header's bytes have no agreed encoding: Starlette reads them as Latin-1, curl and Go
    send UTF-8, a browser's fetch Latin-1. So ``clé-42`` sent as UTF-8 in the header was
    stored as ``clÃ©-42``: the same key as the header and as ``input.idempotencyKey`` placed
    two orders, and a Cyrillic key was refused as "not printable" (hostile probe 22, L1).
    The header takes visible ASCII only: anything else is a 400 naming the header and
    telling where such a key goes; in the input (JSON, so UTF-8) it is one key."""
    product = sec_shop.products[2]
    orders = _count(sec_engine, parties.a)
    auth = [(k.encode(), v.encode()) for k, v in bearer(token("customer", parties.a)).items()]
    for raw in ("clé-42".encode(), "clé-42".encode("latin-1"), "ключ-1".encode(), b"a\x7fb"):
        resp = client.post(
            "/graphql",
            json={"query": PLACE, "variables": _input(parties.a, product)},
            headers=[*auth, (b"Idempotency-Key", raw)],
        )
        assert resp.status_code == 400, (raw, resp.text)
        body = resp.json()
        assert body["data"] is None, body
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert error["extensions"]["field"] == "Idempotency-Key", error
        assert "input.idempotencyKey" in error["message"], error
    assert _count(sec_engine, parties.a) == orders
    # in the input, the key is the client's text: one order for both sends
    tok = token("customer", parties.a)
    first = post(client, tok, PLACE, _input(parties.a, product, 1, "clé-42"))[1]
    again = post(client, tok, PLACE, _input(parties.a, product, 1, "clé-42"))[1]
    assert "errors" not in first and first["data"] == again["data"], (first, again)
    assert _count(sec_engine, parties.a) == orders + 1
