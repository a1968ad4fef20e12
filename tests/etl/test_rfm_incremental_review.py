"""A hostile review of the open month's RFM snapshot redone by what moved: shop changes,
rule changes, failures and races after which the open month must still equal a rebuild
at its newest ``as_of`` (every column but ``as_of`` and ``run_id``).

The helpers are those of ``tests/etl/test_rfm_incremental.py``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

import semantic.rfm
from etl import pipeline
from etl.errors import StepFailedError
from semantic.rfm import RfmRules, default_rules
from tests.etl import test_rfm_incremental as base
from tests.etl.conftest import one, sql
from tests.etl.test_rfm_incremental import _move_newest_order, _open, _place, _rebuild, _rows


def _new_customer(url: str, name: str) -> int:
    """A customer without orders (admin SQL)."""
    return int(
        one(
            url,
            "INSERT INTO app.customers (email, first_name, last_name, country, region, city)"
            " VALUES (%s, 'Rev', 'Iewer', 'Norway', 'Oslo', 'Oslo') RETURNING id",
            (f"{name}@review.example",),
        )
    )


def _items(url: str) -> str:
    product = one(url, "SELECT min(id) FROM app.products WHERE active AND stock > 5")
    return json.dumps([{"product_id": product, "quantity": 1}])


def _assert_open_month_is_a_rebuild(url: str) -> None:
    month, as_of = _open(url)
    assert _rows(url, month) == _rebuild(url, month, as_of)


# ---------------------------------------------------------------------------------------
# holes
# ---------------------------------------------------------------------------------------
def _other_window(rules: RfmRules) -> RfmRules:
    return dataclasses.replace(rules, window_days=30)


def _renamed_segments(rules: RfmRules) -> RfmRules:
    return dataclasses.replace(
        rules, segments=tuple(dataclasses.replace(s, name=f"{s.name} v2") for s in rules.segments)
    )


@pytest.mark.parametrize("change", [_other_window, _renamed_segments], ids=["window", "segments"])
def test_a_change_of_the_rules_reaches_every_row_of_the_open_month(
    loaded_shop: str, monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    """semantic/models/rules/rfm.yml edited (a new window, renamed segments) and the ETL
    restarted: the next run that changes the open month must apply the new rules to all of
    it, as the whole rebuild did on every such run before; the customers it does not look
    at keep their values of the old window and their old segment."""
    url = loaded_shop
    _place(url)
    pipeline.run(url)
    rules = change(default_rules())
    monkeypatch.setattr(semantic.rfm, "default_rules", lambda: rules)
    monkeypatch.setattr(base, "default_rules", lambda: rules)
    _place(url)  # an order of the open month: the step redoes it
    pipeline.run(url)
    _assert_open_month_is_a_rebuild(url)


def test_an_order_moved_out_of_the_open_month_leaves_it(loaded_shop: str) -> None:
    """An admin edit moves an order of the open month to next month (a pre-order's
    date, a typo): the month the order left is not redone (the month of the earliest
    changed order is read from its new ordered_at), and its customer keeps the order."""
    url = loaded_shop
    _place(url)
    pipeline.run(url)
    order = one(url, "SELECT max(id) FROM app.orders")
    sql(
        url,
        "UPDATE app.orders SET ordered_at = date_trunc('month', now() AT TIME ZONE 'UTC')"
        " AT TIME ZONE 'UTC' + interval '1 month 1 day' WHERE id = %s",
        (order,),
    )
    pipeline.run(url)
    _assert_open_month_is_a_rebuild(url)


def test_a_failing_open_month_reports_its_own_error(loaded_shop: str) -> None:
    """A statement of the open month's redo fails: the run must say why, not that the
    transaction is aborted (the temp tables' DROP in ``_open_month``'s finally runs in the
    aborted transaction and raises over the first error)."""
    url = loaded_shop
    _place(url)
    pipeline.run(url)
    _refuse_rfm_writes(url)
    _place(url)
    with pytest.raises(StepFailedError) as failed:
        pipeline.run(url)
    assert "rfm write refused" in str(failed.value)
    error = one(
        url,
        "SELECT error FROM dw.etl_run_step WHERE step = 'fact_customer_rfm'"
        " AND error IS NOT NULL ORDER BY run_id DESC LIMIT 1",
    )
    assert "rfm write refused" in error


def test_an_order_moved_then_touched_before_the_rfm_step(loaded_shop: str) -> None:
    """An order given to another customer, then paid after the run's horizon but before
    this step read app.orders (in the seconds between fact_orders and this step): this
    step's snapshot no longer sees the order in [lo, hi) (the month of the changed orders
    is 'infinity': the step does nothing), the facts, loaded earlier, do. The next run
    sees the order (paid) and redoes its customer now, but its delta (sign -1) names the
    new customer already: the one who had it keeps it (until a day passes since their
    last order). The whole rebuild the next run did before this change repaired both."""
    url = loaded_shop
    order, was = _move_newest_order(url)
    paid = _Before("fact_customer_rfm", url, "SELECT app.set_order_status(%s, 'paid')", (order,))
    pipeline.run(url, observer=paid)
    pipeline.run(url)  # the catch-up
    _assert_open_month_is_a_rebuild(url)
    month, _ = _open(url)
    assert was not in {r[0] for r in _rows(url, month) if r[6]}  # month_orders


def test_a_customer_version_then_touched_before_the_rfm_step(loaded_shop: str) -> None:
    """The same race for a customer: a new version (country) loaded by dim_customer, the
    customer edited again (type 1) before this step: its row keeps the old customer_key
    while another row written moves the month's as_of past the version."""
    url = loaded_shop
    _place(url)
    pipeline.run(url)
    customer = one(url, "SELECT min(customer_id) FROM dw.fact_customer_rfm"
                        " WHERE customer_id > (SELECT min(id) FROM app.customers)")  # fmt: skip
    sql(url, "UPDATE app.customers SET country = 'Kenya' || id WHERE id = %s", (customer,))
    _place(url)  # another customer's row is written: the month's as_of moves
    again = "UPDATE app.customers SET first_name = 'Again' WHERE id = %s"
    pipeline.run(url, observer=_Before("fact_customer_rfm", url, again, (customer,)))
    _assert_open_month_is_a_rebuild(url)


