"""Unpaid orders of customer keys give their stock back after the hold (db/holds.py):
a customer key put every product's stock in one pending order and renewed it by cancelling
(docs/security.md). The shop's own orders, paid ones and fresh ones are left alone."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import db.holds
from api.apikeys import create_key
from db.config import to_libpq_url
from db.holds import ACTOR, Expirer, expire
from tests.db.shop import (
    Conn,
    item,
    new_customer,
    new_product,
    one,
    place_order,
    set_order_status,
    stock,
)


def _placed_by(
    pg: Conn, actor: str, customer: int, product: int, minutes_ago: int, paid_by: str = "card"
) -> int:
    """An order placed as ``actor``: a customer's token (``customer:<id>``) or API key, or
    one of the shop's keys (``apikey:<id>``)."""
    role = "customer" if actor.startswith("customer:") else "service"
    pg.execute(
        "SELECT set_config('cdms.actor', %s, true), set_config('cdms.role', %s, true),"
        " set_config('cdms.customer_id', %s, true)",
        (actor, role, str(customer)),
    )
    order_id = place_order(pg, customer, [item(product, 2)], payment_method=paid_by)
    pg.execute("SELECT set_config('cdms.role', '', true)")
    pg.execute(
        "UPDATE app.orders SET ordered_at = now() - make_interval(mins => %s) WHERE id = %s",
        (minutes_ago, order_id),
    )
    return order_id


def _status(pg: Conn, order_id: int) -> str:
    return str(one(pg, "SELECT status FROM app.orders WHERE id = %s", (order_id,)))


def test_a_customers_unpaid_order_past_the_hold_gives_its_stock_back(
    pg: Conn, engine: Engine
) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg, stock=20)
    me = f"customer:{customer}"
    expired = _placed_by(pg, me, customer, product, 61)
    pg.commit()  # (the keys are written on a connection of their own)
    its_key = create_key(engine, "customer", customer, name="holds")[0]
    by_key = _placed_by(pg, f"apikey:{its_key.id}", customer, product, 61)  # its API key
    fresh = _placed_by(pg, me, customer, product, 5)
    shop_key = create_key(engine, "service", name="holds")[0]
    staff = _placed_by(pg, f"apikey:{shop_key.id}", customer, product, 600)  # an invoice
    paid = _placed_by(pg, me, customer, product, 600)
    pg.execute("SELECT app.set_order_status(%s, 'paid')", (paid,))
    # paid later by design: a bank transfer, cash on delivery
    later = [
        _placed_by(pg, me, customer, product, 600, m) for m in ("bank_transfer", "cash_on_delivery")
    ]
    pg.commit()
    assert stock(pg, product) == 6

    assert expire(engine, 60) >= 1
    pg.commit()  # (a new snapshot)
    assert [_status(pg, o) for o in (expired, by_key)] == ["cancelled", "cancelled"]
    assert [_status(pg, o) for o in (fresh, staff, paid)] == ["pending", "pending", "paid"]
    assert [_status(pg, o) for o in later] == ["pending", "pending"]
    assert stock(pg, product) == 10
    who = one(
        pg,
        "SELECT changed_by FROM app.order_status_history WHERE order_id = %s"
        " AND to_status = 'cancelled'",
        (expired,),
    )
    assert who == ACTOR
    assert expire(engine, 0) == 0  # off
    pg.commit()
    assert _status(pg, fresh) == "pending"


