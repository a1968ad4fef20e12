"""ML fixtures: one seeded, loaded warehouse with the three models trained, built once.

~500 customers / 6,000 orders (seed 7, history ending on a fixed date so the data, and
so the models, are the same every day): big enough for every model to beat its baseline,
small enough to train all three in seconds. The trained models are registered and active
in that database; tests that change the registry use a fresh database of their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import make_engine
from db.seed import seed
from etl import pipeline, runner
from ml import stored
from ml.registry import register
from ml.serving import close_store, store_for
from ml.specs import SPECS
from ml.train import TrainedModel, train

SHOP = {"customers": 500, "orders": 6_000, "seed": 7, "end": dt.date(2026, 6, 1)}


def shop_warehouse(clone_database: Callable[[str], str], name: str) -> str:
    """A clone ``name`` seeded with ``SHOP`` and loaded into the warehouse by one ETL run."""
    url = clone_database(name)
    seed(url, SHOP["customers"], SHOP["orders"], SHOP["seed"], end=SHOP["end"])
    pipeline.run(url)
    runner.dispose(url)
    return url


def train_all(engine: Engine) -> dict[str, TrainedModel]:
    """The three models trained, registered and active."""
    models = {name: train(engine, spec) for name, spec in SPECS.items()}
    for m in models.values():
        result = register(engine, m)
        assert result.activated, result
    return models


@pytest.fixture(scope="session")
def ml_url(clone_database: Callable[[str], str]) -> Iterator[str]:
    """A warehouse (seeded app, one ETL run); models registered by ``trained``."""
    url = shop_warehouse(clone_database, "ml")
    yield url
    close_store(make_engine(url))


@pytest.fixture(scope="session")
def ml_engine(ml_url: str) -> Engine:
    return make_engine(ml_url)


@pytest.fixture(scope="session")
def trained(ml_engine: Engine) -> dict[str, TrainedModel]:
    """The three models, trained once, registered and active in ``ml_url``."""
    return train_all(ml_engine)


@contextmanager
def deactivated(engine: Engine, name: str) -> Iterator[int]:
    """``name`` with no active version (the process's store reloaded) for the block; its
    version is activated again after it. Yields that version."""
    store = store_for(engine)
    with engine.begin() as conn:
        version = int(
            conn.execute(
                sa.text(
                    "UPDATE ml.model_version SET active = false WHERE name = :n AND active"
                    " RETURNING version"
                ),
                {"n": name},
            ).scalar_one()
        )
    store.reload(name)
    try:
        yield version
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT ml.activate_model(:n, :v)"), {"n": name, "v": version})
        store.reload(name)


@contextmanager
def unstored(engine: Engine) -> Iterator[None]:
    """No stored prediction for the block (every one is computed on request, as before
    ``ml.stored``); the store is filled again after it."""
    with engine.begin() as conn:
        for s in stored.STORED:
            conn.execute(sa.text(f"DELETE FROM {s.table}"))
    try:
        yield
    finally:
        stored.refresh(engine)


def place_order(conn: sa.Connection, quantity: int = 1) -> tuple[int, int]:
    """A new order (through ``app.place_order``) of the first customer for the first active
    product in stock: (customer id, order id). The warehouse has not loaded it yet."""
    customer, product = conn.execute(
        sa.text(
            "SELECT (SELECT min(id) FROM app.customers),"
            " (SELECT id FROM app.products WHERE stock > 0 AND active ORDER BY id LIMIT 1)"
        )
    ).one()
    order = conn.execute(
        sa.text("SELECT app.place_order(:c, CAST(:items AS jsonb), 'web', 'card')"),
        {"c": customer, "items": f'[{{"product_id": {product}, "quantity": {quantity}}}]'},
    ).scalar_one()
    return int(customer), int(order)
