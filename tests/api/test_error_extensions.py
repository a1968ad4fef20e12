"""Errors speak the API's language (docs/api.md, "Formats"), whoever raised them: a stored
procedure, a trigger or Python. Enum values upper case (``DELIVERED``), ids strings,
amounts strings with two decimals, camelCase keys, entities by their GraphQL type
(``OrderItem``), and the message in the same terms; the same over HTTP and both WebSocket
subprotocols. Runs on its own database (it writes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.errors import NotFoundError
from ml.batch import KINDS
from schema.errors import api_error
from tests.api.conftest import Shop, TestClient

Refuse = Callable[..., dict[str, Any]]

PLACE = """mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }"""
STATUS = """mutation ($id: ID!, $s: OrderStatus!) { setOrderStatus(orderId: $id, status: $s) {
  id } }"""
REQUEST = """mutation ($input: RequestReturnInput!) { requestReturn(input: $input) { id } }"""
APPROVE = """mutation ($id: ID!, $r: Decimal) { approveReturn(returnId: $id, refundAmount: $r) {
  id } }"""
REJECT = """mutation ($id: ID!) { rejectReturn(returnId: $id) { id } }"""
OPEN = """mutation ($input: OpenSupportTicketInput!) { openSupportTicket(input: $input) { id } }"""
TICKET = """mutation ($id: ID!, $s: TicketStatus!) { updateSupportTicket(ticketId: $id,
  status: $s) { id } }"""
UPDATE_CUSTOMER = """mutation ($id: ID!) { updateCustomer(id: $id, input: {city: "X"}) { id } }"""

HTTP_STATUS = {"BAD_USER_INPUT": 400, "NOT_FOUND": 404, "CONFLICT": 409, "INVALID_TRANSITION": 409}
SNAKE = re.compile(r"[a-z0-9]_[a-z0-9]")
AMOUNT = re.compile(r"^-?\d+\.\d{2}$")


@pytest.fixture
def refuse(w_client: TestClient) -> Refuse:
    """Run a mutation that must be refused alone: its error's message and extensions."""

    def go(query: str, **variables: Any) -> dict[str, Any]:
        resp = w_client.post("/graphql", json={"query": query, "variables": variables})
        body = resp.json()
        assert body["data"] is None and len(body["errors"]) == 1, body
        error: dict[str, Any] = body["errors"][0]
        assert resp.status_code == HTTP_STATUS[error["extensions"]["code"]], body
        assert not any(SNAKE.search(k) for k in error["extensions"]), error
        return error

    return go


def _ok(client: TestClient, query: str, **variables: Any) -> dict[str, Any]:
    body = client.post("/graphql", json={"query": query, "variables": variables}).json()
    assert "errors" not in body, body
    out: dict[str, Any] = body["data"]
    return out


def _order(client: TestClient, shop: Shop, *statuses: str) -> str:
    placed = _ok(
        client,
        PLACE,
        input={
            "customerId": str(shop.customers[1]),
            "channel": "WEB",
            "paymentMethod": "CARD",
            "items": [{"productId": str(shop.products[0]), "quantity": 2}],
        },
    )
    oid: str = placed["placeOrder"]["id"]
    for status in statuses:
        _ok(client, STATUS, id=oid, s=status)
    return oid


def _return(client: TestClient, shop: Shop) -> str:
    oid = _order(client, shop, "PAID", "SHIPPED", "DELIVERED")
    made = _ok(
        client, REQUEST, input={"orderId": oid, "lineNo": 1, "quantity": 1, "reason": "DAMAGED"}
    )
    rid: str = made["requestReturn"]["id"]
    return rid


def test_an_illegal_order_transition_is_told_in_enum_values(
    refuse: Refuse, w_client: TestClient, w_shop: Shop
) -> None:
    oid = _order(w_client, w_shop, "PAID", "SHIPPED", "DELIVERED")
    error = refuse(STATUS, id=oid, s="CANCELLED")
    assert error["extensions"] == {
        "code": "INVALID_TRANSITION",
        "entity": "Order",
        "id": oid,
        "from": "DELIVERED",
        "to": "CANCELLED",
    }
    assert error["message"] == f"order {oid} cannot go from DELIVERED to CANCELLED"


