"""Any database role may NOTIFY any channel (PostgreSQL has no privilege for it), so a
notification on ``cdms_order_status`` or ``cdms_etl_done`` is only a hint that something
may have changed: a payload that does not parse, or that the database does not bear out,
is skipped (never an INTERNAL error, never the end of a subscription), and what an event
says (statuses, time, version, lag) is read from the database, never from the payload.

The NOTIFYs come from ``cdms_customer``, the least privileged role, on a raw connection.
A shop of its own: genuine events here change order statuses.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.iso import iso
from schema import subscriptions as notify
from tests.security.conftest import Parties, bearer, make_app, shop_fixtures, token
from tests.security.transports import WS_PROTOCOL, register, ws_init, ws_outcome, ws_send

sec_engine, sec_shop, parties = shop_fixtures("secnotify")

PROTOCOLS = list(WS_PROTOCOL.values())
NEXT = {"pending": "paid", "paid": "shipped", "shipped": "delivered"}


def _subscription(customer: int) -> dict[str, Any]:
    return {
        "query": "subscription ($c: ID!) { orderStatusChanged(customerId: $c) {"
        " orderId customerId toStatus } }",
        "variables": {"c": str(customer)},
    }


ORDER_EVENT = (
    "subscription ($c: ID!) { orderStatusChanged(customerId: $c) {"
    " orderId customerId fromStatus toStatus changedAt order { status } } }"
)
WAREHOUSE_EVENT = "subscription { warehouseUpdated { version newestChangeAt lagSeconds } }"


def _listening(channel: str, subscribers: int) -> bool:
    return any(
        h.channel == channel and h.listening.is_set() and len(h.subscribers) >= subscribers
        for h in list(notify._hubs.values())
    )


def _wait_for(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _notify_as_customer(engine: Engine, channel: str, payloads: list[str]) -> None:
    """Each payload NOTIFYed on ``channel`` by ``cdms_customer`` (one transaction each)."""
    for payload in payloads:
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL ROLE cdms_customer"))
            conn.execute(sa.text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})


def _forged_orders(order_id: int, customer_id: int, status: str) -> list[str]:
    well_formed = {
        "order_id": order_id,
        "customer_id": customer_id,
        "from": status,
        "to": "delivered" if status != "delivered" else "returned",
        "changed_at": "2026-01-01T00:00:00+00:00",
    }
    return [
        "null",
        "not json",
        "[1,2]",
        '"a string"',
        json.dumps({**well_formed, "to": "bogus"}),
        json.dumps({**well_formed, "changed_at": "garbage"}),
        json.dumps({k: v for k, v in well_formed.items() if k != "changed_at"}),
        json.dumps({**well_formed, "changed_at": "2026-01-01T00:00:00"}),
        json.dumps({**well_formed, "order_id": "x"}),
        json.dumps({**well_formed, "order_id": 10**30}),
        json.dumps({**well_formed, "order_id": True}),
        '{"order_id": 1e400}',
        "[" * 3900 + "]" * 3900,  # deeper than the JSON parser recurses
        json.dumps(well_formed),  # well formed, and false: the order has not moved
    ]


def _new_order(engine: Engine, customer_id: int) -> int:
    """A pending order of ``customer_id``, ready to move on (genuine events)."""
    with engine.begin() as conn:
        order_id: int = conn.execute(
            sa.text(
                "INSERT INTO app.orders (customer_id, channel, payment_method)"
                " VALUES (:c, 'web', 'card') RETURNING id"
            ),
            {"c": customer_id},
        ).scalar_one()
    return order_id


def _move(engine: Engine, order_id: int) -> tuple[str, str, dt.datetime]:
    """A genuine change: the order moves on, by plain SQL (any writer is heard); its
    statuses before and after and the time the history row gives it."""
    with engine.begin() as conn:
        before: str = conn.execute(
            sa.text("SELECT status FROM app.orders WHERE id = :id"), {"id": order_id}
        ).scalar_one()
        conn.execute(
            sa.text("UPDATE app.orders SET status = :s WHERE id = :id"),
            {"s": NEXT[before], "id": order_id},
        )
        changed_at: dt.datetime = conn.execute(
            sa.text(
                "SELECT changed_at FROM app.order_status_history"
                " WHERE order_id = :id ORDER BY id DESC LIMIT 1"
            ),
            {"id": order_id},
        ).scalar_one()
    return before, NEXT[before], changed_at


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_forged_order_notifications_are_skipped_and_subscriptions_live_on(
    sec_engine: Engine, parties: Parties, protocol: str
) -> None:
    order = _new_order(sec_engine, parties.a)
    sub = {"query": ORDER_EVENT, "variables": {"c": str(parties.a)}}
    with (
        make_app(sec_engine) as client,
        client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(token("customer", parties.a))
        ) as customer,
        client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(token("admin"))
        ) as admin,
    ):
        for ws in (customer, admin):
            assert ws_init(ws, protocol)["type"] == "connection_ack"
            ws_send(ws, protocol, "1", sub)
        _wait_for(lambda: _listening(notify.CHANNEL, 2))
        _notify_as_customer(sec_engine, notify.CHANNEL, _forged_orders(order, parties.a, "pending"))
        for ws in (customer, admin):
            got = ws_outcome(ws, "1", timeout=2)
            assert got.silent, got  # no INTERNAL, no complete, no false event

        before, after, changed_at = _move(sec_engine, order)
        for ws in (customer, admin):
            got = ws_outcome(ws, "1", timeout=5)
            assert not got.codes, got
            event = got.data["orderStatusChanged"]
            assert event == {
                "orderId": str(order),
                "customerId": str(parties.a),
                "fromStatus": before.upper(),
                "toStatus": after.upper(),
                "changedAt": event["changedAt"],
                "order": {"status": after.upper()},
            }
            assert event["changedAt"] == iso(changed_at)  # with its offset

        # the genuine payload sent again (a replay): the change was told already
        replay = {
            "order_id": order,
            "customer_id": parties.a,
            "from": before,
            "to": after,
            "changed_at": changed_at.isoformat(),
        }
        _notify_as_customer(sec_engine, notify.CHANNEL, [json.dumps(replay)])
        for ws in (customer, admin):
            assert ws_outcome(ws, "1", timeout=2).silent


def test_a_history_row_the_order_did_not_go_through_is_not_told(
    sec_engine: Engine, parties: Parties
) -> None:
    """The events are read from the status history; a row written there by hand (the
    order's writers may insert rows) that does not lead to the order's status is not told,
    and the next genuine change is, from the status the order really had."""
    protocol = "graphql-transport-ws"
    order = _new_order(sec_engine, parties.a)
    with (
        make_app(sec_engine) as client,
        client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(token("customer", parties.a))
        ) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": ORDER_EVENT, "variables": {"c": str(parties.a)}})
        _wait_for(lambda: _listening(notify.CHANNEL, 1))
        with sec_engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO app.order_status_history (order_id, from_status, to_status)"
                    " VALUES (:id, 'pending', 'delivered')"
                ),
                {"id": order},
            )
        hint = {"order_id": order, "customer_id": parties.a}
        _notify_as_customer(sec_engine, notify.CHANNEL, [json.dumps(hint)])
        assert ws_outcome(ws, "1", timeout=2).silent
        _, _, changed_at = _move(sec_engine, order)
        got = ws_outcome(ws, "1", timeout=5)
        event = got.data["orderStatusChanged"]
        assert (event["fromStatus"], event["toStatus"]) == ("PENDING", "PAID"), got
        assert event["changedAt"] == iso(changed_at)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_forged_warehouse_notifications_are_skipped_and_subscriptions_live_on(
    sec_engine: Engine, sec_shop: Any, protocol: str
) -> None:
    from etl.status import UPDATED_CHANNEL, warehouse_status

    forged = {"version": 999_999, "newestChangeAt": "2030-01-01T00:00:00", "lagSeconds": 0}
    with (
        make_app(sec_engine) as client,
        client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(token("analyst"))
        ) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": WAREHOUSE_EVENT})
        _wait_for(lambda: _listening(UPDATED_CHANNEL, 1))
        _notify_as_customer(
            sec_engine,
            UPDATED_CHANNEL,
            ["{}", "null", "[1]", "x", '{"version": 1e400, "lagSeconds": 0}', json.dumps(forged)],
        )
        got = ws_outcome(ws, "1", timeout=2)
        assert got.silent, got

        with sec_engine.begin() as conn:  # a publish, as the pipeline's publish step does it
            conn.execute(sa.text("UPDATE dw.etl_state SET version = version + 1"))
            status = warehouse_status(conn)
            conn.execute(
                sa.text("SELECT pg_notify(:c, :p)"),
                {"c": UPDATED_CHANNEL, "p": json.dumps({**status.as_json(), "runId": None})},
            )
        got = ws_outcome(ws, "1", timeout=5)
        assert not got.codes, got
        event = got.data["warehouseUpdated"]
        assert event["version"] == status.version
        newest = status.newest_change_at
        assert event["newestChangeAt"] == (None if newest is None else iso(newest))

        _notify_as_customer(sec_engine, UPDATED_CHANNEL, [json.dumps(status.as_json())])
        assert ws_outcome(ws, "1", timeout=2).silent  # told already


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_event_is_delivered_only_if_the_subscriber_may_read_its_row(
    sec_engine: Engine, parties: Parties, protocol: str
) -> None:
    """A notification naming customer A but carrying B's order is dropped for A: the row
    is read under A's row-level security per event; A's own change arrives."""
    mine = _new_order(sec_engine, parties.a)
    with (
        make_app(sec_engine) as client,
        client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(token("customer", parties.a))
        ) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", _subscription(parties.a))
        _wait_for(lambda: _listening(notify.CHANNEL, 1))
        forged = {
            "order_id": parties.b_orders[0],
            "customer_id": parties.a,
            "from": "pending",
            "to": "paid",
            "changed_at": "2025-01-01T00:00:00+00:00",
        }
        _notify_as_customer(sec_engine, notify.CHANNEL, [json.dumps(forged)])
        assert ws_outcome(ws, "1", timeout=3).silent
        _move(sec_engine, mine)
        got = ws_outcome(ws, "1", timeout=5)
        assert got.data == {
            "orderStatusChanged": {
                "orderId": str(mine),
                "customerId": str(parties.a),
                "toStatus": "PAID",
            }
        }, got


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_withdrawn_persisted_subscription_delivers_no_more_events(
    sec_engine: Engine, parties: Parties, protocol: str
) -> None:
    """``cdms persisted remove`` withdraws a document from every operation, also from a
    subscription started with it before: its next event is PERSISTED_QUERY_NOT_FOUND, and
    nothing more (a leaked or too costly subscription does not live on with the socket)."""
    mine = _new_order(sec_engine, parties.a)
    sub = _subscription(parties.a)
    sha = register(sec_engine, sub["query"])
    persisted = {
        "variables": sub["variables"],
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}},
    }
    with (
        make_app(sec_engine) as client,  # apikey_cache_s=0: no cache window
        client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(token("customer", parties.a))
        ) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", persisted)
        _wait_for(lambda: _listening(notify.CHANNEL, 1))
        _move(sec_engine, mine)
        got = ws_outcome(ws, "1", timeout=5)
        assert got.data and got.data["orderStatusChanged"]["toStatus"] == "PAID", got
        with sec_engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM app.persisted_queries WHERE sha256 = :h"), {"h": sha})
        _move(sec_engine, mine)
        got = ws_outcome(ws, "1", timeout=5)
        assert got.codes == ["PERSISTED_QUERY_NOT_FOUND"] and got.data is None, got
        _move(sec_engine, mine)
        assert ws_outcome(ws, "1", timeout=2).silent  # the operation is over


def test_changes_in_quick_succession_are_told_once_each_in_order(
    sec_engine: Engine, parties: Parties
) -> None:
    """Two changes committed before the first notification is handled: the first read
    finds both rows and tells both, the second notification finds nothing new."""
    protocol = "graphql-ws"
    order = _new_order(sec_engine, parties.a)
    with (
        make_app(sec_engine) as client,
        client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(token("admin"))
        ) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": ORDER_EVENT, "variables": {"c": str(parties.a)}})
        _wait_for(lambda: _listening(notify.CHANNEL, 1))
        moves = [_move(sec_engine, order), _move(sec_engine, order)]
        for before, after, changed_at in moves:
            event = ws_outcome(ws, "1", timeout=5).data["orderStatusChanged"]
            assert (event["fromStatus"], event["toStatus"]) == (before.upper(), after.upper())
            assert event["changedAt"] == iso(changed_at)
        assert ws_outcome(ws, "1", timeout=2).silent


def _flood(engine: Engine, channel: str, payload_sql: str, n: int) -> None:
    """``n`` NOTIFYs on ``channel`` in one statement by ``cdms_customer`` (0.05 s for
    20,000); ``payload_sql`` is an expression of ``g`` (a transaction folds identical
    payloads into one)."""
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL ROLE cdms_customer"))
        conn.execute(
            sa.text(
                f"SELECT count(pg_notify(:c, {payload_sql})) FROM generate_series(1, {n}) AS g"
            ),
            {"c": channel},
        )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _counted(lines: list[str]) -> int:
    told = [re.search(r"ignored ([\d,]+)", line) for line in lines]
    return sum(int(t[1].replace(",", "")) for t in told if t)


def test_a_flood_of_order_notifications_costs_a_few_reads_and_log_lines(
    sec_engine: Engine,
    parties: Parties,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """20,000 forged hints naming the subscriber's order, then 100,000 junk payloads (a
    second of any login's time): each hint was one history read per subscriber and each
    junk payload a warning line. Now what is queued is taken at once, each order read once
    for it, and skipped payloads are logged once an interval with their count; a genuine
    change behind the flood still arrives."""
    caplog.set_level(logging.INFO, logger="cdms.api.notify")
    reads: list[int] = []
    since = notify._since
    monkeypatch.setattr(notify, "_since", lambda *a: reads.append(1) or since(*a))
    protocol = "graphql-transport-ws"
    order = _new_order(sec_engine, parties.a)
    with (
        make_app(sec_engine) as client,
        client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(token("customer", parties.a))
        ) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": ORDER_EVENT, "variables": {"c": str(parties.a)}})
        _wait_for(lambda: _listening(notify.CHANNEL, 1))
        hint = f"json_build_object('order_id', {order}, 'customer_id', {parties.a}, 'n', g)::text"
        _flood(sec_engine, notify.CHANNEL, hint, 20_000)
        _flood(sec_engine, notify.CHANNEL, "'junk ' || g", 100_000)
        before, after, _ = _move(sec_engine, order)
        got = ws_outcome(ws, "1", timeout=5)
        event = got.data["orderStatusChanged"]
        assert (event["fromStatus"], event["toStatus"]) == (before.upper(), after.upper()), got
        time.sleep(1.5)  # one interval: the count of what was not logged is written
        assert ws_outcome(ws, "1", timeout=0.5).silent
    assert len(reads) <= 20, len(reads)
    lines = _warnings(caplog)
    assert 1 <= len(lines) <= 5, (len(lines), lines[:3])
    # each junk payload skipped, or dropped with forged hints when the queue overflowed
    assert 100_000 <= _counted(lines) <= 120_001, lines


def test_a_flood_of_warehouse_notifications_costs_a_few_reads_and_log_lines(
    sec_engine: Engine,
    sec_shop: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """20,000 forged versions: one warehouse status read and one warning each, per
    subscriber. Now one read for what is queued, a few lines, and the next publish told."""
    from etl import status as etl_status

    caplog.set_level(logging.INFO, logger="cdms.api.notify")
    reads: list[int] = []
    read = etl_status.warehouse_status
    monkeypatch.setattr(etl_status, "warehouse_status", lambda c: reads.append(1) or read(c))
    protocol = "graphql-ws"
    with (
        make_app(sec_engine) as client,
        client.websocket_connect(
            "/graphql", subprotocols=[protocol], headers=bearer(token("analyst"))
        ) as ws,
    ):
        assert ws_init(ws, protocol)["type"] == "connection_ack"
        ws_send(ws, protocol, "1", {"query": WAREHOUSE_EVENT})
        _wait_for(lambda: _listening(etl_status.UPDATED_CHANNEL, 1))
        forged = "json_build_object('version', 1000000 + g)::text"
        _flood(sec_engine, etl_status.UPDATED_CHANNEL, forged, 20_000)
        with sec_engine.begin() as conn:  # a publish, as the pipeline's publish step does it
            conn.execute(sa.text("UPDATE dw.etl_state SET version = version + 1"))
            status = read(conn)
            conn.execute(
                sa.text("SELECT pg_notify(:c, :p)"),
                {"c": etl_status.UPDATED_CHANNEL, "p": json.dumps(status.as_json())},
            )
        got = ws_outcome(ws, "1", timeout=5)
        assert got.data["warehouseUpdated"]["version"] == status.version, got
        time.sleep(1.5)
    assert len(reads) <= 20, len(reads)
    lines = _warnings(caplog)
    assert 1 <= len(lines) <= 5, (len(lines), lines[:3])
    assert 20_000 <= _counted(lines) <= 20_001, lines  # (the genuine one may be dropped)


def test_a_subscriber_whose_queue_overflowed_still_gets_the_change_it_missed(
    sec_engine: Engine, parties: Parties
) -> None:
    """A flood overflows a subscriber's queue: it reads every order of its customer again,
    from the last change it told of each. It read them from the first history row, so the
    change it had missed did not go on from what it told and was dropped (hostile review
    of 2026-12-07): a forged hint, junk around the shop's genuine change, nothing told."""
    PROTOCOL = "graphql-transport-ws"
    first = _new_order(sec_engine, parties.a)  # told (pending) when the subscription starts
    order = _new_order(sec_engine, parties.a)

    def junk(start: int) -> None:  # any login may NOTIFY: the customer role's here
        with sec_engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL ROLE cdms_customer"))
            conn.execute(
                sa.text(
                    "SELECT count(pg_notify('cdms_order_status', 'junk ' || g))"
                    " FROM generate_series(CAST(:a AS int), CAST(:b AS int)) AS g"
                ),
                {"a": start, "b": start + 1_499},
            )

    with (
        make_app(sec_engine) as client,
        client.websocket_connect(
            "/graphql", subprotocols=[PROTOCOL], headers=bearer(token("customer", parties.a))
        ) as ws,
    ):
        assert ws_init(ws, PROTOCOL)["type"] == "connection_ack"
        ws_send(ws, PROTOCOL, "1", {"query": ORDER_EVENT, "variables": {"c": str(parties.a)}})
        _wait_for(lambda: _listening(notify.CHANNEL, 1))
        with sec_engine.begin() as conn:  # a forged hint: the subscriber reads, then waits
            conn.execute(sa.text("SET LOCAL ROLE cdms_customer"))
            conn.execute(
                sa.text("SELECT pg_notify('cdms_order_status', :p)"),
                {"p": json.dumps({"order_id": first, "customer_id": parties.a})},
            )
        junk(1)
        with sec_engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE app.orders SET status = 'paid' WHERE id = :o"), {"o": order}
            )
        junk(5_000)
        got = ws_outcome(ws, "1", timeout=8)
        assert not got.silent, f"the PENDING -> PAID change of order {order} was never told"
        event = got.data["orderStatusChanged"]
        assert (event["orderId"], event["fromStatus"], event["toStatus"]) == (
            str(order), "PENDING", "PAID",
        ), got  # fmt: skip
