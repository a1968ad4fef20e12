"""Stored predictions follow the ETL: the post-load hook (``ml.hooks``) scores what a run
added, and a full load, which truncates them with the feature tables, refills them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import make_engine
from db.seed import seed
from etl import hooks, runner
from ml import stored
from ml.hooks import score_new
from ml.registry import register
from ml.serving import close_store
from ml.train import TrainedModel


@pytest.fixture
def shop(
    fresh_database: Callable[[], str], trained: dict[str, TrainedModel]
) -> Iterator[tuple[str, Engine]]:
    """A loaded warehouse with the trained models active, and the hook registered."""
    url = fresh_database()
    seed(url, 60, 500, 9)
    runner.run(url)
    engine = make_engine(url)
    for m in trained.values():
        assert register(engine, m).activated
    hooks.after_load(score_new)
    yield url, engine
    hooks.remove(score_new)
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


def test_an_incremental_run_scores_the_new_order(shop: tuple[str, Engine]) -> None:
    url, engine = shop
    stored.refresh(engine)  # what was loaded before the hook was registered
    _current(engine, "ml.order_predictions", "ml.order_features", 2)
    # a run that changes nothing adds no features: the hook does not look (a row missing
    # for another reason waits for the next run that changes something)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ml.ticket_predictions WHERE ticket_id % 2 = 0"))
    missing = "SELECT count(*) FROM ml.ticket_predictions WHERE ticket_id % 2 = 0"
    assert not runner.run(url).changed
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

    runner.run(url)

    q = "SELECT count(*) FROM ml.stored_predictions WHERE id = :i AND kind = 'order'"
    assert _count(engine, q, i=order_id) == 2
    _current(engine, "ml.order_predictions", "ml.order_features", 2)
    _current(engine, "ml.ticket_predictions", "ml.ticket_features", 1)


def test_a_full_load_refills_them_through_the_hook(
    shop: tuple[str, Engine], trained: dict[str, TrainedModel]
) -> None:
    url, engine = shop
    stored.refresh(engine)
    # a newer version of one model: the rows of the old one must not survive the reload
    assert register(engine, trained["order_value"], force=True).activated
    runner.run(url, full=True)
    _current(engine, "ml.order_predictions", "ml.order_features", 2)
    _current(engine, "ml.ticket_predictions", "ml.ticket_features", 1)


def test_a_full_load_without_the_hook_leaves_them_empty(shop: tuple[str, Engine]) -> None:
    url, engine = shop
    stored.refresh(engine)
    assert _count(engine, "SELECT count(*) FROM ml.order_predictions") > 0
    hooks.remove(score_new)
    runner.run(url, full=True)
    assert _count(engine, "SELECT count(*) FROM ml.order_features") > 0
    assert _count(engine, "SELECT count(*) FROM ml.order_predictions") == 0
    assert _count(engine, "SELECT count(*) FROM ml.ticket_predictions") == 0


class _Heard:
    """An ETL observer that keeps what the post-load hooks report."""

    def __init__(self) -> None:
        self.hooks: list[tuple[str, int, int | None]] = []

    def step_started(self, *_: object) -> None: ...

    def step_finished(self, *_: object) -> None: ...

    def checks_started(self) -> None: ...

    def checks_finished(self, *_: object) -> None: ...

    def hook_progress(self, what: str, done: int, total: int | None) -> None:
        self.hooks.append((what, done, total))


def test_the_hook_reports_its_progress_to_the_etl_observer(shop: tuple[str, Engine]) -> None:
    url, engine = shop
    heard = _Heard()
    runner.run(url, full=True, observer=heard)
    with engine.connect() as conn:
        orders = conn.execute(sa.text("SELECT count(*) FROM ml.order_features")).scalar_one()
    assert ("score new", 0, None) in heard.hooks  # announced by the runner
    scoring = [h for h in heard.hooks if h[0] == "scoring ml.order_predictions"]
    assert scoring[0] == ("scoring ml.order_predictions", 0, orders)
    assert scoring[-1] == ("scoring ml.order_predictions", orders, orders)
