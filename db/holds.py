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

A pass lists the candidates (oldest first, :data:`BATCH` at a time, none locked) and
cancels each in a short transaction of its own: it locks the order if it is still pending
and past the hold (``FOR NO KEY UPDATE SKIP LOCKED``, the lock ``app.set_order_status``
takes), then cancels it, which locks that order's products in id order, as ``place_order``
and every other writer do (db/migrations/sqlfile.py, ``WRITE_ORDER``). A pass so holds
one order's products at a time, for milliseconds: it cannot deadlock with ``placeOrder``
or a cancel. Once a batch was one transaction: it locked the products order after order
(by order date, not by id) and held them all to its end, so order traffic deadlocked
with it and each failed pass gave no stock back (a hostile probe). A deadlock or
serialization failure of one order (none is expected) is tried once more. An order whose
cancel fails (a deadlock twice, a product restocked to the check's maximum so that its
units no longer fit, a product row another session holds past :data:`LOCK_TIMEOUT_MS`)
is rolled back, reported by its id and SQLSTATE and left to the next pass, which tries it
again; the pass goes on with the next order. Once any such error ended the pass, and the
next began again at the oldest order: one order that always failed stopped every expiry
for good (probe 15). A lost connection still ends the pass. A payment
(``PENDING -> PAID``) racing with a cancel waits, then finds the order cancelled and is
refused as an illegal transition; an order another session holds is skipped, so several
hosts may run it at once. ``cdms serve``'s pipeline process runs it every minute
(api/pipeline_process.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

ACTOR = "system:hold-expired"
BATCH = 500
EVERY_S = 60.0
# how long one order's cancel waits for a product row another session holds
LOCK_TIMEOUT_MS = 5000
# deadlock_detected, serialization_failure: one order's, tried again once
_TRANSIENT = frozenset({"40P01", "40001"})
_FIRST = (datetime.min.replace(tzinfo=UTC), 0)
_log = logging.getLogger(__name__)

# told of an order left pending by a failed cancel: its id and the error's SQLSTATE
Skipped = Callable[[int, str], None]

_PAST_HOLD = (
    " status = 'pending' AND ordered_at < now() - make_interval(mins => :minutes)"
    " AND app.is_customer_actor(created_by)"
    " AND payment_method IN ('card', 'paypal', 'gift_card')"
)
# the next candidates after (ordered_at, id) ``after``, oldest first; none locked
_CANDIDATES = sa.text(
    "SELECT ordered_at, id FROM app.orders WHERE"
    + _PAST_HOLD
    + " AND (ordered_at, id) > (:after_at, :after_id) ORDER BY ordered_at, id LIMIT :batch"
)
# one candidate, if still past the hold and no other session holds it
_TAKE = sa.text(
    "SELECT id FROM app.orders WHERE id = :o AND" + _PAST_HOLD + " FOR NO KEY UPDATE SKIP LOCKED"
)


def expire(engine: Engine, minutes: int, skipped: Skipped | None = None) -> int:
    """Cancel the unpaid customer orders older than ``minutes``; how many (0: off).
    ``skipped`` (default: a warning in the log) is told of each order whose cancel failed,
    left to the next pass."""
    if minutes <= 0:
        return 0
    done = 0
    after = _FIRST
    with engine.connect() as conn:
        while True:
            with conn.begin():
                rows = conn.execute(
                    _CANDIDATES,
                    {
                        "minutes": minutes,
                        "after_at": after[0],
                        "after_id": after[1],
                        "batch": BATCH,
                    },
                ).all()
            for _, order_id in rows:
                if _cancel_or_skip(conn, order_id, minutes, skipped or _log_skipped):
                    done += 1
            if len(rows) < BATCH:
                return done
            after = (rows[-1][0], rows[-1][1])


def _log_skipped(order_id: int, state: str) -> None:
    _log.warning(
        "unpaid order %s not expired (SQLSTATE %s): tried again next pass", order_id, state
    )


def _cancel_or_skip(conn: Connection, order_id: int, minutes: int, skipped: Skipped) -> bool:
    """Cancel one order in a transaction of its own; whether it did (not: paid, cancelled or
    held by another session meanwhile; or its cancel failed, a transient failure twice:
    rolled back, told to ``skipped``, the next pass tries again)."""
    for attempt in (1, 2):
        try:
            with conn.begin():
                conn.execute(
                    sa.text(
                        "SELECT set_config('cdms.actor', :a, true),"
                        " set_config('lock_timeout', :t, true)"
                    ),
                    {"a": ACTOR, "t": f"{LOCK_TIMEOUT_MS}ms"},
                )
                if conn.execute(_TAKE, {"o": order_id, "minutes": minutes}).first() is None:
                    return False
                conn.execute(
                    sa.text("SELECT app.set_order_status(:o, 'cancelled')"), {"o": order_id}
                )
            return True
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise  # the connection is gone: the pass ends, the next one reconnects
            # (the SQLSTATE only: the server's message may quote the order's data)
            state = str(getattr(exc.orig, "sqlstate", None) or "unknown")
            if state in _TRANSIENT and attempt == 1:
                continue
            skipped(order_id, state)
            return False
    return False


class Expirer:
    """:func:`expire` every ``every_s`` seconds in a daemon thread, until :meth:`stop`;
    ``report`` is told of what it cancelled, of each order it could not cancel (its id and
    SQLSTATE) and of a pass that failed (the next one tries again)."""

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
                n = expire(self.engine, self.minutes, self._skipped)
                if n:
                    self.report(
                        f"cancelled {n} unpaid order(s) older than {self.minutes} min"
                        " (CDMS_HOLD_STOCK_MINUTES): their stock is back"
                    )
            except sa.exc.SQLAlchemyError as exc:
                self.report(f"[yellow]unpaid orders not expired[/] ({type(exc).__name__})")
            self._stop.wait(self.every_s)

    def _skipped(self, order_id: int, state: str) -> None:
        self.report(
            f"[yellow]unpaid order {order_id} not expired[/] (SQLSTATE {state}):"
            " tried again next pass"
        )
