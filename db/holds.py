"""Stock held by unpaid orders goes back after a while (``CDMS_HOLD_STOCK_MINUTES``).

An order takes its stock when it is placed (``app.place_order``) and gives it back when it
is cancelled. A customer key's order that is never paid held its stock for good: one key
put every product's stock in one pending order, and renewed the hold by cancelling and
ordering again (docs/security.md). As shops do (WooCommerce's "hold stock", 60 minutes by
default), a ``PENDING`` order placed by a customer principal (a customer's token or API
key: ``app.is_customer_actor``, migration 0029),
paid online (card, PayPal, gift card: paid at checkout or never) and older than the hold is
cancelled by ``app.set_order_status``: its stock back, its history stamped by
``system:hold-expired``. Bank transfers and cash on delivery are paid later by design, and
orders placed by the shop's own keys (service, admin: invoices) and the seeded ones are not
touched.

Each pass locks the orders it cancels (``FOR UPDATE SKIP LOCKED``), in batches of one
transaction each: a payment (``PENDING -> PAID``) racing with it waits, then finds the order
cancelled and is refused as an illegal transition; several hosts may run it at once.
``cdms serve``'s pipeline process runs it every minute (api/pipeline_process.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

ACTOR = "system:hold-expired"
BATCH = 500
EVERY_S = 60.0

_EXPIRED = sa.text(
    "SELECT id FROM app.orders"
    " WHERE status = 'pending' AND ordered_at < now() - make_interval(mins => :minutes)"
    " AND app.is_customer_actor(created_by)"
    " AND payment_method IN ('card', 'paypal', 'gift_card')"
    " ORDER BY ordered_at LIMIT :batch FOR UPDATE SKIP LOCKED"
)


def expire(engine: Engine, minutes: int) -> int:
    """Cancel the unpaid customer orders older than ``minutes``; how many (0: off)."""
    if minutes <= 0:
        return 0
    done = 0
    while True:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT set_config('cdms.actor', :a, true)"), {"a": ACTOR})
            ids = list(conn.execute(_EXPIRED, {"minutes": minutes, "batch": BATCH}).scalars())
            for order_id in ids:
                conn.execute(
                    sa.text("SELECT app.set_order_status(:o, 'cancelled')"), {"o": order_id}
                )
        done += len(ids)
        if len(ids) < BATCH:
            return done


class Expirer:
    """:func:`expire` every ``every_s`` seconds in a daemon thread, until :meth:`stop`;
    ``report`` is told of what it cancelled and of a pass that failed (the next one
    tries again)."""

    def __init__(
        self,
        engine: Engine,
        minutes: int,
        report: Callable[[str], None],
        every_s: float = EVERY_S,
    ) -> None:
        self.engine = engine
        self.minutes = minutes
        self.report = report
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cdms-hold-expirer", daemon=True)

    def start(self) -> Expirer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                n = expire(self.engine, self.minutes)
                if n:
                    self.report(
                        f"cancelled {n} unpaid order(s) older than {self.minutes} min"
                        " (CDMS_HOLD_STOCK_MINUTES): their stock is back"
                    )
            except sa.exc.SQLAlchemyError as exc:
                self.report(f"[yellow]unpaid orders not expired[/] ({type(exc).__name__})")
            self._stop.wait(self.every_s)
