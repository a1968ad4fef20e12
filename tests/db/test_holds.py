"""Unpaid orders of customer keys give their stock back after the hold (db/holds.py):
a customer key put every product's stock in one pending order and renewed it by cancelling
(docs/security.md). The shop's own orders, paid ones and fresh ones are left alone."""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from api.apikeys import create_key
from db.holds import ACTOR, Expirer, expire
from tests.db.shop import Conn, item, new_customer, new_product, one, place_order, stock


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
