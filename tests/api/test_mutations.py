"""Mutations: each works and returns the changed object; each refusal has its code and
leaves the database exactly as it was. Runs on its own database (it writes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.api.conftest import Shop, TestClient
from tests.api.helpers import body_of

Run = Callable[..., dict[str, Any]]

TABLES = [
    "customers",
    "products",
    "orders",
    "order_items",
    "order_status_history",
    "feedback",
    "returns",
    "support_tickets",
]


@pytest.fixture
def run(w_client: TestClient) -> Run:
    def go(query: str, **variables: Any) -> dict[str, Any]:
        return body_of(w_client.post("/graphql", json={"query": query, "variables": variables}))

    return go


def snapshot(engine: Engine) -> dict[str, Any]:
    """Row counts and checksums of every app table (a refused write must not move them)."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for t in TABLES:
            out[t] = conn.execute(
                sa.text(
                    f"SELECT count(*), md5(coalesce(string_agg(x::text,"
                    f" ',' ORDER BY x::text), '')) FROM app.{t} x"
                )
            ).one()
    return out


def refused(run: Run, engine: Engine, code: str, query: str, **variables: Any) -> dict[str, Any]:
    before = snapshot(engine)
    body = run(query, **variables)
    assert body["data"] is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == [code], body["errors"]
    assert snapshot(engine) == before
    ext: dict[str, Any] = body["errors"][0]["extensions"]
    return ext


