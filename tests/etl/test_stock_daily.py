"""The daily stock snapshot kept incrementally (etl/sql/fact_stock_daily.sql) equals what a
full rebuild writes, row for row and version for version, whatever the runs saw: orders,
payments, cancellations, returns, stock edited by hand, new product versions, dates moved,
new and deleted products, days passing without a run. A run rewrites only the rows whose
level or version changed."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from db.config import to_libpq_url
from etl import pipeline
from etl.load import NEG_INF, Counts, run_step
from etl.runner import etl_engine, transaction
from etl.steps import STEPS
from tests.etl.conftest import one, request_random_return, sql, step_counts

STOCK = next(s for s in STEPS if s.name == "fact_stock_daily")
ROWS = (
    "SELECT product_id, snapshot_date, product_key, units_on_hand FROM dw.fact_stock_daily"
    " ORDER BY product_id, snapshot_date"
)


def _horizon(url: str) -> datetime:
    hw = one(url, "SELECT high_water FROM dw.etl_watermark WHERE step = 'fact_stock_daily'")
    assert isinstance(hw, datetime)
    return hw


def _rebuilt(url: str, hi: datetime) -> list[tuple[Any, ...]]:
    """What a full rebuild of the step (``lo = -infinity``) writes for horizon ``hi``, with
    the dimension as it is (rolled back)."""
    with etl_engine(url).connect() as conn, conn.begin() as trans:
        run_step(conn, STOCK, NEG_INF, hi, 0)
        rows = [tuple(r) for r in conn.execute(sa.text(ROWS))]
        trans.rollback()
    return rows


def assert_equals_a_rebuild(url: str, hi: datetime) -> None:
    stored = [tuple(r) for r in sql(url, ROWS)]
    rebuilt = _rebuilt(url, hi)
    missing = sorted(set(rebuilt) - set(stored))
    extra = sorted(set(stored) - set(rebuilt))
    assert (missing[:3], extra[:3], len(missing), len(extra)) == ([], [], 0, 0)


def _step(url: str, lo: datetime, hi: datetime, run_id: int) -> Counts:
    """The step alone for the window ``[lo, hi)``, committed (as the runner runs it)."""
    with transaction(etl_engine(url)) as conn:
        return run_step(conn, STOCK, lo, hi, run_id)


PROCEDURES = ("place", "place", "place", "status", "status", "status", "return")
ANY_CHANGE = (
    *PROCEDURES,
    *("stock", "scd2", "brand", "line", "date", "cancel_date", "created", "first", "new", "drop"),
)


def _stock_change(url: str, rng: random.Random, kinds: tuple[str, ...] = ANY_CHANGE) -> None:
    """One random change: through the shop's procedures, or written straight into the
    tables as an administrator or a bulk load would."""
    kind = rng.choice(kinds)
    with psycopg.connect(to_libpq_url(url), autocommit=True) as conn:

        def ids(query: str, params: Any = None) -> list[Any]:
            return [r[0] for r in conn.execute(query, params).fetchall()]

        def product() -> int:
            return int(rng.choice(ids("SELECT id FROM app.products ORDER BY id")))

        if kind == "place":
            customer = rng.choice(ids("SELECT id FROM app.customers ORDER BY id"))
            products = ids("SELECT id FROM app.products WHERE active AND stock > 5 ORDER BY id")
            items = [
                {"product_id": p, "quantity": rng.randint(1, 3)}
                for p in rng.sample(products, rng.randint(1, 3))
            ]
            conn.execute(
                "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')",
                (customer, json.dumps(items)),
            )
        elif kind == "status":
            nxt = {"pending": ["paid", "cancelled"], "paid": ["shipped", "cancelled"],
                   "shipped": ["delivered"]}  # fmt: skip
            status = rng.choice(list(nxt))
            found = ids("SELECT id FROM app.orders WHERE status = %s ORDER BY id", (status,))
            if found:
                conn.execute(
                    "SELECT app.set_order_status(%s, %s)",
                    (rng.choice(found), rng.choice(nxt[status])),
                )
        elif kind == "return":
            ret = request_random_return(conn, rng)
            if ret is not None:
                decide = rng.choice(["approve_return", "approve_return", "reject_return"])
                conn.execute(f"SELECT app.{decide}(%s)", (ret,))
        elif kind == "stock":  # an administrator counts the shelf
            conn.execute(
                "UPDATE app.products SET stock = %s WHERE id = %s",
                (rng.randint(0, 500), product()),
            )
        elif kind == "scd2":  # a new version of the product (type-2 attributes)
            conn.execute(
                "UPDATE app.products SET unit_price = unit_price + 1,"
                " category = CASE WHEN %s THEN 'Moved' ELSE category END WHERE id = %s",
                (rng.random() < 0.5, product()),
            )
        elif kind == "brand":  # type 1: the same version
            conn.execute("UPDATE app.products SET brand = 'Renamed' WHERE id = %s", (product(),))
        elif kind == "line":  # a quantity corrected by hand: the stock does not follow
            found = conn.execute(
                "SELECT order_id, line_no FROM app.order_items ORDER BY 1, 2"
            ).fetchall()
            order, line = rng.choice(found)
            conn.execute(
                "UPDATE app.order_items SET quantity = quantity + 1"
                " WHERE order_id = %s AND line_no = %s",
                (order, line),
            )
        elif kind == "date":  # an order's date moved by hand (earlier: its CHECKs hold)
            found = ids(
                "SELECT id FROM app.orders WHERE id > (SELECT min(id) FROM app.orders) ORDER BY id"
            )
            conn.execute(
                "UPDATE app.orders SET ordered_at = ordered_at - %s * interval '1 day'"
                " WHERE id = %s",
                (rng.randint(1, 40), rng.choice(found)),
            )
        elif kind == "cancel_date":
            found = ids("SELECT id FROM app.orders WHERE status = 'cancelled' ORDER BY id")
            if found:
                conn.execute(
                    "UPDATE app.orders SET cancelled_at = cancelled_at + %s * interval '1 day'"
                    " WHERE id = %s",
                    (rng.choice([-9, -2, 3]), rng.choice(found)),
                )
        elif kind == "created":  # a product's creation day corrected: its series' first day
            conn.execute(
                "UPDATE app.products SET created_at = (SELECT min(ordered_at) FROM app.orders)"
                " + %s * interval '1 day' WHERE id = %s",
                (rng.randint(-3, 30), product()),
            )
        elif kind == "first":  # the first day's orders moved two days on: the first day moves
            conn.execute(
                "UPDATE app.orders SET ordered_at = ordered_at + interval '2 days',"
                " paid_at = paid_at + interval '2 days', shipped_at = shipped_at + interval"
                " '2 days', delivered_at = delivered_at + interval '2 days', cancelled_at ="
                " cancelled_at + interval '2 days', returned_at = returned_at + interval '2 days'"
                " WHERE ordered_at < (SELECT min(ordered_at) FROM app.orders) + interval '1 day'"
            )
        elif kind == "new":
            conn.execute(
                "INSERT INTO app.products (sku, name, category, subcategory, brand, unit_price,"
                " cost, stock) VALUES (%s, 'New', 'Misc', 'Misc', 'None', 5, 2, 40)",
                (f"NEW-{rng.randrange(10**9)}",),
            )
        else:  # a product never sold, deleted
            found = ids(
                "SELECT id FROM app.products AS p WHERE NOT EXISTS"
                " (SELECT 1 FROM app.order_items AS i WHERE i.product_id = p.id)"
                " AND NOT EXISTS (SELECT 1 FROM app.feedback AS f WHERE f.product_id = p.id)"
                " ORDER BY id"
            )
            if found:
                conn.execute("DELETE FROM app.products WHERE id = %s", (rng.choice(found),))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stock_kept_incrementally_equals_a_rebuild_after_every_run(
    loaded_shop: str, seed: int
) -> None:
    url = loaded_shop
    rng = random.Random(seed)
    updated = deleted = 0
    for _ in range(7):
        for _ in range(rng.randint(2, 8)):
            _stock_change(url, rng)
        result = pipeline.run(url)
        assert_equals_a_rebuild(url, _horizon(url))
        _read, _inserted, u, d = step_counts(url, result.run_id)["fact_stock_daily"]
        updated += u
        deleted += d
    # both ways were taken: rows brought up to date in place, series rebuilt whole
    assert updated > 0
    assert deleted > 0


def test_changes_through_the_procedures_rebuild_no_series(loaded_shop: str) -> None:
    """Orders, payments, cancellations and returns move the levels from their day on: the
    check holds for every product they touch, and no series is rebuilt whole."""
    url = loaded_shop
    rng = random.Random(8)
    updated = 0
    for _ in range(5):
        for _ in range(8):
            _stock_change(url, rng, PROCEDURES)
        result = pipeline.run(url)
        read, _inserted, u, deleted = step_counts(url, result.run_id)["fact_stock_daily"]
        assert read > 0
        assert deleted == 0
        updated += u
        assert_equals_a_rebuild(url, _horizon(url))
    assert updated > 0


def test_days_without_a_run_are_filled_and_days_past_the_horizon_go(loaded_shop: str) -> None:
    """Horizons a day, then days apart: the missing days of every product are written
    (extended, or computed for the changed ones); a horizon back in time drops the later
    days."""
    url = loaded_shop
    rng = random.Random(4)
    for run_id, ahead in enumerate([1, 4, 4, 9], start=1000):
        # (the window starts before this round's changes: a horizon ahead of the clock
        # covers changes not made yet, which a real run never sees)
        lo = one(url, "SELECT now()")
        for _ in range(5):
            _stock_change(url, rng)
        hi = one(url, "SELECT now()") + timedelta(days=ahead)
        _step(url, lo, hi, run_id)
        assert_equals_a_rebuild(url, hi)
        last = one(url, "SELECT max(snapshot_date) FROM dw.fact_stock_daily")
        assert last == hi.astimezone(UTC).date()
    back = hi - timedelta(days=6)
    counts = _step(url, hi, back, 2000)
    assert counts.deleted > 0
    assert_equals_a_rebuild(url, back)


def _place(url: str, products: list[int]) -> int:
    customer = one(url, "SELECT min(id) FROM app.customers")
    items = json.dumps([{"product_id": p, "quantity": 2} for p in products])
    order = one(url, "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')", (customer, items))
    assert isinstance(order, int)
    return order


def test_status_changes_write_no_stock_row_and_an_order_only_its_days(loaded_shop: str) -> None:
    url = loaded_shop
    sellable = [
        r[0]
        for r in sql(url, "SELECT id FROM app.products WHERE active AND stock > 20 ORDER BY id")
    ]
    pending = [_place(url, sellable[i : i + 2]) for i in range(0, 8, 2)]
    pipeline.run(url)
    before = one(url, "SELECT max(snapshot_date) FROM dw.fact_stock_daily")
    products = one(url, "SELECT count(DISTINCT product_id) FROM dw.fact_stock_daily")

    def new_days(last: date) -> int:
        return int(products * (last - before).days)

    # pending -> paid moves no stock: no row is written but the new days'
    for order in pending[:3]:
        sql(url, "SELECT app.set_order_status(%s, 'paid')", (order,))
    result = pipeline.run(url)

    last = one(url, "SELECT max(snapshot_date) FROM dw.fact_stock_daily")
    read, inserted, updated, deleted = step_counts(url, result.run_id)["fact_stock_daily"]
    assert read == 6  # the paid orders' products were looked at
    assert (inserted, updated, deleted) == (new_days(last), 0, 0)
    assert (
        one(
            url,
            "SELECT count(*) FROM dw.fact_stock_daily WHERE run_id = %s AND snapshot_date <= %s",
            (result.run_id, before),
        )
        == 0
    )
    assert_equals_a_rebuild(url, _horizon(url))

    # an order: its products' rows of its day change, and nothing else
    before = last
    sold = sellable[10:12]
    _place(url, sold)
    sql(url, "SELECT app.set_order_status(%s, 'paid')", (pending[3],))
    result = pipeline.run(url)

    last = one(url, "SELECT max(snapshot_date) FROM dw.fact_stock_daily")
    read, inserted, updated, deleted = step_counts(url, result.run_id)["fact_stock_daily"]
    written = sql(
        url,
        "SELECT product_id, snapshot_date FROM dw.fact_stock_daily"
        " WHERE run_id = %s AND snapshot_date <= %s ORDER BY 1",
        (result.run_id, before),
    )
    assert read == 4
    assert written == ([(p, last) for p in sold] if last == before else [])
    assert (inserted, updated, deleted) == (new_days(last), len(written), 0)
    assert_equals_a_rebuild(url, _horizon(url))


def test_a_series_stored_wrong_before_the_change_is_rebuilt_whole(loaded_shop: str) -> None:
    """The check compares the level and the version of the day before the change with the
    stored row: a series wrong before it (a level, a product version) is rebuilt whole."""
    url = loaded_shop
    first, second = [
        r[0]
        for r in sql(url, "SELECT id FROM app.products WHERE active AND stock > 20 ORDER BY id")
    ][:2]
    sql(
        url,
        "UPDATE dw.fact_stock_daily SET units_on_hand = units_on_hand + 7 WHERE product_id = %s",
        (first,),
    )
    sql(
        url,
        "UPDATE dw.fact_stock_daily SET product_key = -product_key WHERE product_id = %s",
        (second,),
    )
    days = one(url, "SELECT count(*) FROM dw.fact_stock_daily WHERE product_id = %s", (first,))
    _place(url, [first, second])

    result = pipeline.run(url)

    _read, _inserted, _updated, deleted = step_counts(url, result.run_id)["fact_stock_daily"]
    assert deleted >= 2 * days - 2
    assert_equals_a_rebuild(url, _horizon(url))


def test_a_deleted_order_or_line_moves_its_products_series(loaded_shop: str) -> None:
    """A line or an order deleted straight from the tables (no procedure gives the stock
    back) removes a movement from the product's history: its earlier days' levels change.
    The product of a row that is gone is known from the sales facts' deltas of the run."""
    url = loaded_shop
    line = sql(
        url,
        "SELECT i.order_id, i.line_no, i.product_id FROM app.order_items AS i"
        " JOIN app.orders AS o ON o.id = i.order_id"
        " WHERE NOT EXISTS (SELECT 1 FROM app.returns AS r"
        "                   WHERE r.order_id = i.order_id AND r.line_no = i.line_no)"
        " ORDER BY o.ordered_at, i.order_id, i.line_no LIMIT 1 OFFSET 40",
    )[0]
    order = one(
        url,
        "SELECT o.id FROM app.orders AS o WHERE o.id <> %s"
        " AND NOT EXISTS (SELECT 1 FROM app.returns AS r WHERE r.order_id = o.id)"
        " AND NOT EXISTS (SELECT 1 FROM app.feedback AS f WHERE f.order_id = o.id)"
        " AND NOT EXISTS (SELECT 1 FROM app.support_tickets AS t WHERE t.order_id = o.id)"
        " ORDER BY o.ordered_at, o.id LIMIT 1 OFFSET 60",
        (line[0],),
    )
    sql(url, "DELETE FROM app.order_items WHERE order_id = %s AND line_no = %s", line[:2])
    sql(url, "DELETE FROM app.order_items WHERE order_id = %s", (order,))
    sql(url, "DELETE FROM app.orders WHERE id = %s", (order,))

    pipeline.run(url)

    assert_equals_a_rebuild(url, _horizon(url))


