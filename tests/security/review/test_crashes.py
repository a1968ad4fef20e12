"""Small hostile requests that crash the request pipeline or the read executor today:
HTTP 500 with a traceback in the log, or ``INTERNAL`` over a WebSocket. Every one of them is
the client's mistake and must be a coded 4xx (``BAD_USER_INPUT``) decided before anything
runs, with nothing written.

1. A lone UTF-16 surrogate (``"\\ud800"``): valid JSON, but not a Unicode string that can be
   encoded as UTF-8 — psycopg cannot send it and Starlette cannot write it back.
2. ``@include(if: $x)`` / ``@skip(if: $x)`` with a nullable variable that has a default,
   sent as an explicit ``null``: graphql-core accepts the document (a variable with a
   default may stand in a non-null position) and refuses the value only when fields are
   collected, which the pipeline never does; the executor's field collection raises.
3. Objects and lists given where a ``Decimal`` or ``DateTime`` is expected: the pipeline
   and the planner coerce on the schema rebuilt from the SDL, whose custom scalars take
   any value, so the planner walks the object as if it were an input object.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.security.conftest import Parties, bearer, token
from tests.security.review.conftest import code_of, count, post_raw
from tests.security.transports import WS_PROTOCOL, ws_init, ws_outcome, ws_send

PROTOCOLS = list(WS_PROTOCOL.values())
LONE_SURROGATE = "\\ud800"  # JSON text of one high surrogate without its low half


def _assert_refused(resp: Any) -> None:
    assert resp.status_code == 400, (resp.status_code, resp.text[:300])
    body = resp.json()
    assert body["data"] is None and code_of(body) == "BAD_USER_INPUT", body


# --- 1. lone surrogates ------------------------------------------------------------------

SURROGATE_READS = {
    "in a filter value": (
        "query ($s: String) { products(filter: {name: {contains: $s}}) { totalCount } }"
    ),
    "in an equality filter": (
        "query ($s: String) { customers(filter: {email: {eq: $s}}) { totalCount } }"
    ),
    "in an enum variable (echoed by the refusal)": (
        "query ($s: SortDirection) { orders(orderBy: [{id: $s}]) { totalCount } }"
    ),
}


@pytest.mark.parametrize("name", list(SURROGATE_READS))
def test_a_lone_surrogate_in_a_variable_is_bad_user_input(
    prod: Any, parties: Parties, name: str
) -> None:
    query = SURROGATE_READS[name]
    body = f'{{"query": {json.dumps(query)}, "variables": {{"s": "{LONE_SURROGATE}"}}}}'
    _assert_refused(post_raw(prod, token("customer", parties.a), body))


@pytest.mark.parametrize("escape", ["\\uDFFF", "\\uDbFf", "\\udc00", "x\\\\\\ud800"])
def test_a_lone_surrogate_is_refused_however_its_escape_is_spelled(
    prod: Any, parties: Parties, escape: str
) -> None:
    """Upper- and mixed-case hex, a low half, one after an escaped backslash: the request's
    text is searched for the escape before the operation is checked for a lone half."""
    query = SURROGATE_READS["in a filter value"]
    body = f'{{"query": {json.dumps(query)}, "variables": {{"s": "{escape}"}}}}'
    _assert_refused(post_raw(prod, token("customer", parties.a), body))


@pytest.mark.parametrize("spelled", ["as a \\u escape", "as raw UTF-8 bytes (ED A0 80)"])
def test_a_lone_surrogate_in_a_mutation_input_is_bad_user_input_and_writes_nothing(
    prod: Any, sec_engine: Engine, parties: Parties, spelled: str
) -> None:
    mine = "SELECT count(*) FROM app.feedback WHERE customer_id = :c"
    before = count(sec_engine, mine, c=parties.a)
    query = (
        f'mutation ($s: String) {{ submitFeedback(input: {{customerId: "{parties.a}",'
        " rating: 5, comment: $s}) { id } }"
    )
    if spelled.startswith("as a"):
        text = f'{{"query": {json.dumps(query)}, "variables": {{"s": "{LONE_SURROGATE}"}}}}'
        body = text.encode("utf-8")
    else:  # no escape for a search of the text to find (json.loads of bytes took it)
        text = json.dumps({"query": query, "variables": {"s": "\ud800"}}, ensure_ascii=False)
        body = text.encode("utf-8", "surrogatepass")
    resp = prod.post(
        "/graphql",
        content=body,
        headers={**bearer(token("customer", parties.a)), "Content-Type": "application/json"},
    )
    assert "INTERNAL" not in resp.text, resp.text  # before: 200 with code INTERNAL
    _assert_refused(resp)
    assert count(sec_engine, mine, c=parties.a) == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_lone_surrogate_over_websockets_is_bad_user_input(
    prod: Any, parties: Parties, protocol: str
) -> None:
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    query = SURROGATE_READS["in a filter value"]
    message = (
        f'{{"id": "1", "type": "{kind}", "payload": {{"query": {json.dumps(query)},'
        f' "variables": {{"s": "{LONE_SURROGATE}"}}}}}}'
    )
    headers = bearer(token("customer", parties.a))
    with prod.websocket_connect("/graphql", subprotocols=[protocol], headers=headers) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws.send_text(message)
        out = ws_outcome(ws, "1")
    assert out.codes == ["BAD_USER_INPUT"], out  # today: INTERNAL


# --- 2. null for a defaulted @include/@skip variable ------------------------------------

NULL_DIRECTIVES = {
    "a root field": "query ($x: Boolean = true) { products @include(if: $x) { totalCount } }",
    "a nested field": (
        "query ($x: Boolean = true) { products { totalCount edges @include(if: $x) {"
        " node { id } } } }"
    ),
    "a fragment's field, @skip": (
        "query ($x: Boolean = false) { ...F } fragment F on Query {"
        " products @skip(if: $x) { totalCount } }"
    ),
    "a cube field (analyst)": (
        "query ($x: Boolean = true) { cube { sales @include(if: $x) { orderCount } } }"
    ),
}


@pytest.mark.parametrize("name", list(NULL_DIRECTIVES))
def test_null_for_a_defaulted_include_variable_is_refused_before_running(
    prod: Any, parties: Parties, name: str
) -> None:
    who = token("analyst") if "cube" in name else token("customer", parties.a)
    payload = {"query": NULL_DIRECTIVES[name], "variables": {"x": None}}
    resp = prod.post("/graphql", json=payload, headers=bearer(who))
    _assert_refused(resp)  # today: 500 (reads), 200 with the error (cube)


def test_null_for_a_defaulted_include_variable_in_a_mutation_writes_nothing(
    prod: Any, sec_engine: Engine, parties: Parties
) -> None:
    mine = "SELECT count(*) FROM app.feedback WHERE customer_id = :c"
    before = count(sec_engine, mine, c=parties.a)
    for query in (
        'mutation ($x: Boolean = true) { submitFeedback(input: {customerId: "A", rating: 4})'
        " @include(if: $x) { id } }",
        'mutation ($x: Boolean = true) { submitFeedback(input: {customerId: "A", rating: 4})'
        " { id @include(if: $x) } }",
    ):
        payload = {"query": query.replace('"A"', f'"{parties.a}"'), "variables": {"x": None}}
        resp = prod.post("/graphql", json=payload, headers=bearer(token("customer", parties.a)))
        _assert_refused(resp)  # today: 500, and 200 with the error
    assert count(sec_engine, mine, c=parties.a) == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_null_for_a_defaulted_include_variable_over_websockets(
    prod: Any, parties: Parties, protocol: str
) -> None:
    headers = bearer(token("customer", parties.a))
    with prod.websocket_connect("/graphql", subprotocols=[protocol], headers=headers) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        payload = {"query": NULL_DIRECTIVES["a root field"], "variables": {"x": None}}
        ws_send(ws, protocol, "1", payload)
        out = ws_outcome(ws, "1")
    assert out.codes == ["BAD_USER_INPUT"], out  # today: INTERNAL


# --- 3. objects and lists where a custom scalar is expected ------------------------------

SCALAR_CONFUSION: dict[str, tuple[str, dict[str, Any] | None]] = {
    "an object literal as a Decimal": (
        "{ orders(filter: {totalAmount: {gt: {a: 1}}}) { totalCount } }",
        None,
    ),
    "an object variable as a Decimal": (
        "query ($d: Decimal) { orders(filter: {totalAmount: {eq: $d}}) { totalCount } }",
        {"d": {"a": 1}},
    ),
    "a list of lists as [DateTime!]": (
        "query ($d: [DateTime!]) { orders(filter: {orderedAt: {in: $d}}) { totalCount } }",
        {"d": [["2025-01-01T00:00:00Z"]]},
    ),
    "a list of lists literal as a DateTime": (
        '{ orders(filter: {orderedAt: {gt: [["2025-01-01T00:00:00Z"]]}}) { totalCount } }',
        None,
    ),
    "a list of objects as [Decimal!]": (
        "query ($d: [Decimal!]) { orders(filter: {totalAmount: {in: $d}}) { totalCount } }",
        {"d": [{"a": 1}]},
    ),
}


@pytest.mark.parametrize("name", list(SCALAR_CONFUSION))
def test_objects_and_lists_are_not_decimals_or_date_times(
    prod: Any, parties: Parties, name: str
) -> None:
    query, variables = SCALAR_CONFUSION[name]
    resp = prod.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers=bearer(token("customer", parties.a)),
    )
    _assert_refused(resp)  # today: 500 (TypeError / AttributeError in the executor)


@pytest.mark.parametrize(
    "encoding",
    ["utf-8 bytes of the half (ED A0 80)", "utf-16-le body", "utf-32-be body"],
)
def test_a_lone_surrogate_with_no_escape_in_the_body_is_refused(
    prod: Any, parties: Parties, encoding: str
) -> None:
    """json.loads decodes a bytes body with ``surrogatepass`` (UTF-8, and UTF-16/32 it
    detects itself): a lone half reaches the operation with no ``\\uD800`` escape in the
    request's text, so a search of the text for the escape cannot stand for the check."""
    query = SURROGATE_READS["in a filter value"]
    text = json.dumps({"query": query, "variables": {"s": "\ud800"}}, ensure_ascii=False)
    body = text.encode(encoding.split()[0], "surrogatepass")
    assert b"\\u" not in body and json.loads(body)["variables"]["s"] == "\ud800"
    resp = prod.post(
        "/graphql",
        content=body,
        headers={**bearer(token("customer", parties.a)), "Content-Type": "application/json"},
    )
    _assert_refused(resp)