def ok(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    out: dict[str, Any] = body["data"]
    return out


CREATE_CUSTOMER = """mutation ($input: CreateCustomerInput!) {
  createCustomer(input: $input) { id email firstName segment summary { orderCount } } }"""


def test_create_and_update_customer(run: Run, w_engine: Engine, w_shop: Shop) -> None:
    base = {
        "email": "new@example.com",
        "firstName": "New",
        "lastName": "Person",
        "country": "NL",
        "region": "NH",
        "city": "Amsterdam",
        "segment": "CORPORATE",
    }
    created = ok(run(CREATE_CUSTOMER, input=base))["createCustomer"]
    assert created["email"] == "new@example.com" and created["segment"] == "CORPORATE"
    assert created["summary"] == {"orderCount": 0}
    ext = refused(
        run, w_engine, "CONFLICT", CREATE_CUSTOMER, input={**base, "email": "NEW@example.com"}
    )
    assert ext["field"] == "email" and "constraint" not in ext
    refused(run, w_engine, "BAD_USER_INPUT", CREATE_CUSTOMER, input={**base, "email": "nope"})

    update = """mutation ($id: ID!, $input: UpdateCustomerInput!) {
      updateCustomer(id: $id, input: $input) { id city lastName } }"""
    changed = ok(run(update, id=created["id"], input={"city": "Utrecht"}))["updateCustomer"]
    assert changed == {"id": created["id"], "city": "Utrecht", "lastName": "Person"}
    refused(run, w_engine, "NOT_FOUND", update, id="99999999", input={"city": "X"})
    refused(run, w_engine, "BAD_USER_INPUT", update, id=created["id"], input={})
    refused(run, w_engine, "BAD_USER_INPUT", update, id=created["id"], input={"lastName": " "})
    refused(run, w_engine, "BAD_USER_INPUT", update, id=created["id"], input={"city": None})


def test_create_and_update_product(run: Run, w_engine: Engine, w_shop: Shop) -> None:
    create = """mutation ($input: CreateProductInput!) {
      createProduct(input: $input) { id sku unitPrice stock } }"""
    base = {
        "sku": "NEW-1",
        "name": "New",
        "category": "c",
        "subcategory": "s",
        "brand": "b",
        "unitPrice": "9.5",
        "cost": "3",
        "stock": 4,
    }
    created = ok(run(create, input=base))["createProduct"]
    assert created["unitPrice"] == "9.50" and created["stock"] == 4
    refused(run, w_engine, "CONFLICT", create, input=base)
    refused(
        run, w_engine, "BAD_USER_INPUT", create, input={**base, "sku": "NEW-2", "unitPrice": "-1"}
    )
    for price in (" 1", "1_0", "\u0663"):  # Decimal() would read 1, 10 and 3
        bad = {**base, "sku": "NEW-2", "unitPrice": price}
        refused(run, w_engine, "BAD_USER_INPUT", create, input=bad)
    update = """mutation ($id: ID!, $input: UpdateProductInput!) {
      updateProduct(id: $id, input: $input) { unitPrice stock } }"""
    assert ok(run(update, id=created["id"], input={"unitPrice": "12.350", "stock": 7}))[
        "updateProduct"
    ] == {"unitPrice": "12.35", "stock": 7}  # a trailing zero is no third decimal
    refused(run, w_engine, "BAD_USER_INPUT", update, id=created["id"], input={"stock": -1})


CREATE_PRODUCT = """mutation ($input: CreateProductInput!) {
  createProduct(input: $input) { id } }"""
UPDATE_PRODUCT = """mutation ($id: ID!, $input: UpdateProductInput!) {
  updateProduct(id: $id, input: $input) { unitPrice } }"""
PRODUCT = {"sku": "MONEY-1", "name": "Money", "category": "c", "subcategory": "s", "brand": "b",
           "unitPrice": "10.00", "cost": "4.00"}  # fmt: skip


def test_a_money_input_with_a_third_decimal_is_refused_naming_its_field(
    run: Run, w_client: TestClient, w_engine: Engine, w_shop: Shop
) -> None:
    """Every Decimal input is an amount of money, in cents: a third decimal is refused, as
    placeOrder's discount always was, naming the field, and nothing is written. (PostgreSQL
    rounded them: "99.999" stored 100.00, and "-0.004" stored 0.00 past the rule that a
    price is not negative.)"""
    pid = str(w_shop.products[1])
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("unitPrice", CREATE_PRODUCT, {"input": {**PRODUCT, "unitPrice": "10.005"}}),
        ("cost", CREATE_PRODUCT, {"input": {**PRODUCT, "cost": "5.555"}}),
        ("unitPrice", UPDATE_PRODUCT, {"id": pid, "input": {"unitPrice": "99.999"}}),
        ("unitPrice", UPDATE_PRODUCT, {"id": pid, "input": {"unitPrice": "-0.004"}}),
        ("unitPrice", UPDATE_PRODUCT, {"id": pid, "input": {"unitPrice": 10.555}}),  # a number
        ("cost", UPDATE_PRODUCT, {"id": pid, "input": {"cost": "1e-3"}}),
    ]
    for field, query, variables in cases:
        ext = refused(run, w_engine, "BAD_USER_INPUT", query, **variables)
        assert (ext["field"], ext["reason"]) == (field, "too many decimals"), (variables, ext)
    literal = f'mutation {{ updateProduct(id: "{pid}", input: {{unitPrice: "99.999"}}) {{ id }} }}'
    ext = refused(run, w_engine, "BAD_USER_INPUT", literal)
    assert ext == {"code": "BAD_USER_INPUT", "field": "unitPrice", "reason": "too many decimals",
                   "value": "99.999"}  # fmt: skip
    resp = w_client.post("/graphql", json={"query": literal})
    assert resp.status_code == 400, resp.text
    assert resp.json()["errors"][0]["message"] == (
        "invalid unitPrice: an amount of money has at most 2 decimals, got '99.999'"
    )
    # the discount: the same words as any money input's, with the item's place
    ext = refused(
        run,
        w_engine,
        "BAD_USER_INPUT",
        PLACE,
        input={"customerId": str(w_shop.customers[0]), "channel": "WEB", "paymentMethod": "CARD",
               "items": [{"productId": pid, "quantity": 1},
                         {"productId": str(w_shop.products[2]), "quantity": 1,
                          "discount": "1.005"}]},
    )  # fmt: skip
    assert (ext["field"], ext["index"], ext["reason"]) == ("discount", 2, "too many decimals")