def test_an_order_moved_from_a_closed_month_into_the_open_one(loaded_shop: str) -> None:
    """Outside the claim (a closed month), found on the way, and older than the open
    month's redo: an order of last month moved into this month leaves last month's
    snapshot counting it (the months are redone from the changed order's new month)."""
    url = loaded_shop
    _place(url)
    pipeline.run(url)
    month, _ = _open(url)
    order = one(url, "SELECT max(order_id) FROM dw.fact_orders WHERE NOT is_cancelled"
                     " AND ordered_at < %s AND ordered_at >= %s - interval '1 month'",
                (month, month))  # fmt: skip
    moved = "CASE WHEN {0} IS NULL THEN NULL ELSE now() - interval '1 minute' END"
    sql(url, "UPDATE app.orders SET ordered_at = now() - interval '1 minute', "
             + ", ".join(f"{c} = {moved.format(c)}"
                         for c in ("paid_at", "shipped_at", "delivered_at"))
             + " WHERE id = %s", (order,))  # fmt: skip
    pipeline.run(url)
    _assert_open_month_is_a_rebuild(url)
    last = one(url, "SELECT max(month) FROM dw.fact_customer_rfm WHERE month < %s", (month,))
    end = one(url, "SELECT max(as_of) FROM dw.fact_customer_rfm WHERE month = %s", (last,))
    assert _rows(url, last) == _rebuild(url, last, end)


# ---------------------------------------------------------------------------------------
# coverage: changes the claim survives
# ---------------------------------------------------------------------------------------
def test_a_failed_rfm_step_then_a_catch_up_with_an_order_moved(loaded_shop: str) -> None:
    """A run fails at this step after fact_orders committed an order given to another
    customer; the next run (no shop change) still moves both: the deltas wait for the
    publish step, which the failed run never reached."""
    url = loaded_shop
    _move_newest_order(url)
    _refuse_rfm_writes(url)
    with pytest.raises(StepFailedError):
        pipeline.run(url)
    sql(url, "DROP TRIGGER refuse ON dw.fact_customer_rfm")
    pipeline.run(url)
    _assert_open_month_is_a_rebuild(url)


