"""The open month's RFM snapshot redone by what moved equals a rebuild at the same instant:
after random shop changes, after time passed (orders leaving the trailing window, whole
days since a last order, orders placed after the month's newest ``as_of``), and when a row
lacks ``last_at`` (the month is rebuilt whole)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from etl import pipeline, runner
from etl.runner import RunResult
from etl.steps import STEPS
from semantic.rfm import default_rules
from tests.etl.conftest import one, sql

STEP = next(s for s in STEPS if s.name == "fact_customer_rfm")
# every column but as_of (the horizon of the run that last wrote the row) and run_id
COLUMNS = (
    "customer_id, customer_key, last_at, recency_days, frequency, monetary, month_orders,"
    " month_revenue, r_score, f_score, m_score, fm_score, segment"
)


def _open(url: str) -> tuple[Any, datetime]:
    """The open (newest) month and its newest as_of."""
    month, as_of = one(url, "SELECT month, max(as_of) FROM dw.fact_customer_rfm"
                    " WHERE month = (SELECT max(month) FROM dw.fact_customer_rfm)"
                    " GROUP BY month")  # fmt: skip
    assert isinstance(as_of, datetime)
    return month, as_of


def _rows(url: str, month: Any) -> list[tuple[Any, ...]]:
    return sql(
        url,
        f"SELECT {COLUMNS} FROM dw.fact_customer_rfm WHERE month = %s ORDER BY customer_id",
        (month,),
    )


def _rebuild(url: str, month: Any, hi: datetime, *, keep: bool = False) -> list[tuple[Any, ...]]:
    """The month as the whole rebuild writes it at ``hi`` (rolled back unless ``keep``)."""
    rules = default_rules()
    with runner.etl_engine(url).connect() as conn:
        conn.execute(sa.text(STEP.sql()["clear"]), {"from_month": month})
        conn.execute(
            sa.text(STEP.sql()["rebuild"]),
            {"from_month": month, "last_month": month, "hi": hi, "window": rules.window_days,
             "scores": rules.scores, "cells": rules.cells(), "run_id": 0},
        )  # fmt: skip
        rows = conn.execute(
            sa.text(f"SELECT {COLUMNS} FROM dw.fact_customer_rfm WHERE month = :m"
                    " ORDER BY customer_id"), {"m": month},
        ).all()  # fmt: skip
        if keep:
            conn.commit()
        else:
            conn.rollback()
    return [tuple(r) for r in rows]


def _rfm_counts(result: RunResult) -> Any:
    return next(s for s in result.steps if s.step == "fact_customer_rfm").counts


def _change_this_month(url: str, rng: random.Random) -> None:
    """A change that moves only the open month: an order placed, one of this month's
    orders paid or cancelled, or a customer's new version."""
    kind = rng.choice(["place", "place", "status", "status", "customer"])
    if kind == "place":
        _place(url, rng.choice(_ids(url, "customers")))
    elif kind == "status":
        pending = sql(url, "SELECT id FROM app.orders WHERE status = 'pending'"
                           " AND ordered_at >= date_trunc('month', now() AT TIME ZONE 'UTC')"
                           "                   AT TIME ZONE 'UTC' ORDER BY id")  # fmt: skip
        if pending:
            order = rng.choice(pending)[0]
            sql(url, "SELECT app.set_order_status(%s, %s)",
                (order, rng.choice(["paid", "cancelled"])))  # fmt: skip
    else:
        sql(
            url,
            "UPDATE app.customers SET country = %s WHERE id = %s",
            (rng.choice(["Norway", "Chile", "Kenya"]), rng.choice(_ids(url, "customers"))),
        )


def _place(url: str, customer: int | None = None) -> None:
    """An order of ``customer`` (the first one by default) placed now."""
    customer = customer or one(url, "SELECT min(id) FROM app.customers")
    product = one(url, "SELECT min(id) FROM app.products WHERE active AND stock > 5")
    items = json.dumps([{"product_id": product, "quantity": 1}])
    sql(url, "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')", (customer, items))