def test_a_refund_with_a_third_decimal_is_told_as_such(
    run: Run, w_engine: Engine, w_shop: Shop
) -> None:
    """1.001 is within what was paid for the unit: the refusal says the third decimal is the
    matter (it said "refund 1.001 must be between 0 and 53.98", reason "out of range")."""
    oid = _new_order(run, w_shop)
    for status in ("PAID", "SHIPPED", "DELIVERED"):
        ok(run(STATUS, id=oid, s=status))
    request = """mutation ($input: RequestReturnInput!) { requestReturn(input: $input) { id } }"""
    ret = ok(run(request, input={"orderId": oid, "lineNo": 1, "quantity": 1, "reason": "DAMAGED"}))
    approve = """mutation ($id: ID!) { approveReturn(returnId: $id, refundAmount: "1.001") {
      id } }"""
    ext = refused(run, w_engine, "BAD_USER_INPUT", approve, id=ret["requestReturn"]["id"])
    assert (ext["field"], ext["reason"]) == ("refundAmount", "too many decimals")
    message = run(approve, id=ret["requestReturn"]["id"])["errors"][0]["message"]
    assert "2 decimals" in message and "between" not in message, message


@pytest.mark.parametrize(
    ("field", "query", "variables"),
    [
        ("unitPrice", CREATE_PRODUCT, {"input": {**PRODUCT, "unitPrice": "1e12"}}),
        ("unitPrice", CREATE_PRODUCT, {"input": {**PRODUCT, "unitPrice": "1e10"}}),
        ("cost", CREATE_PRODUCT, {"input": {**PRODUCT, "cost": "99999999999.99"}}),
        ("unitPrice", UPDATE_PRODUCT, {"id": "P", "input": {"unitPrice": "123456789012"}}),
    ],
)
def test_a_number_its_column_cannot_hold_is_refused_naming_its_field(
    run: Run, w_engine: Engine, w_shop: Shop, field: str, query: str, variables: dict[str, Any]
) -> None:
    """A price of 10^10 or more does not fit numeric(12,2): PostgreSQL says "numeric field
    overflow" and names no column; the client is told which field."""
    if variables.get("id") == "P":
        variables = {**variables, "id": str(w_shop.products[0])}
    ext = refused(run, w_engine, "BAD_USER_INPUT", query, **variables)
    assert (ext["field"], ext["reason"]) == (field, "out of range"), ext


def test_a_rating_no_smallint_holds_is_refused_naming_its_field(
    run: Run, w_engine: Engine, w_shop: Shop
) -> None:
    submit = """mutation ($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { id } }"""
    ext = refused(run, w_engine, "BAD_USER_INPUT", submit,
                  input={"customerId": str(w_shop.customers[0]), "rating": 40000})  # fmt: skip
    assert (ext["field"], ext["reason"]) == ("rating", "out of range"), ext


PLACE = """mutation ($input: PlaceOrderInput!) {
  placeOrder(input: $input) { id status itemCount totalAmount customer { id }
    items { lineNo quantity unitPrice product { sku stock } } } }"""


def _stock(engine: Engine, pid: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT stock FROM app.products WHERE id = :p"), {"p": pid}
            ).scalar_one()
        )


def test_place_order(run: Run, w_engine: Engine, w_shop: Shop) -> None:
    cid, (p1, p2) = w_shop.customers[0], w_shop.products[:2]
    s1 = _stock(w_engine, p1)
    order = ok(
        run(
            PLACE,
            input={
                "customerId": str(cid),
                "channel": "MOBILE",
                "paymentMethod": "PAYPAL",
                "items": [
                    {"productId": str(p1), "quantity": 2},
                    {"productId": str(p2), "quantity": 1},
                ],
            },
        )
    )
    placed = order["placeOrder"]
    assert placed["status"] == "PENDING" and placed["itemCount"] == 3
    assert placed["customer"]["id"] == str(cid)
    assert placed["totalAmount"] == "41.50"  # 2 x 10.50 + 1 x 20.50 at the current prices
    assert placed["items"][0]["product"]["stock"] == s1 - 2


