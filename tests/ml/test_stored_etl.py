"""Stored predictions follow the pipeline: its scoring step stores the predictions of the
orders and tickets a run touched, a changed feature row loses its prediction until then,
and a full load leaves them current."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import make_engine
from db.seed import seed
from etl import pipeline, runner
from etl.load import Counts
from ml import stored
from ml.registry import register
from ml.serving import close_store
from ml.train import TrainedModel


@pytest.fixture
def shop(
    fresh_database: Callable[[], str], trained: dict[str, TrainedModel]
) -> Iterator[tuple[str, Engine]]:
    """A loaded warehouse with the trained models active."""
    url = fresh_database()
    seed(url, 60, 500, 9)
    pipeline.run(url)
    engine = make_engine(url)
    for m in trained.values():
        assert register(engine, m).activated
    yield url, engine
    runner.dispose(url)
    close_store(engine)


def _count(engine: Engine, query: str, **params: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(query), params).scalar_one())


def _current(engine: Engine, table: str, features: str, models: int) -> None:
    """Every feature row has one prediction per model, each by the active version."""
    rows = _count(engine, f"SELECT count(*) FROM {features}")
    assert rows > 0
    kind = "order" if table == "ml.order_predictions" else "ticket"
    assert _count(engine, f"SELECT count(*) FROM {table}") == rows
    table = f"(SELECT * FROM ml.stored_predictions WHERE kind = '{kind}')"
    assert _count(engine, f"SELECT count(*) FROM {table} AS p") == rows * models
    stale = (
        f"SELECT count(*) FROM {table} AS p JOIN ml.model_version AS v"
        " ON v.name = p.model AND v.version = p.version WHERE NOT v.active"
    )
    assert _count(engine, stale) == 0


def _scoring(result: runner.RunResult) -> Counts:
    return next(s.counts for s in result.steps if s.step == "scoring")


def test_a_run_scores_the_orders_it_touched_and_only_those(shop: tuple[str, Engine]) -> None:
    url, engine = shop
    stored.refresh(engine)  # what was loaded before the models were registered
    _current(engine, "ml.order_predictions", "ml.order_features", 2)
    # a run that changes nothing does not look: a row missing for another reason waits
    # for its object to change, `cdms ml score` or the server's start-up
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ml.ticket_predictions WHERE ticket_id % 2 = 0"))
    missing = "SELECT count(*) FROM ml.ticket_predictions WHERE ticket_id % 2 = 0"
    quiet = pipeline.run(url)
    assert not quiet.changed and _scoring(quiet) == Counts()
    assert _count(engine, missing) == 0
    with engine.begin() as conn:
        customer = conn.execute(sa.text("SELECT min(id) FROM app.customers")).scalar_one()
        product = conn.execute(
            sa.text("SELECT min(id) FROM app.products WHERE active AND stock > 5")
        ).scalar_one()
        order_id = conn.execute(
            sa.text("SELECT app.place_order(:c, CAST(:items AS jsonb), 'web', 'card')"),
            {"c": customer, "items": json.dumps([{"product_id": product, "quantity": 1}])},
        ).scalar_one()
    assert (
        _count(engine, "SELECT count(*) FROM ml.order_predictions WHERE order_id = :i", i=order_id)
        == 0
    )

    with engine.connect() as conn:
        scored_at = conn.execute(
            sa.text("SELECT scored_at FROM ml.customer_predictions WHERE customer_id = :c"),
            {"c": customer},
        ).scalar_one()

    result = pipeline.run(url)

    # the new order, by both order models; its customer's order value and churn risk,
    # forgotten and scored again (a load that touches a customer's orders may change their
    # history)
    assert _scoring(result) == Counts(inserted=4)
    with engine.connect() as conn:
        again, current = conn.execute(
            sa.text(
                "SELECT scored_at, as_of = date_trunc('day', now(), 'UTC')"
                " FROM ml.customer_predictions WHERE customer_id = :c"
            ),
            {"c": customer},
        ).one()
    assert again > scored_at and current
    q = "SELECT count(*) FROM ml.stored_predictions WHERE id = :i AND kind = 'order'"
    assert _count(engine, q, i=order_id) == 2
    _current(engine, "ml.order_predictions", "ml.order_features", 2)


def test_a_changed_feature_row_is_scored_again(shop: tuple[str, Engine]) -> None:
    url, engine = shop
    stored.refresh(engine)
    with engine.connect() as conn:
        order, before = conn.execute(
            sa.text(
                "SELECT order_id, order_value_value FROM ml.order_predictions"
                " ORDER BY order_id DESC LIMIT 1"
            )
        ).one()
    # its line grows (an admin fix): basket features change, so does its prediction
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE app.order_items SET quantity = quantity + 5"
                " WHERE order_id = :o AND line_no = 1"
            ),
            {"o": order},
        )
    result = pipeline.run(url)
    features = next(s.counts for s in result.steps if s.step == "features")
    assert features.updated == 1
    # its two models, its customer's two (order value, churn risk)
    assert _scoring(result) == Counts(inserted=4)
    with engine.connect() as conn:
        item_count, after = conn.execute(
            sa.text(
                "SELECT f.item_count, p.order_value_value FROM ml.order_features AS f"
                " JOIN ml.order_predictions AS p USING (order_id) WHERE order_id = :o"
            ),
            {"o": order},
        ).one()
        units = conn.execute(
            sa.text("SELECT sum(quantity) FROM app.order_items WHERE order_id = :o"), {"o": order}
        ).scalar_one()
    assert item_count == units
    assert after != before
    _current(engine, "ml.order_predictions", "ml.order_features", 2)


def test_a_full_load_leaves_them_current(
    shop: tuple[str, Engine], trained: dict[str, TrainedModel]
) -> None:
    url, engine = shop
    stored.refresh(engine)
    # a newer version of one model: the rows of the old one must not survive the reload
    assert register(engine, trained["order_value"], force=True).activated
    pipeline.run(url, full=True)
    _current(engine, "ml.order_predictions", "ml.order_features", 2)
    _current(engine, "ml.ticket_predictions", "ml.ticket_features", 1)


class _Heard:
    """An observer that keeps what the steps after the load report."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, int, int | None]] = []

    def step_started(self, *_: object) -> None: ...

    def step_finished(self, *_: object) -> None: ...

    def checks_started(self) -> None: ...

    def checks_finished(self, *_: object) -> None: ...

    def step_progress(self, what: str, done: int, total: int | None) -> None:
        self.parts.append((what, done, total))