def test_the_expirer_runs_in_its_thread_and_says_what_it_did(pg: Conn, engine: Engine) -> None:
    customer = new_customer(pg)
    product, _ = new_product(pg, stock=5)
    order_id = _placed_by(pg, f"customer:{customer}", customer, product, 120)
    pg.commit()
    said: list[str] = []
    expirer = Expirer(engine, 60, said.append, every_s=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while _status(pg, order_id) != "cancelled" and time.monotonic() < deadline:
            pg.commit()  # (a new snapshot each look)
            time.sleep(0.05)
    finally:
        expirer.stop()
    assert _status(pg, order_id) == "cancelled"
    assert any("unpaid order(s) older than 60 min" in s for s in said), said


def _deadlocks(libpq: str) -> int:
    """pg_stat_database's deadlock count of the database, once every other session has
    ended (a backend reports its deadlocks at exit at the latest)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(libpq, autocommit=True) as conn:
        while one(
            conn,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ):
            assert time.monotonic() < deadline, "sessions of the database did not end"
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(
            one(conn, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        )


def _acting(conn: Conn, actor: str, role: str = "") -> None:
    """The session settings a request's transaction has (api: its principal's)."""
    conn.execute(
        "SELECT set_config('cdms.actor', %s, true), set_config('cdms.role', %s, true)",
        (actor, role),
    )


def test_the_expirer_races_orders_of_its_products_without_a_deadlock(
    fresh_database: Callable[[], str],
) -> None:
    """The hostile probe of 2026-12 (p12): a pass cancelled its batch in one transaction,
    locking the products order after order (in order-date order, not id order) and holding
    them all to the end; placeOrder and cancels (products in id order) deadlocked with it,
    and a failed pass gave no stock back. Here 180 expired orders over 6 products, each
    listing them against id order, expire in 6 passes while 3 service keys place and cancel
    4-product orders of the same products: no deadlock, no failed write, every expired
    order cancelled, every unit back."""
    from db.engine import dispose_engine, make_engine

    url = fresh_database()
    libpq = to_libpq_url(url)
    tiers, per_tier, units = 6, 30, 100_000
    with psycopg.connect(libpq) as conn:
        owner = new_customer(conn)
        buyer = new_customer(conn)
        products = [new_product(conn, stock=units)[0] for _ in range(6)]
        # the customer's orders (created_by customer:<id>), written at once as a tool would
        # (no role: past the daily cap on a customer's own requests)
        _acting(conn, f"customer:{owner}")
        # order g lists products 5g and 5g+3 (mod 6): the oldest first, they go down in id
        conn.execute(
            "SELECT count(app.place_order(%(c)s, jsonb_build_array("
            " jsonb_build_object('product_id', (%(p)s::bigint[])[1 + (g * 5) %% 6], 'quantity', 1),"
            " jsonb_build_object('product_id', (%(p)s::bigint[])[1 + (g * 5 + 3) %% 6],"
            " 'quantity', 1)), 'web', 'card'))"
            " FROM generate_series(1, %(n)s) AS g",
            {"c": owner, "p": products, "n": tiers * per_tier},
        )
        # tier k is 200 - 10k minutes old (the orders of a tier a second apart)
        conn.execute(
            "UPDATE app.orders AS o SET ordered_at = now()"
            " - make_interval(mins => 200 - 10 * ((t.n - 1) / %(per)s)::integer,"
            "                 secs => t.n %% %(per)s)"
            " FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM app.orders"
            "       WHERE customer_id = %(c)s) AS t WHERE o.id = t.id",
            {"per": per_tier, "c": owner},
        )
        conn.commit()
    deadlocks_before = _deadlocks(libpq)

    stop = threading.Event()
    failures: list[str] = []
    rounds = [0] * 3

    def write(n: int) -> None:
        """A service key placing and cancelling orders, as the probe's API callers did."""
        rng = random.Random(n)
        with psycopg.connect(libpq) as conn:
            while not stop.is_set():
                try:
                    _acting(conn, f"apikey:{9_000 + n}", "service")
                    basket = [item(p, 1) for p in rng.sample(products, 4)]
                    order_id = place_order(conn, buyer, basket)
                    conn.commit()
                    _acting(conn, f"apikey:{9_000 + n}", "service")
                    set_order_status(conn, order_id, "cancelled")
                    conn.commit()
                except psycopg.Error as exc:
                    conn.rollback()
                    failures.append(f"writer: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                rounds[n] += 1

    threads = [threading.Thread(target=write, args=(n,)) for n in range(len(rounds))]
    for thread in threads:
        thread.start()
    engine = make_engine(url)
    cancelled = 0
    try:
        deadline = time.monotonic() + 10
        while min(rounds) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        for k in range(tiers):  # each pass: tier k (and any tier a failed pass left)
            try:
                cancelled += expire(engine, 195 - 10 * k)
            except sa.exc.DBAPIError as exc:
                failures.append(f"expire: {type(exc.orig).__name__}")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        dispose_engine(url)

    assert failures == [], failures
    assert _deadlocks(libpq) == deadlocks_before
    assert cancelled == tiers * per_tier
    with psycopg.connect(libpq) as conn:
        left = one(
            conn,
            "SELECT count(*) FROM app.orders WHERE customer_id = %s AND status <> 'cancelled'",
            (owner,),
        )
        assert left == 0
        assert [stock(conn, p) for p in products] == [units] * len(products)
    assert min(rounds) > 3  # the writers ran all along


def _two_expired(conn: Conn) -> tuple[int, int, int, int]:
    """A customer's expired order of one product (the oldest, 300 minutes) and one of
    another (120 minutes): (oldest order, its product, the other order, its product)."""
    customer = new_customer(conn)
    first, _ = new_product(conn, stock=20)
    second, _ = new_product(conn, stock=20)
    me = f"customer:{customer}"
    oldest = _placed_by(conn, me, customer, first, 300)
    other = _placed_by(conn, me, customer, second, 120)
    conn.commit()
    return oldest, first, other, second


def test_an_order_that_cannot_be_cancelled_is_reported_and_blocks_no_other(
    fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probe 15, M1: any error but a deadlock ended the whole pass, and the next pass began
    again at the oldest order: one order whose cancel always fails (its product restocked
    to the check's maximum, 1e9, "unlimited": giving its units back breaks
    ``products_stock_check``) stopped every later expiry for good. It is reported (its id
    and SQLSTATE, no server text), left pending and tried again next pass; the others are
    cancelled, from one batch to the next too (a batch of one here)."""
    from db.engine import dispose_engine, make_engine

    url = fresh_database()
    with psycopg.connect(to_libpq_url(url)) as conn:
        poison, product, other, _ = _two_expired(conn)
        conn.execute("UPDATE app.products SET stock = 1000000000 WHERE id = %s", (product,))
        conn.commit()
    monkeypatch.setattr(db.holds, "BATCH", 1)
    skipped: list[tuple[int, str]] = []
    engine = make_engine(url)
    try:
        assert expire(engine, 60, lambda o, state: skipped.append((o, state))) == 1
        assert expire(engine, 60, lambda o, state: skipped.append((o, state))) == 0
        said: list[str] = []
        expirer = Expirer(engine, 60, said.append, every_s=0.05).start()
        try:
            deadline = time.monotonic() + 10
            while not said and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            expirer.stop()
    finally:
        dispose_engine(url)
    assert skipped == [(poison, "23514"), (poison, "23514")]
    assert said and f"order {poison}" in said[0] and "23514" in said[0], said
    assert not any("violates" in s or "products_stock_check" in s for s in said), said
    with psycopg.connect(to_libpq_url(url)) as conn:
        assert [_status(conn, o) for o in (poison, other)] == ["pending", "cancelled"]
        assert stock(conn, product) == 1_000_000_000


def test_an_order_whose_product_another_session_holds_waits_for_the_next_pass(
    fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probe 15, M1: a product row another session holds (an operator's open transaction)
    stalled the pass at the oldest order: its cancel waits at most ``LOCK_TIMEOUT_MS``
    (``55P03``), is reported and left to the next pass, which cancels it once the lock
    is gone; the other orders are cancelled meanwhile."""
    from db.engine import dispose_engine, make_engine

    url = fresh_database()
    libpq = to_libpq_url(url)
    with psycopg.connect(libpq) as conn:
        held, product, other, _ = _two_expired(conn)
    monkeypatch.setattr(db.holds, "LOCK_TIMEOUT_MS", 200)
    skipped: list[tuple[int, str]] = []
    engine = make_engine(url)
    try:
        with psycopg.connect(libpq) as holder:
            # (released by the server after 10 s, should the pass wait for it)
            holder.execute("SET idle_in_transaction_session_timeout = '10s'")
            holder.execute("SELECT 1 FROM app.products WHERE id = %s FOR UPDATE", (product,))
            started = time.monotonic()
            assert expire(engine, 60, lambda o, state: skipped.append((o, state))) == 1
            assert time.monotonic() - started < 5
            holder.rollback()
        assert expire(engine, 60, lambda o, state: skipped.append((o, state))) == 1
    finally:
        dispose_engine(url)
    assert skipped == [(held, "55P03")]
    with psycopg.connect(libpq) as conn:
        assert [_status(conn, o) for o in (held, other)] == ["cancelled", "cancelled"]
        assert stock(conn, product) == 20