@pytest.mark.parametrize(
    ("code", "items"),
    [
        ("BAD_USER_INPUT", []),
        ("BAD_USER_INPUT", [{"productId": "P1", "quantity": -2}]),
        ("BAD_USER_INPUT", [{"productId": "P1", "quantity": 0}]),
        ("NOT_FOUND", [{"productId": "999999", "quantity": 1}]),
        (
            "OUT_OF_STOCK",
            [{"productId": "P1", "quantity": 1}, {"productId": "P2", "quantity": 5000}],
        ),
    ],
)
def test_place_order_refusals(
    run: Run, w_engine: Engine, w_shop: Shop, code: str, items: list[dict[str, Any]]
) -> None:
    ids = {"P1": str(w_shop.products[0]), "P2": str(w_shop.products[1])}
    items = [{**i, "productId": ids.get(i["productId"], i["productId"])} for i in items]
    ext = refused(
        run,
        w_engine,
        code,
        PLACE,
        input={
            "customerId": str(w_shop.customers[0]),
            "channel": "WEB",
            "paymentMethod": "CARD",
            "items": items,
        },
    )
    if code == "OUT_OF_STOCK":
        assert ext["sku"] == w_shop.skus[1] and ext["wanted"] == 5000
        assert ext["available"] == _stock(w_engine, w_shop.products[1])


def test_an_order_holds_at_most_a_hundred_lines(run: Run, w_engine: Engine, w_shop: Shop) -> None:
    """The query cost counts an order's ``items`` as 10 lines (api/rules.py LIST_ROWS); a
    basket of thousands of lines would make every read of the order that much bigger. 100
    lines are taken, 101 refused at ``items`` with nothing written."""
    with w_engine.begin() as conn:
        pids = (
            conn.execute(
                sa.text(
                    "INSERT INTO app.products (sku, name, category, subcategory, brand,"
                    " unit_price, cost, stock)"
                    " SELECT 'LINES-' || g, 'Line ' || g, 'Test', 'Lines', 'Acme', 1, 1, 10"
                    " FROM generate_series(1, 101) AS g RETURNING id"
                )
            )
            .scalars()
            .all()
        )
    order = {"customerId": str(w_shop.customers[0]), "channel": "WEB", "paymentMethod": "CARD"}
    lines = [{"productId": str(p), "quantity": 1} for p in pids]
    ext = refused(run, w_engine, "BAD_USER_INPUT", PLACE, input={**order, "items": lines})
    assert (ext["field"], ext["reason"], ext["max"], ext["value"]) == (
        "items",
        "too many lines",
        100,
        101,
    ), ext
    placed = ok(run(PLACE, input={**order, "items": lines[:100]}))["placeOrder"]
    assert [i["lineNo"] for i in placed["items"]] == list(range(1, 101))


def test_a_procedures_refusal_names_the_api_field(run: Run, w_engine: Engine, w_shop: Shop) -> None:
    """The stored procedures name their parameters (product_id); the client is told the
    API's field (productId), as for a constraint's refusal."""
    ext = refused(
        run,
        w_engine,
        "BAD_USER_INPUT",
        PLACE,
        input={
            "customerId": str(w_shop.customers[0]),
            "channel": "WEB",
            "paymentMethod": "CARD",
            "items": [{"productId": "-1", "quantity": 1}],
        },
    )
    assert ext["field"] == "productId", ext


def test_place_order_unknown_customer(run: Run, w_engine: Engine, w_shop: Shop) -> None:
    refused(
        run,
        w_engine,
        "NOT_FOUND",
        PLACE,
        input={
            "customerId": "88888888",
            "channel": "WEB",
            "paymentMethod": "CARD",
            "items": [{"productId": str(w_shop.products[0]), "quantity": 1}],
        },
    )


