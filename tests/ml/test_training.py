"""Training on the warehouse: settled events only, time split, metrics beat the baselines."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ml.errors import InsufficientDataError
from ml.features import load_ids
from ml.specs import ORDER_STATUS, ORDER_VALUE, SPECS, SUPPORT_STATUS, FeatureKind
from ml.train import FOREST, TREES_PER_STEP, TrainedModel, dataset, train


def test_time_split_trains_on_older_events_and_evaluates_on_the_newest_fifth(
    trained: dict[str, TrainedModel],
) -> None:
    for m in trained.values():
        if m.spec.horizon_days:  # training rows whose target reaches the test rows are dropped
            reach = dt.timedelta(days=m.spec.horizon_days)
            assert m.train_until + reach <= min(m.test.event_at)
        else:
            total = m.row_count + m.test_row_count
            assert m.test_row_count == pytest.approx(total * 0.2, abs=1)
        assert m.train_from <= m.train_until <= min(m.test.event_at)
        assert max(m.test.event_at) == m.test_until
        assert m.test.event_at == sorted(m.test.event_at)


def test_classifiers_train_only_on_settled_final_outcomes(ml_engine: Engine) -> None:
    frame, y = dataset(ml_engine, ORDER_STATUS)
    assert set(y.tolist()) == {"cancelled", "delivered", "returned"}
    with ml_engine.connect() as conn:
        newest = conn.execute(sa.text("SELECT max(ordered_at) FROM dw.fact_orders")).scalar_one()
        unsettled = conn.execute(
            sa.text("SELECT count(*) FROM dw.fact_orders WHERE status IN ('pending', 'paid')")
        ).scalar_one()
    assert unsettled > 0  # the data has open orders, and none of them is a training row
    assert max(frame.event_at) <= newest - dt.timedelta(days=ORDER_STATUS.settle_days)
    _, y_support = dataset(ml_engine, SUPPORT_STATUS)
    assert set(y_support.tolist()) == {"resolved", "unresolved"}


def test_every_model_beats_its_baseline_clearly(trained: dict[str, TrainedModel]) -> None:
    status = trained["order_status"].metrics
    assert status["macro_f1"] is not None and status["roc_auc"] is not None
    assert status["baseline_macro_f1"] is not None
    assert status["macro_f1"] > status["baseline_macro_f1"] + 0.05
    assert status["roc_auc"] > 0.62
    support = trained["support_status"].metrics
    assert support["macro_f1"] is not None and support["roc_auc"] is not None
    assert support["baseline_macro_f1"] is not None
    assert support["macro_f1"] > support["baseline_macro_f1"] + 0.1
    assert support["roc_auc"] > 0.62  # ~130 test tickets: AUC moves a few points with the data
    value = trained["order_value"].metrics
    assert value["mae"] is not None and value["baseline_mae"] is not None
    assert value["mae"] < 0.8 * value["baseline_mae"]
    assert value["r2"] is not None and value["r2"] > 0.2


def test_importances_name_every_feature_once_and_sum_to_one(
    trained: dict[str, TrainedModel],
) -> None:
    for name, m in trained.items():
        features = [i["feature"] for i in m.feature_importances]
        assert sorted(features) == sorted(SPECS[name].feature_names)
        assert sum(i["importance"] for i in m.feature_importances) == pytest.approx(1.0)
    # the planted ticket-outcome drivers dominate the linear model
    top = [i["feature"] for i in trained["support_status"].feature_importances[:3]]
    assert set(top) == {"category", "priority", "channel"}


def test_features_use_only_what_was_known_when_the_order_was_placed(ml_engine: Engine) -> None:
    with ml_engine.connect() as conn:
        cid, first, second = conn.execute(
            sa.text(
                "SELECT customer_id, (array_agg(order_id ORDER BY ordered_at, order_id))[1],"
                " (array_agg(order_id ORDER BY ordered_at, order_id))[2]"
                " FROM dw.fact_orders GROUP BY customer_id HAVING count(*) >= 5 LIMIT 1"
            )
        ).one()
        before = load_ids(conn, "orders.sql", [first, second], _kinds())
        # a later return and a later order of the same customer must not change them
        conn.execute(
            sa.text(
                "INSERT INTO dw.fact_orders SELECT order_id + 10000000, date_key,"
                " ordered_at + interval '1 hour', customer_key, customer_id, 'cancelled',"
                " channel, payment_method, item_count, line_count, gross, discount, net,"
                " NULL, NULL, true, false FROM dw.fact_orders WHERE order_id = :id"
            ),
            {"id": second},
        )
        after = load_ids(conn, "orders.sql", [first, second], _kinds())
        conn.rollback()
    assert before.columns["prior_orders"].tolist() == [0.0, 1.0]
    for name in before.columns:
        np.testing.assert_array_equal(before.columns[name], after.columns[name])
    assert cid > 0


def _kinds() -> dict[str, FeatureKind]:
    from ml.features import kinds_of

    return dict(kinds_of(ORDER_STATUS, ORDER_VALUE))


def test_training_an_empty_warehouse_fails_with_a_clear_error(
    fresh_database: object,
) -> None:
    from db.engine import make_engine

    url = fresh_database()  # type: ignore[operator]
    with pytest.raises(InsufficientDataError, match="no events yet"):
        train(make_engine(url), ORDER_STATUS)


def test_one_training_run_runs_the_order_feature_query_once_and_slices_it_exactly(
    ml_engine: Engine,
) -> None:
    from ml.train import FeatureCache

    alone = {s.name: dataset(ml_engine, s) for s in (ORDER_STATUS, ORDER_VALUE)}
    queries: list[str] = []

    def count(_c: object, _cur: object, statement: str, *_: object) -> None:
        if "WITH scope AS" in statement:
            queries.append(statement)

    cache = FeatureCache()
    sa.event.listen(ml_engine, "before_cursor_execute", count)
    try:
        shared = {s.name: dataset(ml_engine, s, cache) for s in (ORDER_STATUS, ORDER_VALUE)}
    finally:
        sa.event.remove(ml_engine, "before_cursor_execute", count)
    assert len(queries) == 1
    for name, (frame, y) in alone.items():
        got, got_y = shared[name]
        np.testing.assert_array_equal(got.keys, frame.keys)
        np.testing.assert_array_equal(got_y, y)
        assert got.event_at == frame.event_at
        for column, values in frame.columns.items():
            np.testing.assert_array_equal(got.columns[column], values)
    # the status model leaves out the unsettled newest orders the value model keeps
    assert len(shared["order_status"][0]) < len(shared["order_value"][0])


def test_a_forest_tree_draws_at_most_the_bounded_sample(
    ml_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ml.train
    from ml.train import build_pipeline, fit, frame_to_pandas

    monkeypatch.setattr(ml.train, "MAX_SAMPLES_PER_TREE", 500)
    frame, y = dataset(ml_engine, ORDER_VALUE)
    assert len(frame) > 2_000
    pipeline = build_pipeline(ORDER_VALUE, rows=len(frame))
    fit(pipeline, frame_to_pandas(frame, ORDER_VALUE), y, lambda done, total: None)
    trees = pipeline.named_steps["model"].estimators_
    assert len(trees) == ml.train.FOREST["n_estimators"]
    assert max(t.tree_.weighted_n_node_samples[0] for t in trees) == 500
    # fewer rows than the bound: every tree draws as many rows as there are
    assert build_pipeline(ORDER_VALUE, rows=400).named_steps["model"].max_samples is None


def test_growing_a_forest_in_steps_builds_the_forest_of_one_fit(ml_engine: Engine) -> None:
    from ml.train import build_pipeline, fit, frame_to_pandas, partly_balanced_weights

    frame, y = dataset(ml_engine, ORDER_STATUS)
    x = frame_to_pandas(frame, ORDER_STATUS)
    steps: list[tuple[int, int]] = []
    stepped = build_pipeline(ORDER_STATUS, rows=len(frame))
    fit(stepped, x, y, lambda done, total: steps.append((done, total)))
    at_once = build_pipeline(ORDER_STATUS, rows=len(frame))
    at_once.fit(x, y, model__sample_weight=partly_balanced_weights(y))
    trees = FOREST["n_estimators"]
    assert steps[0] == (0, trees) and steps[-1] == (trees, trees)
    assert len(steps) == 1 + math.ceil(trees / TREES_PER_STEP)
    pairs = zip(
        stepped.named_steps["model"].estimators_,
        at_once.named_steps["model"].estimators_,
        strict=True,
    )
    for a, b in pairs:  # the same trees: same splits, same leaves
        np.testing.assert_array_equal(a.tree_.feature, b.tree_.feature)
        np.testing.assert_array_equal(a.tree_.threshold, b.tree_.threshold)
        np.testing.assert_array_equal(a.tree_.value, b.tree_.value)
    # (the mean over trees is summed in another order: equal to rounding)
    np.testing.assert_allclose(stepped.predict_proba(x), at_once.predict_proba(x), rtol=1e-12)


def test_training_reports_each_phase_in_order_and_times_it(ml_engine: Engine) -> None:
    heard: list[tuple[str, int, int]] = []
    m = train(ml_engine, ORDER_VALUE, progress=lambda *step: heard.append(step))
    phases = list(dict.fromkeys(phase for phase, _, _ in heard))
    assert phases == ["features", "fit", "evaluate", "export"]
    trees = FOREST["n_estimators"]
    assert ("fit", trees, trees) in heard and heard[-1] == ("export", 1, 1)
    assert set(m.seconds) == {"features", "fit", "evaluate", "export", "total"}
    assert m.seconds["total"] >= sum(v for k, v in m.seconds.items() if k != "total") * 0.99
    # the export leaves the fitted forest as it was (bootstrap is hidden only while converting)
    assert m.pipeline.named_steps["model"].bootstrap is True