def test_a_customer_whose_only_order_is_cancelled_leaves_the_month(loaded_shop: str) -> None:
    url = loaded_shop
    _place(url)
    pipeline.run(url)
    customer = _new_customer(url, "only")
    _place(url, customer)
    pipeline.run(url)
    month, _ = _open(url)
    assert customer in {r[0] for r in _rows(url, month)}
    order = one(url, "SELECT id FROM app.orders WHERE customer_id = %s", (customer,))
    sql(url, "SELECT app.set_order_status(%s, 'cancelled')", (order,))
    pipeline.run(url)
    _assert_open_month_is_a_rebuild(url)
    assert customer not in {r[0] for r in _rows(url, month)}


def test_runs_with_only_customer_changes_and_none(loaded_shop: str) -> None:
    """A new version (segment), a type-1 change, then a run with no change at all, then
    an order: each leaves the open month equal to a rebuild at its newest as_of."""
    url = loaded_shop
    _place(url)
    pipeline.run(url)
    a, b = (r[0] for r in sql(url, "SELECT customer_id FROM dw.fact_customer_rfm"
                                   " GROUP BY 1 ORDER BY 1 DESC LIMIT 2"))  # fmt: skip
    month, _ = _open(url)
    key = one(url, "SELECT customer_key FROM dw.fact_customer_rfm WHERE month = %s"
                   " AND customer_id = %s", (month, a))  # fmt: skip
    sql(url, "UPDATE app.customers SET segment = CASE segment WHEN 'corporate' THEN 'consumer'"
             " ELSE 'corporate' END WHERE id = %s", (a,))  # fmt: skip
    sql(url, "UPDATE app.customers SET first_name = 'Renamed' WHERE id = %s", (b,))
    pipeline.run(url)
    _assert_open_month_is_a_rebuild(url)
    assert key != one(url, "SELECT customer_key FROM dw.fact_customer_rfm WHERE month = %s"
                           " AND customer_id = %s", (month, a))  # fmt: skip
    pipeline.run(url)
    _assert_open_month_is_a_rebuild(url)
    _place(url, b)
    pipeline.run(url)
    _assert_open_month_is_a_rebuild(url)


def test_customers_tied_on_every_key_rank_alike(loaded_shop: str) -> None:
    """Three new customers each place the same basket in one transaction (one instant,
    one amount): tied on last_at, frequency and monetary, ranked by id on both sides."""
    url = loaded_shop
    _place(url)
    pipeline.run(url)
    ids = [_new_customer(url, f"tie{i}") for i in range(3)]
    items = _items(url)
    sql(url, "SELECT app.place_order(c, %s::jsonb, 'web', 'card')"
             " FROM unnest(%s::bigint[]) AS c", (items, ids))  # fmt: skip
    pipeline.run(url)
    _assert_open_month_is_a_rebuild(url)
    month, _ = _open(url)
    assert len({r[2] for r in _rows(url, month) if r[0] in ids}) == 1  # one last_at


# ---------------------------------------------------------------------------------------
def _refuse_rfm_writes(url: str) -> None:
    sql(
        url,
        "CREATE OR REPLACE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'rfm write refused'; END $$",
    )
    sql(
        url,
        "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON dw.fact_customer_rfm"
        " FOR EACH ROW EXECUTE FUNCTION public.refuse()",
    )


class _Before:
    """An observer that runs one statement (autocommit) as ``step`` starts: a write that
    lands after the run's horizon, between two steps."""

    def __init__(self, step: str, url: str, query: str, params: Any) -> None:
        self.step, self.url, self.query, self.params = step, url, query, params

    def step_started(self, step: str, index: int, total: int) -> None:
        if step == self.step:
            sql(self.url, self.query, self.params)

    def step_finished(self, step: str, counts: Any, seconds: float) -> None:
        pass

    def checks_started(self) -> None:
        pass

    def checks_finished(self, results: Any, seconds: float) -> None:
        pass

    def step_progress(self, what: str, done: int, total: int | None) -> None:
        pass