def test_scoring_reports_its_progress_to_the_observer(shop: tuple[str, Engine]) -> None:
    url, engine = shop
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ml.order_predictions"))
    heard = _Heard()
    pipeline.run(url, full=True, observer=heard)
    with engine.connect() as conn:
        orders = conn.execute(sa.text("SELECT count(*) FROM ml.order_features")).scalar_one()
    scoring = [h for h in heard.parts if h[0] == "scoring ml.order_predictions"]
    assert scoring[0] == ("scoring ml.order_predictions", 0, orders)
    assert scoring[-1] == ("scoring ml.order_predictions", orders, orders)


def _place(engine: Engine, customer: int) -> None:
    with engine.begin() as conn:
        product = conn.execute(
            sa.text("SELECT min(id) FROM app.products WHERE active AND stock > 5")
        ).scalar_one()
        conn.execute(
            sa.text("SELECT app.place_order(:c, CAST(:items AS jsonb), 'web', 'card')"),
            {"c": customer, "items": json.dumps([{"product_id": product, "quantity": 1}])},
        )


def test_later_runs_of_the_day_look_only_at_the_customers_they_moved(
    shop: tuple[str, Engine],
) -> None:
    """The first run of a process (or of a UTC day, or of a new churn_risk version) looks at
    every current customer's churn risk; the next ones at the customers of the orders they
    touched and the customers with a new version, not at the other 100,000."""
    url, engine = shop
    with engine.connect() as conn:  # customers with orders (a churn risk needs a history)
        first, second, third, untouched = conn.execute(
            sa.text("SELECT DISTINCT customer_id FROM app.orders ORDER BY 1 LIMIT 4")
        ).scalars()
    _place(engine, first)
    pipeline.run(url)  # every current customer looked at (this process's first run)
    lacking = "SELECT count(*) FROM ml.customer_predictions WHERE customer_id = :c"
    assert _count(engine, lacking, c=untouched) == 1
    with engine.begin() as conn:  # lost for a reason no run of the day looks for
        conn.execute(
            sa.text("DELETE FROM ml.customer_predictions WHERE customer_id = :c"),
            {"c": untouched},
        )
        conn.execute(  # a new version of a customer with no order changed
            sa.text("UPDATE app.customers SET country = 'Kenya', city = 'Nairobi' WHERE id = :c"),
            {"c": third},
        )
    _place(engine, second)
    result = pipeline.run(url)
    # the order by both order models; both customer models for its customer and for the
    # new version
    assert _scoring(result) == Counts(inserted=6)
    assert _count(engine, lacking, c=untouched) == 0
    current = (
        "SELECT count(*) FROM ml.customer_predictions AS p JOIN dw.dim_customer AS d"
        " ON d.customer_key = p.customer_key WHERE p.customer_id = :c AND d.is_current"
    )
    assert _count(engine, current, c=third) == 1
    # a process's first run (as a new day's) looks at every customer again
    pipeline._CUSTOMERS_CHECKED.clear()
    _place(engine, second)
    # (the order by both models, its customer's two, and the lost customer's two)
    assert _scoring(pipeline.run(url)).inserted == 6
    assert _count(engine, lacking, c=untouched) == 1


