"""The serve-time scheduler: runs after changes (micro-batched), catches up after a long run,
retries a failing run with back-off while the lag grows, and never runs two at once."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from etl import pipeline, runner
from etl.runner import RunResult
from etl.scheduler import Mode, Schedule, Scheduler, describe, start
from etl.status import warehouse_status
from tests.etl.conftest import one, sql


def _place_order(url: str) -> int:
    customer = one(url, "SELECT min(id) FROM app.customers")
    product = one(url, "SELECT min(id) FROM app.products WHERE active AND stock > 100")
    items = json.dumps([{"product_id": product, "quantity": 1}])
    return int(one(url, "SELECT app.place_order(%s, %s::jsonb, 'web', 'card')", (customer, items)))


def _loaded(url: str, order: int) -> bool:
    return bool(one(url, "SELECT count(*) FROM dw.fact_orders WHERE order_id = %s", (order,)))


def _wait(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _runs(url: str) -> int:
    return int(one(url, "SELECT count(*) FROM dw.etl_run"))


@contextmanager
def _scheduler(
    url: str,
    schedule: Schedule,
    run: Callable[[], RunResult] | None = None,
) -> Iterator[tuple[Scheduler, list[str]]]:
    messages: list[str] = []
    scheduler = Scheduler(url, schedule, messages.append, run).start()
    try:
        yield scheduler, messages
    finally:
        # (the shop fixture disposes of the ETL engine once every scheduler has stopped:
        # disposing of it here, while a second scheduler was still loading with it, left
        # that run's pooled connections to the garbage collector, unclosed)
        scheduler.stop()


def test_off_starts_nothing_and_says_so(shop: str) -> None:
    said: list[str] = []
    assert start(shop, Schedule(Mode.OFF), said.append) is None
    assert said == ["ETL mode off: no scheduled loads (cdms etl run loads by hand)"]


def test_the_mode_is_told_in_the_words_of_its_variables() -> None:
    assert describe(Schedule(Mode.INTERVAL, interval_s=90)) == (
        "a load every 90 s (CDMS_ETL_INTERVAL)"
    )
    assert describe(Schedule(floor_s=0.5, ceiling_s=30)) == (
        "a load soon after changes, at least 0.5 s apart (CDMS_ETL_MIN_INTERVAL), a look at"
        " least every 30 s (CDMS_ETL_MAX_INTERVAL)"
    )


def test_a_change_is_loaded_soon_after_it_is_made_and_a_quiet_shop_costs_no_run(
    loaded_shop: str,
) -> None:
    url = loaded_shop
    with _scheduler(url, Schedule(floor_s=0.2, ceiling_s=30)) as (scheduler, messages):
        _wait(lambda: scheduler.skipped + scheduler.runs >= 1)  # its look at the start
        runs = _runs(url)
        time.sleep(1.0)
        assert _runs(url) == runs  # nothing changed, nothing ran
        order = _place_order(url)
        _wait(lambda: _loaded(url, order))
    assert _runs(url) == runs + 1
    assert not any("failed" in m for m in messages), messages
    with runner.etl_engine(url).connect() as conn:
        status = warehouse_status(conn)
    assert status.lag_seconds == 0 and status.state == "succeeded"


def test_changes_during_the_pause_after_a_run_make_one_run(loaded_shop: str) -> None:
    """The first change after a quiet spell is loaded at once; those that follow wait for
    the minimum interval after that run and go in one run (a micro-batch)."""
    url = loaded_shop
    with _scheduler(url, Schedule(floor_s=3.0, ceiling_s=30)) as (scheduler, _):
        _wait(lambda: scheduler.skipped + scheduler.runs >= 1)
        runs = _runs(url)
        first = _place_order(url)
        _wait(lambda: _loaded(url, first) and scheduler.runs >= 1)
        orders = [_place_order(url) for _ in range(5)]
        _wait(lambda: all(_loaded(url, o) for o in orders) and scheduler.runs >= 2)
    assert _runs(url) == runs + 2
    end = one(url, "SELECT finished_at FROM dw.etl_run ORDER BY run_id DESC OFFSET 1 LIMIT 1")
    start = one(url, "SELECT started_at FROM dw.etl_run ORDER BY run_id DESC LIMIT 1")
    assert (start - end).total_seconds() >= 3.0 - 0.05  # the pause, then one run of five


def test_a_change_made_during_a_run_gets_a_run_of_its_own(loaded_shop: str) -> None:
    url = loaded_shop
    late: list[int] = []

    def run_then_change() -> RunResult:
        result = pipeline.run(url, check=False)
        if not late:  # after the first run's horizon: that run cannot have loaded it
            late.append(_place_order(url))
        return result

    first = _place_order(url)
    with _scheduler(url, Schedule(floor_s=0.2, ceiling_s=30), run_then_change) as (s, _):
        _wait(lambda: bool(late) and _loaded(url, late[0]) and s.runs >= 2)
        assert _loaded(url, first)
        assert s.runs == 2


def test_a_failing_run_is_retried_with_back_off_while_the_lag_grows(loaded_shop: str) -> None:
    url = loaded_shop
    # every new order line breaks a constraint of the warehouse: the fact step fails
    sql(url, "ALTER TABLE dw.fact_sales ADD CONSTRAINT no_new_lines CHECK (false) NOT VALID")
    order = _place_order(url)
    with _scheduler(url, Schedule(floor_s=0.2, ceiling_s=1.0)) as (scheduler, messages):
        _wait(lambda: scheduler.failures >= 3)
        with runner.etl_engine(url).connect() as conn:
            failing = warehouse_status(conn)
        time.sleep(0.5)
        with runner.etl_engine(url).connect() as conn:
            later = warehouse_status(conn)
        assert failing.state == later.state == "failed"
        assert "fact_sales failed and was rolled back" in (failing.error or "")
        assert "no_new_lines" in (failing.error or "")
        assert failing.failures >= 3 and failing.failing_since is not None
        assert 0 < failing.lag_seconds < later.lag_seconds  # honest: it keeps growing
        assert not _loaded(url, order)
        assert one(url, "SELECT count(*) FROM dw.fact_sales WHERE order_id = %s", (order,)) == 0

        sql(url, "ALTER TABLE dw.fact_sales DROP CONSTRAINT no_new_lines")
        _wait(lambda: _loaded(url, order))
        _wait(lambda: scheduler.failures == 0)
    failed = [m for m in messages if "etl run failed" in m]
    assert failed[0].startswith("etl run failed (1 in a row; retrying in 0.4 s): error[")
    assert "(2 in a row; retrying in 0.8 s)" in failed[1]
    assert "(3 in a row; retrying in 1.0 s)" in failed[2]  # the ceiling caps the back-off
    assert any("succeeded after" in m for m in messages), messages
    with runner.etl_engine(url).connect() as conn:
        assert warehouse_status(conn).lag_seconds == 0


def test_a_long_failure_streak_keeps_the_back_off_at_the_ceiling(loaded_shop: str) -> None:
    """After about a thousand failures in a row (eight hours of a database that is down) the
    doubling back-off overflowed a float, and the error ended the scheduler's thread."""
    url = loaded_shop
    _place_order(url)  # something pending, so the attempt runs

    def failing() -> RunResult:
        raise RuntimeError("the database is away")

    messages: list[str] = []
    scheduler = Scheduler(url, Schedule(floor_s=1.0, ceiling_s=30.0), messages.append, failing)
    scheduler.failures = 1_100
    assert scheduler._attempt() == "failed"
    assert messages == [
        "etl run failed (1101 in a row; retrying in 30.0 s): RuntimeError: the database is away"
    ]


def test_two_schedulers_on_one_database_never_run_at_once(loaded_shop: str) -> None:
    """Two servers (hosts) share a database: the lock keeps their runs apart, and every
    change is loaded by one of them."""
    url = loaded_shop
    fast = Schedule(floor_s=0.1, ceiling_s=2.0)
    with _scheduler(url, fast) as (a, _), _scheduler(url, fast) as (b, _):
        orders = []
        for _ in range(8):
            orders.append(_place_order(url))
            time.sleep(0.15)
        _wait(lambda: all(_loaded(url, o) for o in orders))
        assert a.failures == b.failures == 0
    runs = sql(url, "SELECT status, started_at, finished_at FROM dw.etl_run ORDER BY started_at")
    assert all(status == "succeeded" for status, _, _ in runs)
    for (_, _, end), (_, start_, _) in itertools.pairwise(runs):
        assert end <= start_


def test_interval_mode_loads_on_its_clock(loaded_shop: str) -> None:
    url = loaded_shop
    with _scheduler(url, Schedule(Mode.INTERVAL, interval_s=0.5)) as (scheduler, _):
        order = _place_order(url)
        _wait(lambda: _loaded(url, order) and scheduler.runs >= 1)
