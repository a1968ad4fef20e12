"""``orderStatusChanged`` over graphql-transport-ws receives a change made by plain SQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.config import to_sqlalchemy_url
from db.engine import make_engine
from schema import subscriptions as notify
from tests.api.conftest import build_shop, make_client

SUBSCRIPTION = """subscription ($c: ID!) { orderStatusChanged(customerId: $c) {
  orderId customerId fromStatus toStatus changedAt order { id status paidAt } } }"""


def _listening() -> bool:
    return any(h.listening.is_set() and h.subscribers for h in list(notify._hubs.values()))


def _wait_for(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_status_change_by_sql_reaches_subscriber(clone_database: Callable[[str], str]) -> None:
    engine: Engine = make_engine(clone_database("apisub"))
    with engine.begin() as conn:
        shop = build_shop(conn)
    customer = shop.customers[1]
    mine = shop.orders[customer][0]  # pending (k % 3 == 0)
    other = shop.orders[shop.customers[2]][0]

    def change(order_id: int, status: str = "paid") -> None:
        with engine.begin() as conn:  # another connection, plain SQL: any writer is heard
            conn.execute(
                sa.text("UPDATE app.orders SET status = :s WHERE id = :id"),
                {"id": order_id, "s": status},
            )

    with (
        make_client(engine) as client,
        client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws,
    ):
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": SUBSCRIPTION, "variables": {"c": str(customer)}},
            }
        )
        _wait_for(_listening)
        # a change for another customer is filtered out; ours arrives
        threading.Thread(target=lambda: (change(other), change(mine))).start()
        msg: dict[str, Any] = ws.receive_json()
        assert msg["type"] == "next", msg
        event = msg["payload"]["data"]["orderStatusChanged"]
        assert event["orderId"] == str(mine) and event["customerId"] == str(customer)
        assert (event["fromStatus"], event["toStatus"]) == ("PENDING", "PAID")
        assert event["order"]["status"] == "PAID" and event["order"]["paidAt"] is not None

        # the database drops the LISTEN connection: the hub reconnects and events flow again
        hubs = [h for h in notify._hubs.values() if h.subscribers]
        with engine.begin() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                )
            ).all()
        assert killed == [(True,)]
        _wait_for(lambda: hubs[0].reconnects >= 1 and hubs[0].listening.is_set())
        threading.Thread(target=lambda: change(mine, "shipped")).start()
        again = ws.receive_json()["payload"]["data"]["orderStatusChanged"]
        assert (again["fromStatus"], again["toStatus"]) == ("PAID", "SHIPPED")
        ws.send_json({"id": "1", "type": "complete"})
    _wait_for(lambda: not _listening())


def test_bad_customer_id_is_an_error(clone_database: Callable[[str], str]) -> None:
    engine = make_engine(clone_database("apisub2"))
    with (
        make_client(engine) as client,
        client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws,
    ):
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": SUBSCRIPTION, "variables": {"c": "abc"}},
            }
        )
        msg = ws.receive_json()
        errors = msg["payload"] if msg["type"] == "error" else msg["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


NESTED = """subscription ($c: ID!) { orderStatusChanged(customerId: $c) { orderId order {
  customer { orders(first: 100) { totalCount edges { node { id status
  items { quantity product { name } } } } } } } } }"""


def test_many_subscriptions_share_a_small_pool(clone_database: Callable[[str], str]) -> None:
    """More subscriptions than pooled connections and worker threads: an event reaches
    each of them (none waits on a connection while holding another, or a thread), a read
    over HTTP meanwhile is answered, and no connection is left in a transaction."""
    url = clone_database("apisubpool")
    with make_engine(url).begin() as conn:
        shop = build_shop(conn)
    engine = sa.create_engine(
        to_sqlalchemy_url(url), pool_size=2, max_overflow=0, pool_timeout=3, pool_pre_ping=True
    )
    customer = shop.customers[1]
    mine = shop.orders[customer][0]  # pending
    n = 6
    with make_client(engine) as client:
        assert client.portal is not None  # few worker threads: fewer than the subscriptions

        def few_threads() -> None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = 4

        client.portal.call(few_threads)
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init"})
            assert ws.receive_json()["type"] == "connection_ack"
            for i in range(n):
                payload = {"query": NESTED, "variables": {"c": str(customer)}}
                ws.send_json({"id": str(i), "type": "subscribe", "payload": payload})
            # (listening too: a change made before the hub's LISTEN is never told, and the
            # test waited for good for it on a loaded machine)
            _wait_for(
                lambda: any(
                    len(h.subscribers) >= n and h.listening.is_set()
                    for h in list(notify._hubs.values())
                )
            )
            with make_engine(url).begin() as conn:
                conn.execute(sa.text("UPDATE app.orders SET status = 'paid' WHERE id = :id"),
                             {"id": mine})  # fmt: skip
            started = time.monotonic()
            other = client.post("/graphql", json={"query": "{ products(first: 1) { totalCount } }"})
            assert other.status_code == 200 and "errors" not in other.json(), other.text
            assert time.monotonic() - started < 3  # not after a pool timeout
            got = {}
            for _ in range(n):
                msg = ws.receive_json()
                assert msg["type"] == "next" and "errors" not in msg["payload"], msg
                event = msg["payload"]["data"]["orderStatusChanged"]
                assert event["orderId"] == str(mine) and event["order"]["customer"]["orders"]
                got[msg["id"]] = event
            assert sorted(got) == [str(i) for i in range(n)]
            for i in range(n):
                ws.send_json({"id": str(i), "type": "complete"})
    _wait_for(lambda: not _listening())
    with make_engine(url).connect() as conn:
        stuck = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%'"
            )
        ).scalar_one()
    assert stuck == 0
    engine.dispose()