STATUS = """mutation ($id: ID!, $s: OrderStatus!) {
  setOrderStatus(orderId: $id, status: $s) { id status paidAt shippedAt deliveredAt
    statusHistory { fromStatus toStatus changedBy } } }"""


def _new_order(run: Run, shop: Shop) -> str:
    body = ok(
        run(
            PLACE,
            input={
                "customerId": str(shop.customers[1]),
                "channel": "WEB",
                "paymentMethod": "CARD",
                "items": [{"productId": str(shop.products[2]), "quantity": 2}],
            },
        )
    )
    order_id: str = body["placeOrder"]["id"]
    return order_id


def test_order_status_and_returns(run: Run, w_engine: Engine, w_shop: Shop) -> None:
    oid = _new_order(run, w_shop)
    paid = ok(run(STATUS, id=oid, s="PAID"))["setOrderStatus"]
    assert paid["status"] == "PAID" and paid["paidAt"] is not None
    assert paid["statusHistory"][-1] == {
        "fromStatus": "PENDING",
        "toStatus": "PAID",
        "changedBy": "anonymous",
    }
    ext = refused(run, w_engine, "INVALID_TRANSITION", STATUS, id=oid, s="DELIVERED")
    assert (ext["from"], ext["to"]) == ("PAID", "DELIVERED")
    request = """mutation ($input: RequestReturnInput!) {
      requestReturn(input: $input) { id status quantity reason order { id } } }"""
    refused(
        run,
        w_engine,
        "CONFLICT",
        request,
        input={"orderId": oid, "lineNo": 1, "quantity": 1, "reason": "DAMAGED"},
    )
    ok(run(STATUS, id=oid, s="SHIPPED"))
    ok(run(STATUS, id=oid, s="DELIVERED"))
    refused(
        run,
        w_engine,
        "BAD_USER_INPUT",
        request,
        input={"orderId": oid, "lineNo": 1, "quantity": 3, "reason": "DAMAGED"},
    )
    ret = ok(run(request, input={"orderId": oid, "lineNo": 1, "quantity": 1, "reason": "DAMAGED"}))[
        "requestReturn"
    ]
    assert ret["status"] == "REQUESTED" and ret["order"]["id"] == oid
    approve = """mutation ($id: ID!) { approveReturn(returnId: $id) { status refundAmount } }"""
    too_much = """mutation ($id: ID!) {
      approveReturn(returnId: $id, refundAmount: "999") { id } }"""
    # a procedure's refusal names the API's field, as a constraint's does (not refund_amount)
    assert refused(run, w_engine, "BAD_USER_INPUT", too_much, id=ret["id"])["field"] == (
        "refundAmount"
    )
    approved = ok(run(approve, id=ret["id"]))["approveReturn"]
    assert approved["status"] == "APPROVED" and approved["refundAmount"] == "30.50"
    refused(run, w_engine, "INVALID_TRANSITION", approve, id=ret["id"])
    second = ok(
        run(
            request,
            input={
                "orderId": oid,
                "lineNo": 1,
                "quantity": 1,
                "reason": "CHANGED_MIND",
                "comment": "too big",
            },
        )
    )["requestReturn"]
    reject = """mutation ($id: ID!) { rejectReturn(returnId: $id, comment: "no") {
      status comment decisionComment decidedAt } }"""
    rejected = ok(run(reject, id=second["id"]))["rejectReturn"]
    assert rejected["status"] == "REJECTED" and rejected["decidedAt"] is not None
    assert rejected["decisionComment"] == "no" and rejected["comment"] == "too big"
    refused(run, w_engine, "NOT_FOUND", reject, id="77777777")


