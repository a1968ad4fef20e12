"""A subscription whose socket goes while its read is taking a pooled connection gives the
connection back (docs/security.md).

A reconnect storm on ``orderStatusChanged`` (connect, subscribe five times, drop; both
WebSocket protocols, any customer key) left the API's connections "idle in transaction",
one after the other, until the pool was empty: then every read of every principal waited
out the pool's timeout and was refused (503), until the server was restarted. The socket's
operations were cancelled while a worker thread was taking the connection for their first
read; the context's close found no connection yet and ended nothing, and the thread then
stored the connection, began the transaction and ran the read, for nobody.

Here a hook on the engine holds that thread right after it took its connection, before
the read's session settings, until the socket is gone: deterministic, where a storm only
hits the window now and then.

``/readyz`` said "ok" meanwhile (or, asked of a pool with no connection left, answered
"database unreachable" 30-42 s later): it now tells a pool that stays without a free
connection, at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api import readiness
from schema.subscriptions import db_gate
from tests.reliability.conftest import POOL_TIMEOUT_S, SmallPool, idle_in_transaction
from tests.security.conftest import bearer, make_app, token
from tests.security.transports import WS_PROTOCOL, ws_init, ws_send

PROTOCOLS = list(WS_PROTOCOL.values())


def _subscription(customer: int) -> dict[str, Any]:
    return {
        "query": "subscription ($c: ID!) { orderStatusChanged(customerId: $c) { orderId } }",
        "variables": {"c": str(customer)},
    }


class _Stall:
    """While armed, holds the worker thread of a request's first read right after it took
    its pooled connection (at the read's session settings, ``transaction_read_only``: only
    schema.context.RequestDb sends those through SQLAlchemy) until :meth:`release`."""

    def __init__(self, engine: Engine) -> None:
        self.reached = threading.Event()
        self._go = threading.Event()
        self._armed = False
        sa.event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self._armed and "transaction_read_only" in statement:
            self.reached.set()
            self._go.wait(60)

    def arm(self) -> None:
        self.reached.clear()
        self._go.clear()
        self._armed = True

    def release(self) -> None:
        self._armed = False
        self._go.set()


@contextmanager
def _subscribed_five_times(client: Any, protocol: str, customer: int) -> Iterator[None]:
    """A socket of ``customer``'s, acknowledged, running five subscriptions to its orders;
    dropped at the block's end with its operations."""
    with client.websocket_connect(
        "/graphql", subprotocols=[protocol], headers=bearer(token("customer", customer))
    ) as ws:
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        for k in range(5):
            ws_send(ws, protocol, str(k), _subscription(customer))
        yield


def _until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_subscription_dropped_while_its_read_takes_a_connection_gives_it_back(
    small: SmallPool,
) -> None:
    engine, url, shop = small
    a, b = shop.customers[1], shop.customers[2]
    stall = _Stall(engine)
    with make_app(engine) as client:
        assert client.portal is not None

        async def events_gate_held() -> bool:
            return db_gate(engine).locked()  # (two connections: one event permit)

        for protocol in PROTOCOLS:
            stall.arm()
            with _subscribed_five_times(client, protocol, a):
                assert stall.reached.wait(10), "no subscription read took a connection"
            # the socket is gone and its operations cancelled, one of them while its read's
            # thread holds a connection not stored yet; the thread goes on once the
            # operation has ended (or, as it should, waits for the thread)
            _until(lambda: not client.portal.call(events_gate_held), 3)
            stall.release()
            assert _until(lambda: engine.pool.checkedout() == 0, 10), (
                f"{protocol}: {engine.pool.checkedout()} connection(s) still checked out,"
                f" {idle_in_transaction(url)} idle in transaction"
            )
        # and a storm of the same, unheld, on both protocols
        for i in range(20):
            protocol = PROTOCOLS[i % 2]
            with _subscribed_five_times(client, protocol, a):
                pass
        assert _until(lambda: engine.pool.checkedout() == 0, 10), engine.pool.status()
        assert idle_in_transaction(url) == 0
        # another principal's read is answered at once
        started = time.monotonic()
        resp = client.post(
            "/graphql",
            json={"query": "{ orders(first: 1) { totalCount } }"},
            headers=bearer(token("customer", b)),
        )
        took = time.monotonic() - started
    assert resp.status_code == 200 and "errors" not in resp.json(), resp.text
    assert resp.json()["data"]["orders"]["totalCount"] == len(shop.orders[b])
    assert took < POOL_TIMEOUT_S / 2, f"another customer's read took {took:.1f} s"


def test_readiness_fails_at_once_while_the_pool_stays_without_a_free_connection(
    small: SmallPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _, _ = small
    monkeypatch.setattr(readiness, "BUSY_S", 1.0)
    with engine.begin() as conn:  # the warehouse counts as published (api/readiness.py)
        conn.execute(sa.text("UPDATE dw.etl_state SET version = greatest(version, 1)"))

    with make_app(engine) as client:

        def readyz() -> tuple[int, dict[str, Any], float]:
            started = time.monotonic()
            resp = client.get("/readyz")
            return resp.status_code, resp.json(), time.monotonic() - started

        status, body, _ = readyz()
        assert status == 200 and body["api"]["database"] == "ok", body
        held = [engine.connect() for _ in range(2)]  # (leaked, as before the fix above)
        try:
            answers = []
            deadline = time.monotonic() + 10
            while not answers or answers[-1][0] == 200:
                assert time.monotonic() < deadline, answers
                answers.append(readyz())
                time.sleep(0.2)
            assert all(took < 2 for _, _, took in answers), answers  # never a pool's wait
            status, body, _ = answers[-1]
            assert status == 503 and body["api"] == {"ready": False, "database": "busy"}
        finally:
            for conn in held:
                conn.close()
        assert _until(lambda: readyz()[0] == 200, 5)