def test_an_illegal_ticket_transition_is_told_in_enum_values(
    refuse: Refuse, w_client: TestClient, w_shop: Shop
) -> None:
    opened = _ok(
        w_client,
        OPEN,
        input={
            "customerId": str(w_shop.customers[1]),
            "category": "PAYMENT",
            "channel": "EMAIL",
            "subject": "invoice",
        },
    )
    tid = opened["openSupportTicket"]["id"]
    _ok(w_client, TICKET, id=tid, s="CLOSED")
    error = refuse(TICKET, id=tid, s="IN_PROGRESS")
    assert error["extensions"] == {
        "code": "INVALID_TRANSITION",
        "entity": "SupportTicket",
        "id": tid,
        "from": "CLOSED",
        "to": "IN_PROGRESS",
    }
    assert error["message"] == f"ticket {tid} cannot go from CLOSED to IN_PROGRESS"


def test_a_decided_return_is_told_in_enum_values(
    refuse: Refuse, w_client: TestClient, w_shop: Shop
) -> None:
    rid = _return(w_client, w_shop)
    _ok(w_client, APPROVE, id=rid)
    error = refuse(REJECT, id=rid)
    assert error["extensions"] == {
        "code": "INVALID_TRANSITION",
        "entity": "Return",
        "id": rid,
        "from": "APPROVED",
        "to": "REJECTED",
    }
    assert error["message"] == f"return {rid} is already APPROVED"


def test_a_return_of_an_undelivered_order_names_its_status_as_the_api_does(
    refuse: Refuse, w_client: TestClient, w_shop: Shop
) -> None:
    oid = _order(w_client, w_shop, "PAID")
    error = refuse(REQUEST, input={"orderId": oid, "lineNo": 1, "quantity": 1, "reason": "DAMAGED"})
    ext = error["extensions"]
    assert (ext["code"], ext["id"], ext["status"]) == ("CONFLICT", oid, "PAID"), error
    assert error["message"].startswith(f"order {oid} is PAID:"), error


@pytest.mark.parametrize(
    ("query", "entity", "variables"),
    [
        (STATUS, "Order", {"s": "PAID"}),  # a procedure's CD003
        (UPDATE_CUSTOMER, "Customer", {}),  # Python's NotFoundError
        (REJECT, "Return", {}),
        (TICKET, "SupportTicket", {"s": "CLOSED"}),
    ],
)
def test_not_found_names_the_type_and_the_id_as_a_string(
    refuse: Refuse, query: str, entity: str, variables: dict[str, Any]
) -> None:
    error = refuse(query, id="88888888", **variables)
    assert error["extensions"] == {"code": "NOT_FOUND", "entity": entity, "id": "88888888"}


def test_a_basket_naming_nothing_names_the_types(refuse: Refuse, w_shop: Shop) -> None:
    basket = {"channel": "WEB", "paymentMethod": "CARD"}
    item = {"productId": "88888888", "quantity": 1}
    error = refuse(PLACE, input={**basket, "customerId": str(w_shop.customers[1]), "items": [item]})
    assert error["extensions"] == {"code": "NOT_FOUND", "entity": "Product", "id": "88888888"}
    item = {"productId": str(w_shop.products[0]), "quantity": 1}
    error = refuse(PLACE, input={**basket, "customerId": "88888888", "items": [item]})
    assert error["extensions"] == {"code": "NOT_FOUND", "entity": "Customer", "id": "88888888"}


def test_every_entity_the_database_names_is_a_graphql_type() -> None:
    """The procedures' and triggers' ``entity`` words (and ml's) reach a client as types of
    the SDL, whichever word the database uses (``ticket``, ``order_item``)."""
    root = Path(__file__).resolve().parents[2]
    sdl = (root / "schema" / "schema.graphql").read_text()
    types = set(re.findall(r"^type (\w+)", sdl, re.MULTILINE))
    sql = "".join(p.read_text() for p in sorted((root / "db" / "sql").glob("*.sql")))
    words = set(re.findall(r"'entity',\s*'([^']+)'", sql)) | {k.entity for k in KINDS.values()}
    assert {"order", "order_item", "ticket", "model_version", "support ticket"} <= words
    for word in sorted(words):
        _, ext = api_error(NotFoundError("gone", entity=word, id=1))
        assert ext["entity"] in types, (word, ext)


def test_a_missing_order_line_is_told_with_api_names(
    refuse: Refuse, w_client: TestClient, w_shop: Shop
) -> None:
    oid = _order(w_client, w_shop, "PAID", "SHIPPED", "DELIVERED")
    error = refuse(REQUEST, input={"orderId": oid, "lineNo": 9, "quantity": 1, "reason": "DAMAGED"})
    assert error["extensions"] == {
        "code": "NOT_FOUND",
        "entity": "OrderItem",
        "id": f"{oid}/9",
        "orderId": oid,
        "lineNo": 9,
    }