def test_feedback_and_tickets(run: Run, w_engine: Engine, w_shop: Shop) -> None:
    submit = """mutation ($input: SubmitFeedbackInput!) {
      submitFeedback(input: $input) { id kind rating product { sku } customer { id } } }"""
    cid, pid = str(w_shop.customers[3]), str(w_shop.products[4])
    fb = ok(
        run(
            submit,
            input={
                "customerId": cid,
                "productId": pid,
                "rating": 5,
                "kind": "REVIEW",
                "comment": "great",
            },
        )
    )["submitFeedback"]
    assert fb["product"]["sku"] == w_shop.skus[4] and fb["rating"] == 5
    refused(run, w_engine, "BAD_USER_INPUT", submit, input={"customerId": cid, "rating": 6})
    refused(run, w_engine, "BAD_USER_INPUT", submit, input={"customerId": "66666666", "rating": 3})

    open_ = """mutation ($input: OpenSupportTicketInput!) {
      openSupportTicket(input: $input) { id status priority subject order { id } } }"""
    ticket = ok(
        run(
            open_,
            input={
                "customerId": cid,
                "category": "DELIVERY",
                "channel": "CHAT",
                "subject": "Where is it?",
                "priority": "HIGH",
            },
        )
    )["openSupportTicket"]
    assert ticket["status"] == "OPEN" and ticket["order"] is None
    other_order = str(w_shop.orders[w_shop.customers[2]][0])
    refused(
        run,
        w_engine,
        "BAD_USER_INPUT",
        open_,
        input={
            "customerId": cid,
            "category": "DELIVERY",
            "channel": "CHAT",
            "subject": "x",
            "orderId": other_order,
        },
    )
    update = """mutation ($id: ID!, $s: TicketStatus!, $sat: Int) {
      updateSupportTicket(ticketId: $id, status: $s, satisfaction: $sat) {
        status resolvedAt satisfaction } }"""
    resolved = ok(run(update, id=ticket["id"], s="RESOLVED", sat=4))["updateSupportTicket"]
    assert resolved["status"] == "RESOLVED" and resolved["resolvedAt"] is not None
    ok(run(update, id=ticket["id"], s="CLOSED"))
    refused(run, w_engine, "INVALID_TRANSITION", update, id=ticket["id"], s="OPEN")


def test_free_text_has_a_length_limit_named_by_its_field(
    run: Run, w_engine: Engine, w_shop: Shop
) -> None:
    """A customer's free text is bounded (a hostile one could otherwise store a megabyte per
    row, as many times as the rate limit allows): past the limit the write is refused as
    BAD_USER_INPUT naming the field, and nothing is written; at the limit it is taken."""
    cid, pid = str(w_shop.customers[5]), str(w_shop.products[2])
    submit = """mutation ($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { id } }"""
    feedback = {"customerId": cid, "productId": pid, "rating": 4, "kind": "REVIEW"}
    ext = refused(
        run, w_engine, "BAD_USER_INPUT", submit, input={**feedback, "comment": "x" * 10_001}
    )
    assert ext["field"] == "comment"
    ok(run(submit, input={**feedback, "comment": "é" * 10_000}))  # characters, not bytes

    open_ = (
        """mutation ($input: OpenSupportTicketInput!) { openSupportTicket(input: $input) { id } }"""
    )
    ticket = {"customerId": cid, "category": "OTHER", "channel": "WEB"}
    ext = refused(run, w_engine, "BAD_USER_INPUT", open_, input={**ticket, "subject": "s" * 201})
    assert ext["field"] == "subject"
    ext = refused(run, w_engine, "BAD_USER_INPUT", open_, input={**ticket, "subject": " "})
    assert ext["field"] == "subject"  # the rule it had: not blank
    for blank in ("\t", "\u200b", "\u3000\u00a0", "\u202e", "\n\n"):  # (hostile probe 22, L2)
        ext = refused(run, w_engine, "BAD_USER_INPUT", open_, input={**ticket, "subject": blank})
        assert (ext["field"], ext["reason"]) == ("subject", "blank"), (blank, ext)
    ok(run(open_, input={**ticket, "subject": "s" * 200}))

    base = {
        "email": "long@example.com",
        "firstName": "Long",
        "lastName": "Names",
        "country": "NL",
        "region": "NH",
        "city": "Haarlem",
    }
    for name, value in (
        ("firstName", "f" * 201),
        ("lastName", "l" * 201),
        ("city", "c" * 201),
        ("email", "e" * 250 + "@x.nl"),
        ("firstName", "\u200b"),
        ("lastName", "\t\u3000"),
    ):
        ext = refused(run, w_engine, "BAD_USER_INPUT", CREATE_CUSTOMER, input={**base, name: value})
        assert ext["field"] == name, ext
    # a country without regions: a place may be empty, as before 0038 (hostile probe 23, L2)
    ok(run(CREATE_CUSTOMER, input={**base, "email": "sg@example.com", "region": ""}))


