"""Small requests that ask the database or the process for a lot, on every transport:
filters of thousands of relation tests, orderBy lists past PostgreSQL's argument limit and
cursors that are deep JSON (mutations multiplied by aliases: writes/test_mutation_aliases).
Each gets a coded 4xx (or an answer) at once, never an INTERNAL, a plain 500 or minutes of
the database's time.

Found by a hostile black-box test (2026-12-06): an ``or`` of 5,000 ``returns: {some: {}}``
(135 KB) kept a backend busy 165 s past the statement timeout, at 2.4 GB.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.security.conftest import Parties
from tests.security.transports import TRANSPORTS, Outcome, run_over

HANG = 60.0  # seconds: far beyond a refusal, short of a backend stuck for minutes
NESTED = {"feedback": {"some": {}}}
FILTERED = "query ($f: OrderFilter) { orders(first: 1, filter: $f) { totalCount } }"


@pytest.fixture(scope="module")
def customer(sec_engine: Engine, parties: Parties) -> dict[str, str]:
    from api.apikeys import create_key

    return {"Authorization": f"Bearer {create_key(sec_engine, 'customer', parties.a)[1]}"}


def _over(transport: str, *args: Any, **kwargs: Any) -> Outcome:
    """``run_over`` in a thread: a hang fails the test instead of stopping the run."""
    got: list[Outcome] = []
    worker = threading.Thread(target=lambda: got.append(run_over(transport, *args, **kwargs)))
    worker.daemon = True
    worker.start()
    worker.join(HANG)
    assert not worker.is_alive(), "no answer: the request reached the database"
    return got[0]


def _refused(out: Outcome, code: str) -> None:
    assert out.closed is None and out.codes[:1] == [code] and out.data is None, out
    assert out.status in (None, 400) or (out.status == 200 and out.codes), out


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "flt",
    [
        {"or": [{"returns": {"some": {}}}] * 5000},  # one EXISTS each, no value bound
        {"or": [{"and": []}] * 20_000},  # a large statement to cache
        {
            "and": [{"not": {"items": {"none": {"product": {"some": {"feedback": {"some": {}}}}}}}}]
            * 60
        },
    ],
    ids=["exists-5000", "empty-20000", "nested-exists"],
)
def test_a_filter_past_its_size_is_too_complex(
    transport: str, flt: Any, prod: Any, sec_engine: Engine, customer: dict[str, str]
) -> None:
    out = _over(transport, prod, sec_engine, customer, FILTERED, {"f": flt})
    _refused(out, "QUERY_TOO_COMPLEX")
    assert "filter" in out.messages[0], out


def test_a_filter_of_ordinary_size_still_answers(
    prod: Any, sec_engine: Engine, customer: dict[str, str]
) -> None:
    flt = {"or": [{"returns": {"some": {}}}, {"items": {"some": {"quantity": {"gte": 1}}}}] * 10}
    out = run_over("http", prod, sec_engine, customer, FILTERED, {"f": flt})
    assert out.status == 200 and not out.codes and out.data["orders"]["totalCount"] >= 1, out


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_order_by_repeating_a_field_answers_and_pages(
    transport: str, prod: Any, sec_engine: Engine, customer: dict[str, str]
) -> None:
    """99 items naming one field: PostgreSQL takes at most 100 arguments per function, and
    the cursor of 99 keys was a plain 500. A field named again orders nothing more."""
    query = (
        "query ($o: [OrderOrderBy!], $after: String) { orders(first: 1, after: $after,"
        " orderBy: $o) { edges { cursor node { id } } pageInfo { endCursor } } }"
    )
    many = [{"orderedAt": "DESC"}] * 99
    out = _over(transport, prod, sec_engine, customer, query, {"o": many})
    assert out.closed is None and not out.codes, out
    first = out.data["orders"]
    one = run_over("http", prod, sec_engine, customer, query, {"o": many[:1]}).data["orders"]
    assert first == one  # the same order, the same cursor
    after = {"o": many, "after": first["pageInfo"]["endCursor"]}
    page = run_over("http", prod, sec_engine, customer, query, after)
    assert not page.codes and page.data["orders"]["edges"][0]["node"] != first["edges"][0]["node"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "raw",
    [b"[" * 3000 + b"]" * 3000, b'["x", ' + b"1, " * 20_000 + b"1]", b"\xff\xfe"],
    ids=["deep", "long", "not-utf8"],
)
def test_a_hostile_cursor_is_bad_input(
    transport: str, raw: bytes, prod: Any, sec_engine: Engine, customer: dict[str, str]
) -> None:
    cursor = base64.urlsafe_b64encode(raw).decode()
    query = "query ($c: String) { orders(first: 2, after: $c) { totalCount edges { cursor } } }"
    out = _over(transport, prod, sec_engine, customer, query, {"c": cursor})
    _refused(out, "BAD_USER_INPUT")
    assert out.messages[0] == "invalid cursor", out


def _nested(k: int) -> dict[str, Any]:
    """The hostile probe's filter (2026-12-07): F(0) tests items → product, each F(k+1) is
    ``or: [{id: 0}, {customer: {some: {orders: {some: F(k)}}}}]``: 2k + 2 relation tests,
    each inside the one before. Its planning time doubled with each level (k = 7: past the
    statement timeout, eight at once held every read thread for 69-100 s)."""
    flt: dict[str, Any] = {"items": {"some": {"product": {"some": {"name": {"contains": "zzz"}}}}}}
    for _ in range(k):
        flt = {"or": [{"id": {"eq": "0"}}, {"customer": {"some": {"orders": {"some": flt}}}}]}
    return flt


NESTED_QUERY = "query ($f: OrderFilter) { orders(first: 0, filter: $f) { totalCount } }"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("k", [1, 7])
def test_relation_tests_nested_past_the_bound_are_too_complex(
    transport: str, k: int, prod: Any, sec_engine: Engine, customer: dict[str, str]
) -> None:
    start = time.monotonic()
    out = _over(transport, prod, sec_engine, customer, NESTED_QUERY, {"f": _nested(k)})
    _refused(out, "QUERY_TOO_COMPLEX")
    assert "nest relation tests" in out.messages[0] and "3 deep" in out.messages[0], out
    assert time.monotonic() - start < 5.0, out


def test_relation_tests_nested_to_the_bound_answer(
    prod: Any, sec_engine: Engine, customer: dict[str, str]
) -> None:
    """Three relation tests, each inside the one before, under an ``or``: answered, fast."""
    deepest = {"customer": {"some": {"orders": {"some": {"returns": {"some": {}}}}}}}
    flt = {"or": [{"id": {"eq": "0"}}, deepest]}
    start = time.monotonic()
    out = run_over("http", prod, sec_engine, customer, NESTED_QUERY, {"f": flt})
    took = time.monotonic() - start
    assert out.status == 200 and not out.codes and out.data["orders"]["totalCount"] >= 0, out
    assert took < 2.0, took
    two = {"items": {"some": {"product": {"some": {"name": {"contains": "zzz"}}}}}}
    out = run_over("http", prod, sec_engine, customer, NESTED_QUERY, {"f": two})
    assert out.status == 200 and out.data == {"orders": {"totalCount": 0}}, out


def test_api_transactions_run_without_jit(sec_engine: Engine) -> None:
    """JIT compiled the nested probe's statement for seconds, deaf to the statement timeout
    (k = 4 over 2,000 customers: 2.36 s of 2.38 s compiling; without: 2 ms)."""
    from schema.context import session_statement

    sql, params = session_statement("test", 15_000, "customer", 1, read_only=True)
    with sec_engine.connect() as conn:
        server = conn.exec_driver_sql("SHOW jit").scalar()
        conn.rollback()
        conn.exec_driver_sql(sql, params)
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
        conn.rollback()
        assert conn.exec_driver_sql("SHOW jit").scalar() == server  # this transaction's only