def _approved_return(url: str) -> tuple[int, int]:
    """(id, product) of an approved return decided well before today."""
    found = sql(
        url,
        "SELECT r.id, i.product_id FROM app.returns AS r"
        " JOIN app.order_items AS i ON i.order_id = r.order_id AND i.line_no = r.line_no"
        " WHERE r.status = 'approved' AND r.decided_at < now() - interval '3 days'"
        " ORDER BY r.decided_at, r.id LIMIT 1",
    )
    assert found, "the seeded shop has an approved return"
    return found[0][0], found[0][1]


def test_a_deleted_approved_return_moves_its_products_series(loaded_shop: str) -> None:
    """An approved return deleted straight from the table takes its restock out of the
    product's history (the stock stays): the days before its approval change. Its product
    is known from the returns facts' deltas of the run, as a deleted line's from the sales'."""
    url = loaded_shop
    ret, _product = _approved_return(url)
    sql(url, "DELETE FROM app.returns WHERE id = %s", (ret,))

    pipeline.run(url)

    assert_equals_a_rebuild(url, _horizon(url))


def test_truncated_returns_move_their_products_series(loaded_shop: str) -> None:
    """A TRUNCATE records no row: the returns facts are compared whole (no deltas) and the
    stock step must rebuild every series (the restocks are gone from their histories)."""
    url = loaded_shop
    _approved_return(url)
    sql(url, "TRUNCATE app.returns")

    pipeline.run(url)

    assert_equals_a_rebuild(url, _horizon(url))