def _status_and_ext(w_client: TestClient, query: str, **variables: Any) -> tuple[int, Any]:
    resp = w_client.post("/graphql", json={"query": query, "variables": variables})
    body = resp.json()
    assert body["data"] is None, body
    return resp.status_code, body["errors"][0]["extensions"]


def test_values_that_would_stop_the_warehouse_are_refused_naming_their_field(
    run: Run, w_client: TestClient, w_engine: Engine, w_shop: Shop
) -> None:
    """A hostile probe stopped the pipeline for good with values the API took: a stock of
    2,147,483,647 (fact_stock_daily's integer levels overflowed), a price of
    9,999,999,999.99 ordered 100 times (an order of 999,999,999,999.00 overflowed the RFM
    snapshot and the customer's lifetime value). Past the bounds each is a 400
    BAD_USER_INPUT naming its field, nothing written; at the bounds each is taken."""
    product = {**PRODUCT, "sku": "BOUND-1", "unitPrice": "1000000.00", "cost": "1000000.00",
               "stock": 1_000_000_000}  # fmt: skip
    pid = ok(run(CREATE_PRODUCT, input=product))["createProduct"]["id"]
    stock = """mutation ($id: ID!, $input: UpdateProductInput!) {
      updateProduct(id: $id, input: $input) { stock } }"""
    for field, value in (("stock", 2_147_483_647), ("stock", 1_000_000_001),
                         ("unitPrice", "9999999999.99"), ("unitPrice", "1000000.01"),
                         ("cost", "1000000.01")):  # fmt: skip
        before = snapshot(w_engine)
        code, ext = _status_and_ext(w_client, stock, id=pid, input={field: value})
        assert (code, ext["code"], ext["field"]) == (400, "BAD_USER_INPUT", field), ext
        assert snapshot(w_engine) == before
        bad = {**product, "sku": "BOUND-2", field: value}
        code, ext = _status_and_ext(w_client, CREATE_PRODUCT, input=bad)
        assert (code, ext["code"], ext["field"]) == (400, "BAD_USER_INPUT", field), ext

    cid = ok(run(CREATE_CUSTOMER, input={"email": "big@example.com", "firstName": "Big",
                                         "lastName": "Spender", "country": "NL", "region": "NH",
                                         "city": "Haarlem"}))["createCustomer"]["id"]  # fmt: skip
    order = {"customerId": cid, "channel": "WEB", "paymentMethod": "CARD"}
    # a line of more than 100,000 units (even of a free product: its cost adds up in the
    # warehouse), told at its item
    free = ok(run(CREATE_PRODUCT, input={**product, "sku": "BOUND-3", "unitPrice": "0"}))
    items = [{"productId": pid, "quantity": 1},
             {"productId": free["createProduct"]["id"], "quantity": 100_001}]  # fmt: skip
    before = snapshot(w_engine)
    code, ext = _status_and_ext(w_client, PLACE, input={**order, "items": items})
    assert (code, ext["code"], ext["field"], ext["index"]) == (400, "BAD_USER_INPUT", "quantity", 2)
    assert (ext["reason"], ext["max"]) == ("over the maximum", 100_000), ext
    assert snapshot(w_engine) == before
    # an order of more than 1,000,000,000.00
    items = [{"productId": pid, "quantity": 1_001}]
    code, ext = _status_and_ext(w_client, PLACE, input={**order, "items": items})
    assert (code, ext["code"], ext["field"]) == (400, "BAD_USER_INPUT", "items"), ext
    assert ext["value"] == "1001000000.00", ext
    assert snapshot(w_engine) == before

    # at the bounds: an order of 1,000,000,000.00, paid, read in the staff's summaries
    placed = ok(run(PLACE, input={**order, "items": [{"productId": pid, "quantity": 1_000}]}))
    assert placed["placeOrder"]["totalAmount"] == "1000000000.00"
    paid = """mutation ($id: ID!) { setOrderStatus(orderId: $id, status: PAID) { status } }"""
    ok(run(paid, id=placed["placeOrder"]["id"]))
    read = """query ($id: ID!) { customer(id: $id) { summary { lifetimeValue } } }"""
    summary = ok(run(read, id=cid))["customer"]["summary"]
    assert summary == {"lifetimeValue": "1000000000.00"}


