"""The serving feature tables: filled by the ETL, equal to what the feature queries (and so
training) compute for the same ids."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import make_engine
from db.seed import seed
from etl import pipeline, runner
from etl.runner import RunResult
from ml.feature_table import ORDERS, TABLES, TICKETS, Table, fetch
from ml.features import FeatureFrame, load_ids
from tests.ml.conftest import place_order


def _ids(engine: Engine, table: Table) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {table.key} FROM {table.fact}")).scalars()
        return [int(i) for i in rows]


def assert_same(a: FeatureFrame, b: FeatureFrame) -> None:
    assert a.keys.tolist() == b.keys.tolist()
    assert a.event_at == b.event_at
    assert a.columns.keys() == b.columns.keys()
    for name, col in a.columns.items():
        if col.dtype == np.float32:
            assert np.array_equal(col, b.columns[name], equal_nan=True), name
        else:
            assert col.tolist() == b.columns[name].tolist(), name


def features(result: RunResult) -> tuple[int, int]:
    """(rows inserted, rows changed) by the run's features step."""
    counts = next(s.counts for s in result.steps if s.step == "features")
    return counts.inserted, counts.updated


def assert_table_equals_query(engine: Engine, table: Table) -> int:
    ids = _ids(engine, table)
    with engine.connect() as conn:
        served = fetch(conn, table.sql_file, ids, table.kinds)
        computed = load_ids(conn, table.sql_file, ids, table.kinds)
    assert len(served) == len(ids) > 0
    assert_same(served, computed)
    return len(ids)


def test_the_feature_tables_hold_what_the_feature_queries_compute(ml_engine: Engine) -> None:
    for table in TABLES:
        assert_table_equals_query(ml_engine, table)


def test_the_etl_fills_features_of_new_facts_and_a_full_load_refills_them(
    fresh_database: Callable[[], str],
) -> None:
    url = fresh_database()
    seed(url, 150, 1_500, 3)
    first = pipeline.run(url)
    engine = make_engine(url)
    try:
        n_orders = assert_table_equals_query(engine, ORDERS)
        n_tickets = assert_table_equals_query(engine, TICKETS)
        assert features(first) == (n_orders + n_tickets, 0)
        assert features(pipeline.run(url)) == (0, 0)  # a no-op

        # a run that stopped between its facts and its features step (or a row lost): the
        # next run fills what is missing
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "DELETE FROM ml.order_features"
                    " WHERE order_id = (SELECT max(order_id) FROM ml.order_features)"
                )
            )
            conn.execute(
                sa.text(
                    "UPDATE dw.etl_run SET status = 'failed'"
                    " WHERE run_id = (SELECT max(run_id) FROM dw.etl_run)"
                )
            )
        assert features(pipeline.run(url)) == (1, 0)

        # a warehouse loaded before the feature tables existed (an upgrade to 0007): the
        # next run fills them, new facts or not
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM ml.order_features"))
        assert features(pipeline.run(url)) == (n_orders, 0)

        with engine.begin() as conn:
            customer, order = place_order(conn, quantity=2)
            conn.execute(
                sa.text("SELECT app.open_ticket(:c, 'delivery', 'high', 'email', 'Where?', :o)"),
                {"c": customer, "o": order},
            )
        assert features(pipeline.run(url)) == (2, 0)
        assert_table_equals_query(engine, ORDERS)
        assert_table_equals_query(engine, TICKETS)

        # a touched order is recomputed; a status is no feature: its row stays as it was
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT app.set_order_status(:o, 'paid')"), {"o": order})
        assert features(pipeline.run(url)) == (0, 0)

        def snapshot() -> list[tuple[object, ...]]:
            with engine.connect() as conn:
                return [
                    tuple(r)
                    for t in TABLES
                    for r in conn.execute(sa.text(f"SELECT * FROM {t.name} ORDER BY {t.key}")).all()
                ]

        before = snapshot()
        full = pipeline.run(url, full=True)  # recomputes every row, and rewrites none
        assert features(full) == (0, 0)
        assert snapshot() == before

        # a fact deleted from the warehouse takes its features with it
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM app.order_items WHERE order_id = :o"), {"o": order})
            conn.execute(
                sa.text("DELETE FROM app.support_tickets WHERE order_id = :o"), {"o": order}
            )
            conn.execute(sa.text("DELETE FROM app.orders WHERE id = :o"), {"o": order})
        pipeline.run(url)
        assert len(_ids(engine, ORDERS)) == n_orders
        assert_table_equals_query(engine, ORDERS)
    finally:
        runner.dispose(url)
        engine.dispose()