def _move_newest_order(url: str) -> tuple[int, int]:
    """An order placed and loaded, then given to another customer by an admin edit (not
    loaded yet); returns the order and the customer who had it."""
    _place(url)
    pipeline.run(url)
    order, was = one(url, "SELECT id, customer_id FROM app.orders ORDER BY id DESC LIMIT 1")
    other = one(url, "SELECT max(id) FROM app.customers WHERE id <> %s", (was,))
    sql(url, "UPDATE app.orders SET customer_id = %s WHERE id = %s", (other, order))
    return int(order), int(was)


def _ids(url: str, table: str) -> list[int]:
    return [r[0] for r in sql(url, f"SELECT id FROM app.{table} ORDER BY id")]


@pytest.mark.parametrize(
    ("seed", "edge_share"),
    # the re-tiling from the tiles' edges (etl.retile; every row fetched when the month is
    # small), and the sort of the whole month it falls back to for many keys
    [(3, 1e9), (4, 1e9), (5, 0.0)],
)
def test_the_open_month_redone_by_what_moved_equals_a_rebuild(
    loaded_shop: str, seed: int, edge_share: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl import load

    monkeypatch.setattr(load, "EDGE_SHARE", edge_share)
    used: list[str] = []
    retile = load._retile
    monkeypatch.setattr(load, "_retile", lambda *a: used.append("edges") or retile(*a))
    url = loaded_shop
    rng = random.Random(seed)
    _place(url)  # the horizon's month stored (the seed may end in an earlier one)
    pipeline.run(url)
    month, _ = _open(url)
    for _ in range(5):
        before = set(_rows(url, month))
        for _ in range(rng.randint(2, 6)):
            _change_this_month(url, rng)
        result = pipeline.run(url)
        month, as_of = _open(url)
        after = _rows(url, month)
        assert after == _rebuild(url, month, as_of)
        # the step redid what moved, not the month: it wrote the rows that changed and
        # those of the customers it looked at, no other
        counts = _rfm_counts(result)
        size = len(after)
        written = one(url, "SELECT count(*) FROM dw.fact_customer_rfm"
                           " WHERE month = %s AND run_id = %s", (month, result.run_id))  # fmt: skip
        changed = {r[0] for r in set(after) ^ before}
        assert counts.read < size / 2, (counts, size)
        assert len(changed) <= written <= counts.read + len(changed), (counts, changed)
    assert bool(used) == (edge_share > 1), used


def test_time_passing_moves_the_customers_it_moves(loaded_shop: str) -> None:
    """The month last computed a while ago (rebuilt as of then): the next run brings every
    row to the new horizon, including customers none of whose orders changed."""
    url = loaded_shop
    _place(url)
    pipeline.run(url)
    month, as_of = _open(url)
    then = as_of - timedelta(hours=30)  # (before the month began, early in a month)
    stale = _rebuild(url, month, then, keep=True)
    _change_this_month(url, random.Random(1))
    result = pipeline.run(url)
    month, now = _open(url)
    assert now > then
    fresh = _rows(url, month)
    assert fresh == _rebuild(url, month, now)
    # some rows moved without an order of theirs changing (recency_days, at least)
    moved = {r[0] for r in set(fresh) ^ set(stale)}
    assert len(moved) > 5 and _rfm_counts(result).read >= len(moved)


def _one_row_set_then_rebuilt(url: str, assignment: str) -> Any:
    """Load, spoil one row of the open month with ``assignment``, place an order of the
    month and run again: the run must rebuild the whole month (each row written again)
    and it must equal a rebuild. The open month."""
    _place(url)
    pipeline.run(url)
    month, _ = _open(url)
    size = one(url, "SELECT count(*) FROM dw.fact_customer_rfm WHERE month = %s", (month,))
    sql(url, f"UPDATE dw.fact_customer_rfm SET {assignment}"
             " WHERE month = %s AND customer_id = (SELECT min(customer_id)"
             "   FROM dw.fact_customer_rfm WHERE month = %s)", (month, month))  # fmt: skip
    _place(url)  # an order of the open month: the step redoes it
    result = pipeline.run(url)
    assert _rfm_counts(result).inserted >= size
    month, as_of = _open(url)
    assert _rows(url, month) == _rebuild(url, month, as_of)
    return month


def test_a_row_without_last_at_makes_the_month_rebuilt(loaded_shop: str) -> None:
    month = _one_row_set_then_rebuilt(loaded_shop, "last_at = NULL")
    assert one(loaded_shop, "SELECT count(*) FROM dw.fact_customer_rfm WHERE last_at IS NULL"
                            " AND month = %s", (month,)) == 0  # fmt: skip


def test_orders_entering_and_leaving_the_window_move_their_customers(loaded_shop: str) -> None:
    """Between the month's newest as_of and the horizon an order leaves the trailing window
    and one falls in the span (its ordered_at later than its write), each of a customer
    nothing else moved."""
    url = loaded_shop
    _place(url)
    pipeline.run(url)
    month, as_of = _open(url)
    window = timedelta(days=default_rules().window_days)
    # two customers with a few orders, not the one whose order was just placed
    pair = sql(url, "SELECT customer_id FROM dw.fact_orders WHERE NOT is_cancelled"
                    "   AND customer_id > (SELECT min(id) FROM app.customers)"
                    " GROUP BY 1 HAVING count(*) >= 3 ORDER BY 1 LIMIT 2")  # fmt: skip
    a, b = (r[0] for r in pair)
    leaving = as_of - window - timedelta(minutes=5)
    entering = as_of - timedelta(minutes=5)
    for customer, at in ((a, leaving), (b, entering)):
        sql(url, "UPDATE dw.fact_orders SET ordered_at = %s WHERE order_id = (SELECT min(order_id)"
                 " FROM dw.fact_orders WHERE customer_id = %s AND NOT is_cancelled)",
            (at, customer))  # fmt: skip
    then = as_of - timedelta(minutes=10)
    stale = {r[0]: r for r in _rebuild(url, month, then, keep=True)}
    _place(url, one(url, "SELECT max(id) FROM app.customers WHERE id NOT IN (%s, %s)", (a, b)))
    pipeline.run(url)
    month, now = _open(url)
    fresh = {r[0]: r for r in _rows(url, month)}
    assert list(fresh.values()) == _rebuild(url, month, now)
    assert fresh[a][4] == stale[a][4] - 1  # frequency: one order left the window
    assert fresh[b][2] == entering and stale[b][2] < entering  # last_at


def test_an_order_moved_to_another_customer_moves_both(loaded_shop: str) -> None:
    """An admin edit gives an order of this month to another customer: the one who had it
    loses it, though no row of theirs changed in app."""
    url = loaded_shop
    _move_newest_order(url)
    pipeline.run(url)
    month, as_of = _open(url)
    assert _rows(url, month) == _rebuild(url, month, as_of)


def test_a_month_the_table_did_not_have_gets_its_statistics(shop: str) -> None:
    """Without them the planner takes the new month for a few rows, and every later run
    reads the open month's tiles by sorting them instead of from the scores' indexes."""
    pipeline.run(shop)
    analysed = "SELECT count(*) FROM pg_stats WHERE schemaname = 'dw'" \
               " AND tablename = 'fact_customer_rfm' AND attname = 'month'"  # fmt: skip
    assert one(shop, analysed) == 1


def test_a_horizon_behind_the_months_newest_as_of_rebuilds_the_month(loaded_shop: str) -> None:
    """(A clock set back.) The reads by what moved rely on every row being exact at the
    month's newest as_of; a run behind it rebuilds the month instead."""
    _one_row_set_then_rebuilt(loaded_shop, "as_of = as_of + interval '2 hours'")