def test_a_customers_sums_over_many_orders_at_the_bounds_are_read(
    run: Run, w_engine: Engine, w_shop: Shop
) -> None:
    """A customer may place thousands of orders: 1,001 paid orders of 1,000,000,000.00 each
    sum past numeric(14,2), which the summary's lifetime value was cast to: reading any
    page of customers with summaries was a 400 "a number is out of range". The sums are
    numeric(20,2) now."""
    with w_engine.begin() as conn:
        for statement in (
            "INSERT INTO app.products (sku, name, category, subcategory, brand, unit_price,"
            " cost, stock) VALUES ('BOUND-MANY', 'Many', 'c', 's', 'b', 1000000, 1000000, 0)",
            "INSERT INTO app.customers (email, first_name, last_name, country, region, city)"
            " VALUES ('many@example.com', 'Many', 'Orders', 'NL', 'NH', 'Haarlem')",
            "INSERT INTO app.orders (customer_id, channel, payment_method)"
            " SELECT c.id, 'web', 'card' FROM app.customers AS c, generate_series(1, 1001)"
            " WHERE c.email = 'many@example.com'",
            "INSERT INTO app.order_items (order_id, line_no, product_id, quantity, unit_price)"
            " SELECT o.id, 1, p.id, 1000, p.unit_price FROM app.orders AS o"
            " JOIN app.customers AS c ON c.id = o.customer_id, app.products AS p"
            " WHERE c.email = 'many@example.com' AND p.sku = 'BOUND-MANY'",
            "UPDATE app.orders SET status = 'paid' WHERE customer_id ="
            " (SELECT id FROM app.customers WHERE email = 'many@example.com')",
        ):
            conn.execute(sa.text(statement))
        cid, pid = conn.execute(
            sa.text(
                "SELECT (SELECT id FROM app.customers WHERE email = 'many@example.com'),"
                " (SELECT id FROM app.products WHERE sku = 'BOUND-MANY')"
            )
        ).one()
    # the probe's read: a page of customers with their summaries (this one first)
    read = """{ customers(first: 3, orderBy: [{id: DESC}]) {
      edges { node { id summary { lifetimeValue averageOrderValue } } } } }"""
    first = ok(run(read))["customers"]["edges"][0]["node"]
    assert first == {
        "id": str(cid),
        "summary": {"lifetimeValue": "1001000000000.00", "averageOrderValue": "1000000000.00"},
    }
    with w_engine.connect() as conn:
        revenue = conn.execute(sa.text(
            "SELECT revenue::text FROM app.product_performance WHERE product_id = :p"),
            {"p": pid}).scalar_one()  # fmt: skip
    assert revenue == "1001000000000.00"
