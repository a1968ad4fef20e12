"""The compiled read path answers exactly as the Strawberry path does, in one statement.

Every query of the corpus runs on both paths (two endpoints on one private database:
``compiled_reads=True`` and ``False``) and the JSON bodies must be byte-identical, data
and errors alike. Queries the compiled path covers must also have been answered by it:
exactly one SQL statement, not a silent fallback.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from db.engine import make_engine
from schema.app import schema
from schema.compiled import lane
from tests.api.conftest import Shop, build_shop, make_client
from tests.api.helpers import body_of

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@dataclass
class Extra:
    customer: int  # Müller: orders 10.00 and 10.01 (average 10.005), a return, tickets
    orders: list[int]
    product: int  # "Café ☕"
    returns: list[int]
    tickets: list[int]


def _one(conn: sa.Connection, sql: str, **params: Any) -> int:
    return int(conn.execute(sa.text(sql), params).scalar_one())


def build_extra(conn: sa.Connection, shop: Shop) -> Extra:
    """Rows the API fixture shop lacks: non-ASCII text, microsecond times, a half-cent
    average, returns and tickets in several states."""
    pid = _one(
        conn,
        "INSERT INTO app.products (sku, name, category, subcategory, brand, unit_price, cost,"
        " stock) VALUES ('CMP-001', E'Café ☕ \"quoted\" \\\\ 😀 \\t\\u007f', 'tools', 'sub',"
        " 'ßrand', 10.00, 1, 50)"
        " RETURNING id",
    )
    cid = _one(
        conn,
        "INSERT INTO app.customers (email, first_name, last_name, gender, birth_date, segment,"
        " country, region, city, signup_at) VALUES ('mü@example.com', 'Jürgen', 'Müller',"
        " 'male', '1980-02-29', 'corporate', 'DE', 'Bayern', 'München',"
        " '2024-03-01 08:09:10.123456+00') RETURNING id",
    )
    orders = []
    for k, (price, at) in enumerate(
        [("10.00", "2025-06-01 10:00:00.000001+00"), ("10.01", "2025-06-02 10:00:00+00")]
    ):
        oid = _one(
            conn,
            "INSERT INTO app.orders (customer_id, channel, payment_method, ordered_at)"
            " VALUES (:c, 'mobile', 'bank_transfer', :at) RETURNING id",
            c=cid,
            at=at,
        )
        conn.execute(
            sa.text(
                "INSERT INTO app.order_items (order_id, line_no, product_id, quantity,"
                " unit_price) VALUES (:o, 1, :p, 1, :price), (:o, 2, :p2, 2, 0)"
            ),
            {"o": oid, "p": pid, "price": Decimal(price), "p2": shop.products[k]},
        )
        orders.append(oid)
    for status in ("paid", "shipped", "delivered"):
        conn.execute(sa.text("SELECT app.set_order_status(:o, :s)"), {"o": orders[0], "s": status})
    returns = [
        _one(conn, "SELECT app.request_return(:o, 2, 1, 'damaged', 'dent')", o=orders[0]),
        _one(conn, "SELECT app.request_return(:o, 1, 1, 'changed_mind')", o=orders[0]),
    ]
    conn.execute(sa.text("SELECT app.approve_return(:r)"), {"r": returns[0]})
    tickets = [
        _one(
            conn,
            "SELECT app.open_ticket(:c, 'delivery', 'high', 'email', 'Où est-il ?', :o)",
            c=cid,
            o=orders[1],
        ),
        _one(conn, "SELECT app.open_ticket(:c, 'account', 'low', 'chat', 'Login')", c=cid),
    ]
    conn.execute(sa.text("SELECT app.set_ticket_status(:t, 'resolved', 4)"), {"t": tickets[0]})
    conn.execute(
        sa.text(
            "INSERT INTO app.feedback (customer_id, order_id, product_id, kind, rating, comment)"
            " VALUES (:c, :o, :p, 'review', 5, 'Très bien'), (:c, NULL, :p, 'complaint', 2, NULL)"
        ),
        {"c": cid, "o": orders[0], "p": pid},
    )
    return Extra(cid, orders, pid, returns, tickets)


@dataclass
class World:
    engine: Engine
    shop: Shop
    extra: Extra
    compiled: TestClient
    strawberry: TestClient
    statements: list[str]


@pytest.fixture(scope="module")
def world(clone_database: Callable[[str], str]) -> Iterator[World]:
    engine = make_engine(clone_database("compiled"))
    with engine.begin() as conn:
        shop = build_shop(conn)
        extra = build_extra(conn, shop)
    log: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "set_config" not in statement:
            log.append(statement)

    sa.event.listen(engine, "before_cursor_execute", before)
    # a repeated query is answered by the fast lane, on a raw connection: count it too
    unobserve = lane.observe(lambda statement: before(None, None, statement))

    def client(compiled: bool) -> TestClient:
        return make_client(engine, compiled)

    with client(True) as compiled, client(False) as plain:
        yield World(engine, shop, extra, compiled, plain, log)
    sa.event.remove(engine, "before_cursor_execute", before)
    unobserve()


def _post(c: TestClient, query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
    return body_of(c.post("/graphql", json={"query": query, "variables": variables or {}}))


def both(
    w: World, query: str, variables: dict[str, Any] | None = None, *, compiled: bool | None
) -> dict[str, Any]:
    """Run on both paths, assert identical bodies; ``compiled=True`` also asserts that the
    compiled path answered (one statement), ``False`` that it fell back."""
    w.statements.clear()
    fast = _post(w.compiled, query, variables)
    issued = len(w.statements)
    slow = _post(w.strawberry, query, variables)
    assert json.dumps(fast) == json.dumps(slow), f"\ncompiled:   {fast}\nstrawberry: {slow}"
    if compiled is True:
        assert "errors" not in fast, fast
        assert issued == 1, w.statements
    elif compiled is False:
        assert issued != 1 or "json_build_object" not in w.statements[0]
    return fast


ORDER_FIELDS = """id status orderedAt paidAt shippedAt deliveredAt channel paymentMethod
  itemCount totalAmount __typename"""
ITEM_FIELDS = "lineNo quantity unitPrice discount lineTotal product { id sku name unitPrice }"
CUSTOMER_FIELDS = """id email firstName lastName gender birthDate segment country region city
  signupAt __typename"""

CORPUS: dict[str, tuple[str, dict[str, Any]]] = {
    "nested connections with every scalar": (
        f"""{{ customers(first: 50) {{ totalCount __typename edges {{ __typename cursor node {{
            {CUSTOMER_FIELDS}
            orders(first: 3) {{ totalCount pageInfo {{ hasNextPage hasPreviousPage
              startCursor endCursor __typename }} edges {{ cursor node {{ {ORDER_FIELDS}
              items {{ {ITEM_FIELDS} }} customer {{ id lastName }}
              statusHistory {{ id fromStatus toStatus changedAt changedBy }} }} }} }}
        }} }} }} }}""",
        {},
    ),
    "last and before/after from variables, aliases with different args": (
        """query ($n: Int!, $m: Int) { customers(last: $n) {
            pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
            edges { node { id
              newest: orders(first: $m) { edges { cursor node { id orderedAt } } }
              oldest: orders(last: $m) { edges { cursor node { id orderedAt } }
                pageInfo { hasNextPage hasPreviousPage startCursor endCursor } }
              expensive: orders(first: 2, orderBy: [{totalAmount: DESC}]) {
                edges { cursor node { id totalAmount } } }
              cheap: orders(first: 2, orderBy: [{totalAmount: ASC}, {orderedAt: DESC}]) {
                edges { cursor node { id totalAmount } } pageInfo { endCursor } }
            } } } }""",
        {"n": 4, "m": 2},
    ),
    "empty connections, zero-size pages and nulls": (
        """{ customers(first: 0) { totalCount edges { cursor } pageInfo { hasNextPage
              hasPreviousPage startCursor endCursor } }
            orders(filter: {id: {eq: "999999999"}}) { totalCount edges { node { id } }
              pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
              aggregate { count sum { totalAmount itemCount } avg { totalAmount itemCount }
                min { orderedAt totalAmount } max { orderedAt itemCount } } } }""",
        {},
    ),
    "by-id roots, unknown ids and to-one relations": (
        """query ($c: ID!, $o: ID!, $p: ID!) {
            known: customer(id: $c) { id lastName orders(first: 1) { edges { node { id } } } }
            unknown: customer(id: "424242") { id }
            order(id: $o) { id customer { id city } items { lineNo product { sku } } }
            noOrder: order(id: 77777777) { id }
            product(id: $p) { id name sku unitPrice stock
              feedback { totalCount edges { node { id rating kind comment createdAt
                customer { lastName } order { id } product { sku } } } } }
            supportTicket(id: 99999) { id } __typename }""",
        {"c": "2", "o": "3", "p": "1"},
    ),
    "fragments, inline fragments, @include and @skip": (
        """query ($yes: Boolean!, $no: Boolean!) {
            customers(first: 3) { ...Page edges { node { ...on Customer { email }
              id @include(if: $yes) city @include(if: $no) country @skip(if: $yes)
              region @skip(if: $no) ... @include(if: $yes) { lastName } } } }
            }
          fragment Page on CustomerConnection { totalCount edges { cursor node { id
            ...Orders } } }
          fragment Orders on Customer { orders(first: 2) { edges { node { id
            ... on Order { status } } } } }""",
        {"yes": True, "no": False},
    ),
    "every filter operator": (
        """query ($t: DateTime!, $d: Decimal!) {
            a: orders(first: 100, filter: {status: {in: [PAID, CANCELLED]},
                totalAmount: {gte: $d}, orderedAt: {lt: $t}}) { totalCount edges { node { id } } }
            b: orders(filter: {or: [{status: {eq: PAID}}, {totalAmount: {lt: "50"}}],
                not: {id: {in: ["1", "2"]}}}) { totalCount edges { node { id } } }
            c: orders(filter: {and: [{status: {ne: PENDING}}, {status: {notIn: [PAID]}}],
                id: {gt: "3", lte: "20"}}) { totalCount edges { node { id status } } }
            d: customers(filter: {lastName: {contains: "ÜLL"}}) { edges { node { id } } }
            e: customers(filter: {email: {startsWith: "API1"}, region: null}) {
                edges { node { id } } }
            f: products(filter: {name: {contains: "50%_"}}) { edges { node { id name } } }
            g: customers(filter: {city: {isNull: false}, segment: {in: [CONSUMER]}}) {
                totalCount }
            h: customers(filter: {orders: {some: {totalAmount: {gt: "200"}}}}) {
                edges { node { id } } }
            i: customers(filter: {orders: {none: {}}}) { edges { node { id } } }
            j: orders(filter: {items: {some: {product: {some: {sku: {eq: "API-003"}}}}}}) {
                totalCount }
            k: supportTickets(filter: {status: {in: [RESOLVED]}, customer: {some: {
                country: {eq: "DE"}}}}) { edges { node { id status satisfaction subject
                resolvedAt closedAt category priority channel order { id } customer { id } } } }
            l: returns(filter: {status: {ne: REJECTED}}) { totalCount edges { node { id
                lineNo reason quantity status refundAmount comment requestedAt decidedAt
                order { id } customer { lastName } } } }
            m: feedback(filter: {createdAt: {isNull: false}, product: {some: {brand: {
                in: ["ßrand", "acme"]}}}}) { edges { node { id rating } } }
            n: customers(filter: {signupAt: {gt: $t}}) { totalCount }
          }""",
        {"t": "2025-03-01T00:00:00+00:00", "d": "40.5"},
    ),
    "aggregates, nested and at the root, with a half-cent average": (
        """{ customers(first: 10) { aggregate { count min { signupAt } max { signupAt } }
              edges { node { id orders { totalCount aggregate { __typename count
                sum { totalAmount itemCount } avg { totalAmount itemCount }
                min { totalAmount itemCount orderedAt } max { totalAmount orderedAt } } } } } }
            products { aggregate { count sum { unitPrice stock } avg { unitPrice stock }
              min { unitPrice } max { stock } } }
            feedback { aggregate { sum { rating } avg { rating } min { createdAt } } }
            returns { aggregate { sum { quantity refundAmount } avg { refundAmount } } }
            supportTickets { aggregate { count avg { satisfaction } max { openedAt } } } }""",
        {},
    ),
    "nested connections on every relation": (
        """{ customers(first: 10, orderBy: [{segment: ASC}, {signupAt: DESC}]) { edges {
              cursor node { id
              feedback(first: 5) { edges { cursor node { id rating } } }
              returns { totalCount edges { cursor node { id status } } }
              supportTickets(orderBy: [{openedAt: ASC}]) { edges { cursor node { id } } }
              orders(first: 2) { edges { node { id returns { edges { node { id quantity } } }
            } } } } } }
            products(first: 3, orderBy: [{unitPrice: DESC}]) { edges { cursor node {
              id feedback { totalCount } } } pageInfo { startCursor endCursor } } }""",
        {},
    ),
}


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_is_identical_and_compiled(world: World, name: str) -> None:
    query, variables = CORPUS[name]
    body = both(world, query, variables, compiled=True)
    assert "errors" not in body


def test_half_cent_average_rounds_like_python(world: World) -> None:
    body = both(
        world,
        """query ($id: ID!) { customer(id: $id) { orders { aggregate {
             avg { totalAmount } sum { totalAmount } } } } }""",
        {"id": str(world.extra.customer)},
        compiled=True,
    )
    agg = body["data"]["customer"]["orders"]["aggregate"]
    # (10.00 + 10.01) / 2 = 10.005 -> ROUND_HALF_EVEN gives 10.00 (round() would say 10.01)
    assert agg == {"avg": {"totalAmount": "10.00"}, "sum": {"totalAmount": "20.01"}}


def test_microseconds_and_non_ascii_text(world: World) -> None:
    body = both(
        world,
        """query ($id: ID!) { customer(id: $id) { lastName city signupAt birthDate
             orders(orderBy: [{orderedAt: ASC}]) { edges { cursor node { orderedAt } } } } }""",
        {"id": str(world.extra.customer)},
        compiled=True,
    )
    c = body["data"]["customer"]
    assert (c["lastName"], c["city"], c["birthDate"]) == ("Müller", "München", "1980-02-29")
    assert c["signupAt"] == "2024-03-01T08:09:10.123456+00:00"
    times = [e["node"]["orderedAt"] for e in c["orders"]["edges"]]
    assert times == ["2025-06-01T10:00:00.000001+00:00", "2025-06-02T10:00:00+00:00"]


PAGE = """query ($first: Int, $after: String, $last: Int, $before: String, $o: [OrderOrderBy!]) {
  orders(first: $first, after: $after, last: $last, before: $before, orderBy: $o) {
    edges { cursor node { id totalAmount orderedAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""

ORDERINGS: list[list[dict[str, str]] | None] = [
    None,
    [{"totalAmount": "ASC"}],
    [{"orderedAt": "ASC"}, {"id": "DESC"}],
    [{"totalAmount": "DESC"}, {"orderedAt": "ASC"}],
]


@pytest.mark.parametrize("order_by", ORDERINGS)
def test_cursor_walks_agree_and_cursors_cross_paths(
    world: World, order_by: list[dict[str, str]] | None
) -> None:
    seen: list[str] = []
    after = None
    for _ in range(50):
        page = both(world, PAGE, {"first": 4, "after": after, "o": order_by}, compiled=True)
        conn = page["data"]["orders"]
        seen += [e["node"]["id"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    back: list[str] = []
    before = None
    for _ in range(50):
        page = both(world, PAGE, {"last": 3, "before": before, "o": order_by}, compiled=True)
        conn = page["data"]["orders"]
        back = [e["node"]["id"] for e in conn["edges"]] + back
        if not conn["pageInfo"]["hasPreviousPage"]:
            break
        before = conn["pageInfo"]["startCursor"]
    assert back == seen
    total = both(world, "{ orders { totalCount } }", compiled=True)
    assert len(seen) == total["data"]["orders"]["totalCount"]


BAD: dict[str, tuple[str, dict[str, Any]]] = {
    "page over the cap": ("{ customers(first: 501) { totalCount } }", {}),
    "negative page": ("{ orders(last: -1) { totalCount } }", {}),
    "first and last": ("{ orders(first: 1, last: 1) { totalCount } }", {}),
    "nested page over the cap": (
        "{ customers(first: 2) { edges { node { id orders(first: 9999) { totalCount } } } } }",
        {},
    ),
    "nested page over the cap, nullable parent": (
        '{ customer(id: "2") { id orders(first: 9999) { totalCount } } }',
        {},
    ),
    "garbage cursor": ('{ orders(after: "zzz") { edges { cursor } } }', {}),
    "cursor of another ordering": (
        "query ($c: String) { orders(after: $c, orderBy: [{totalAmount: ASC}]) { totalCount } }",
        # ["id:asc", 1] is a customers cursor
        {"c": "WyJpZDphc2MiLDFd"},
    ),
    "bad id argument": ('{ customer(id: "abc") { id } order(id: "1") { id } }', {}),
    "bad id in a filter": ('{ orders(filter: {id: {eq: "x1"}}) { totalCount } }', {}),
    "two fields in one orderBy item": (
        "{ orders(orderBy: [{id: ASC, totalAmount: DESC}]) { totalCount } }",
        {},
    ),
    "variable of the wrong type": (
        "query ($n: Int) { orders(first: $n) { totalCount } }",
        {"n": "x"},
    ),
    "unknown field": ("{ orders { totalCount nope } }", {}),
    "bad decimal": ('{ orders(filter: {totalAmount: {gt: "abc"}}) { totalCount } }', {}),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_gets_identical_errors(world: World, name: str) -> None:
    query, variables = BAD[name]
    body = both(world, query, variables, compiled=None)
    assert body["errors"], body
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}


def test_an_unused_bad_page_under_no_parent_is_no_error_on_either_path(world: World) -> None:
    # Strawberry never resolves a connection under zero parents, so it never validates it
    body = both(
        world,
        "{ customers(first: 0) { edges { node { orders(first: 9999) { totalCount } } } } }",
        compiled=None,
    )
    assert body == {"data": {"customers": {"edges": []}}}


def test_uncompilable_queries_fall_back(world: World) -> None:
    # summary (a view with floats) runs on Strawberry, the rest of the query too
    both(world, "{ customers(first: 2) { edges { node { id summary { orderCount } } } } }",
         compiled=False)  # fmt: skip


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
def test_cursors_over_text_keys_escape_like_python(world: World, direction: str) -> None:
    # json.dumps escapes quotes, backslashes, controls, DEL and non-ASCII (astral: surrogates)
    query = """query ($o: [ProductOrderBy!], $a: String) { products(orderBy: $o, first: 2,
      after: $a) { edges { cursor node { name } } pageInfo { startCursor endCursor } } }"""
    order = [{"name": direction}, {"brand": "ASC"}]
    after = None
    names = []
    for _ in range(10):
        conn = both(world, query, {"o": order, "a": after}, compiled=True)["data"]["products"]
        names += [e["node"]["name"] for e in conn["edges"]]
        if not conn["edges"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert any("😀" in n and "\\" in n and "\x7f" in n for n in names), names


def test_the_issue_query_is_one_statement(world: World) -> None:
    query = (
        "{ customers(first: 100) { edges { node { orders(first: 10) { edges { node {"
        " items { product { sku } } } } } } } } }"
    )
    world.statements.clear()
    body = _post(world.compiled, query, None)
    assert "errors" not in body
    assert len(world.statements) == 1, world.statements
    world.statements.clear()
    _post(world.strawberry, query, None)
    assert 1 < len(world.statements) <= 4  # the Strawberry path: at most one per level


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    c_first=st.integers(min_value=0, max_value=8),
    backward=st.booleans(),
    o_size=st.integers(min_value=0, max_value=6),
    order=st.sampled_from(ORDERINGS),
    statuses=st.lists(st.sampled_from(["PENDING", "PAID", "CANCELLED", "DELIVERED"]), max_size=3),
    floor=st.decimals(min_value=0, max_value=400, places=2),
    negate=st.booleans(),
)
def test_random_pages_and_filters_agree(
    world: World,
    c_first: int,
    backward: bool,
    o_size: int,
    order: list[dict[str, str]] | None,
    statuses: list[str],
    floor: Decimal,
    negate: bool,
) -> None:
    flt: dict[str, Any] = {"totalAmount": {"gte": str(floor)}}
    if statuses:
        flt["status"] = {"in": statuses}
    if negate:
        flt = {"not": flt}
    query = """query ($c: Int, $cl: Int, $o: Int, $ol: Int, $f: OrderFilter, $ob: [OrderOrderBy!]) {
      customers(first: $c, last: $cl, filter: {orders: {some: $f}}) {
        totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { id orders(first: $o, last: $ol, filter: $f, orderBy: $ob) {
          totalCount aggregate { sum { totalAmount } avg { totalAmount } }
          pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
          edges { cursor node { id totalAmount status } } } } } } }"""
    variables = {
        "c": None if backward else c_first,
        "cl": c_first if backward else None,
        "o": None if backward else o_size,
        "ol": o_size if backward else None,
        "f": flt,
        "ob": order,
    }
    both(world, query, variables, compiled=True)


def test_query_limits_hold_on_the_compiled_path(world: World) -> None:
    # the compiled-reads schema reuses the limiters' rule classes: limits must still apply
    deep = "{ customers { edges { node { orders { edges { node { customer { orders { edges {"
    deep += " node { customer { orders { edges { node { id } } } } } } } } } } } } } } }"
    aliases = "{ " + " ".join(f"a{i}: customers {{ totalCount }}" for i in range(40)) + " }"
    for query in (deep, aliases):
        body = both(world, query, compiled=None)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["QUERY_TOO_COMPLEX"]


def test_a_statement_the_database_refuses_falls_back_and_is_logged(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from schema.compiled import execute
    from schema.compiled.sql import Built

    monkeypatch.setattr(execute, "statement", lambda op: Built("SELECT no_such_column", {}))
    query = "{ customers(first: 2) { edges { node { id lastName } } } __typename }"
    with caplog.at_level("ERROR", logger="cdms.api.compiled"):
        body = both(world, query, compiled=False)
    assert "errors" not in body and len(body["data"]["customers"]["edges"]) == 2
    assert any("compiled read failed" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    ("value", "on"), [(None, True), ("1", True), ("0", False), ("off", False), ("false", False)]
)
def test_the_switch_of_the_served_endpoint(
    world: World, monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool
) -> None:
    from api.app import AppOptions
    from api.execute import Executor
    from schema.compiled import CompiledReads

    if value is None:
        monkeypatch.delenv("CDMS_COMPILED_READS", raising=False)
    else:
        monkeypatch.setenv("CDMS_COMPILED_READS", value)
    opts = AppOptions.from_env()
    executor = Executor(schema, world.engine, opts.api, compiled_reads=opts.compiled_reads)
    assert (CompiledReads in executor.exec_schema.extensions) is on
    assert CompiledReads not in executor.schema.extensions  # the shared schema is untouched