def test_a_new_day_rescores_the_customers_a_batch_a_run(
    shop: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After midnight every stored churn risk is of yesterday: an incremental run scores at
    most DAY_CUSTOMERS of them (not all 100,000 in one run, ~13 s), the next runs go on,
    and once none is left the runs look only at the customers they moved."""
    url, engine = shop
    customer = _count(engine, "SELECT min(customer_id) FROM app.orders")
    _place(engine, customer)
    pipeline.run(url)  # every customer scored: today's
    monkeypatch.setattr(pipeline, "DAY_CUSTOMERS", 25)
    current = "SELECT count(*) FROM dw.dim_customer WHERE is_current"
    today = (
        "SELECT count(*) FROM ml.customer_predictions WHERE as_of = date_trunc('day', now(), 'UTC')"
    )
    everyone = _count(engine, current)
    assert everyone > 50 and _count(engine, today) == everyone
    with engine.begin() as conn:  # midnight: every row is of yesterday
        conn.execute(sa.text("UPDATE ml.customer_predictions SET as_of = as_of - interval '1 day'"))
    pipeline._CUSTOMERS_CHECKED.clear()  # (this process looked yesterday)

    scored = []
    while _count(engine, today) < everyone:
        _place(engine, customer)
        pipeline.run(url)
        scored.append(_count(engine, today))
        assert len(scored) <= everyone // 25 + 2, scored
    # each run: the customer of its order, then at most 25 more
    assert all(b - a <= 26 for a, b in zip([0, *scored], scored, strict=False)), scored
    assert len(scored) >= everyone // 26
    # done: the next run looks only at the customer it moved (the day's look is over)
    _place(engine, customer)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE ml.customer_predictions SET as_of = as_of - interval '1 day'"
                             " WHERE customer_id <> :c"), {"c": customer})  # fmt: skip
    pipeline.run(url)
    assert _count(engine, today) == 1