def test_a_line_moved_to_another_product_moves_both_series(loaded_shop: str) -> None:
    url = loaded_shop
    order, line, product = sql(
        url,
        "SELECT i.order_id, i.line_no, i.product_id FROM app.order_items AS i"
        " JOIN app.orders AS o ON o.id = i.order_id"
        " WHERE NOT EXISTS (SELECT 1 FROM app.returns AS r"
        "                   WHERE r.order_id = i.order_id AND r.line_no = i.line_no)"
        " ORDER BY o.ordered_at, i.order_id, i.line_no LIMIT 1 OFFSET 30",
    )[0]
    other = one(
        url,
        "SELECT min(id) FROM app.products WHERE id <> %s AND created_at <"
        " (SELECT min(ordered_at) FROM app.orders)",
        (product,),
    )
    sql(
        url,
        "UPDATE app.order_items SET product_id = %s WHERE order_id = %s AND line_no = %s",
        (other, order, line),
    )

    pipeline.run(url)

    assert_equals_a_rebuild(url, _horizon(url))


def test_a_deleted_line_is_seen_by_the_run_after_a_failed_stock_step(
    loaded_shop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fact_sales records the deleted line and commits; the stock step of that run fails
    (rolled back): the next run's stock step still sees the line's product."""
    from etl import load

    url = loaded_shop
    order, line = sql(
        url,
        "SELECT i.order_id, i.line_no FROM app.order_items AS i"
        " JOIN app.orders AS o ON o.id = i.order_id"
        " WHERE NOT EXISTS (SELECT 1 FROM app.returns AS r"
        "                   WHERE r.order_id = i.order_id AND r.line_no = i.line_no)"
        " ORDER BY o.ordered_at, i.order_id, i.line_no LIMIT 1 OFFSET 50",
    )[0]
    sql(url, "DELETE FROM app.order_items WHERE order_id = %s AND line_no = %s", (order, line))
    real = load.run_snapshot

    def broken(*args: Any, **kwargs: Any) -> Counts:
        raise RuntimeError("the stock step failed")

    monkeypatch.setattr(load, "run_snapshot", broken)
    with pytest.raises(RuntimeError):
        pipeline.run(url)
    monkeypatch.setattr(load, "run_snapshot", real)
    _place(url, [one(url, "SELECT min(id) FROM app.products WHERE active AND stock > 20")])

    pipeline.run(url)

    assert_equals_a_rebuild(url, _horizon(url))