def test_a_refund_out_of_range_tells_amounts_as_strings(
    refuse: Refuse, w_client: TestClient, w_shop: Shop, w_engine: Engine
) -> None:
    rid = _return(w_client, w_shop)
    with w_engine.connect() as conn:
        paid = conn.execute(
            sa.text(
                "SELECT round(i.line_total * r.quantity / i.quantity, 2)::text FROM app.returns r"
                " JOIN app.order_items i USING (order_id, line_no) WHERE r.id = :r"
            ),
            {"r": int(rid)},
        ).scalar_one()
    over = f"{Decimal(paid) + Decimal('0.01'):.2f}"
    error = refuse(APPROVE, id=rid, r=over)
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "refundAmount",
        "reason": "out of range",
        "value": over,  # the input, as given
        "max": paid,
    }
    assert AMOUNT.match(paid)


def test_a_discount_over_the_gross_tells_amounts_as_strings(
    refuse: Refuse, w_shop: Shop, w_engine: Engine
) -> None:
    with w_engine.connect() as conn:
        price = conn.execute(
            sa.text("SELECT unit_price FROM app.products WHERE id = :p"), {"p": w_shop.products[0]}
        ).scalar_one()
    error = refuse(
        PLACE,
        input={
            "customerId": str(w_shop.customers[1]),
            "channel": "WEB",
            "paymentMethod": "CARD",
            "items": [{"productId": str(w_shop.products[0]), "quantity": 2, "discount": "999"}],
        },
    )
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "discount",
        "reason": "exceeds the line gross",
        "index": 1,
        "value": "999",
        "gross": f"{2 * price:.2f}",
    }


def test_a_duplicate_product_is_named_by_the_api_field(refuse: Refuse, w_shop: Shop) -> None:
    product = str(w_shop.products[1])
    error = refuse(
        PLACE,
        input={
            "customerId": str(w_shop.customers[1]),
            "channel": "WEB",
            "paymentMethod": "CARD",
            "items": [
                {"productId": product, "quantity": 1},
                {"productId": product, "quantity": 2},
            ],
        },
    )
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "items",
        "reason": "duplicate product",
        "index": 2,
        "productId": product,
    }


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
def test_the_same_error_over_a_websocket(w_client: TestClient, w_shop: Shop, protocol: str) -> None:
    oid = _order(w_client, w_shop, "PAID", "SHIPPED", "DELIVERED")
    with w_client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        start = "subscribe" if protocol == "graphql-transport-ws" else "start"
        payload = {"query": STATUS, "variables": {"id": oid, "s": "CANCELLED"}}
        ws.send_json({"id": "1", "type": start, "payload": payload})
        msg = ws.receive_json()
        while msg["type"] == "ka":
            msg = ws.receive_json()
    assert msg["type"] in ("next", "data"), msg
    (error,) = msg["payload"]["errors"]
    assert error["extensions"] == {
        "code": "INVALID_TRANSITION",
        "entity": "Order",
        "id": oid,
        "from": "DELIVERED",
        "to": "CANCELLED",
    }


@pytest.mark.parametrize(
    ("status", "state"), [(None, None), ("running", "RUNNING"), ("failed", "FAILED")]
)
def test_a_loading_warehouse_tells_its_run_as_the_api_does(
    w_client: TestClient, w_engine: Engine, status: str | None, state: str | None
) -> None:
    """WAREHOUSE_LOADING: the run's id a string (as every id), its state the value of
    ``WarehouseStatus.state`` (``WarehouseRunState``), null before any run."""
    run_id = None
    with w_engine.begin() as conn:
        assert conn.execute(sa.text("SELECT version FROM dw.etl_state")).scalar_one() == 0
        if status is not None:
            run_id = conn.execute(
                sa.text(
                    "INSERT INTO dw.etl_run (mode, status, finished_at) VALUES ('full', :s,"
                    " CASE WHEN :s = 'running' THEN NULL ELSE clock_timestamp() END)"
                    " RETURNING run_id"
                ),
                {"s": status},
            ).scalar_one()
    try:
        body = w_client.post("/graphql", json={"query": "{ cube { orders { count } } }"}).json()
    finally:
        with w_engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM dw.etl_run"))
    (error,) = body["errors"]
    ext = error["extensions"]
    assert ext["code"] == "WAREHOUSE_LOADING", body
    assert ext["runId"] == (None if run_id is None else str(run_id)), ext
    assert ext["state"] == state, ext
