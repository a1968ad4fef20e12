"""``churn_risk``: features as of a cut-off, a time split without leakage, better ranking
and calibration than recency alone on the seeded shop (whose lapsing customers order less
and less before they stop, docs/data.md), and ONNX parity with the sklearn pipeline."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ml import churn
from ml.specs import CHURN_RISK
from ml.train import dataset, frame_to_pandas, time_split
from tests.ml.test_parity import _scorer, _with_surprises


@pytest.fixture(scope="module")
def comparison(ml_engine: Engine) -> churn.Comparison:
    return churn.compare(ml_engine)


def test_training_rows_end_before_the_evaluation_window(ml_engine: Engine) -> None:
    frame, y = dataset(ml_engine, CHURN_RISK)
    train_ix, test_ix = time_split(frame, CHURN_RISK)
    last_train = max(frame.event_at[i] for i in train_ix)
    first_test = min(frame.event_at[i] for i in test_ix)
    assert last_train + dt.timedelta(days=90) <= first_test
    # every cut-off's target is settled: 90 days of data after it
    with ml_engine.connect() as conn:
        newest = conn.execute(sa.text("SELECT max(ordered_at) FROM dw.fact_orders")).scalar_one()
    assert max(frame.event_at) <= newest - dt.timedelta(days=90)
    assert set(y.tolist()) == {"active", "churned"}


def test_features_only_see_orders_before_the_cut_off(ml_engine: Engine) -> None:
    frame, _ = dataset(ml_engine, CHURN_RISK)
    pick = np.linspace(0, len(frame) - 1, 40).astype(int)
    with ml_engine.connect() as conn:
        for i in pick:
            key, cutoff = int(frame.keys[i]), frame.event_at[i]
            orders, last = conn.execute(
                sa.text(
                    "SELECT count(*), max(ordered_at) FROM dw.fact_orders WHERE customer_id = :c"
                    " AND NOT is_cancelled AND ordered_at < :t"
                ),
                {"c": key, "t": cutoff},
            ).one()
            assert frame.columns["orders_total"][i] == orders
            days = (cutoff - last).total_seconds() / 86400
            assert frame.columns["recency_days"][i] == pytest.approx(days, rel=1e-5)


def test_model_beats_recency_alone_in_ranking_and_calibration(
    comparison: churn.Comparison,
) -> None:
    m, b = comparison.model, comparison.recency_baseline
    assert m.roc_auc > b.roc_auc + 0.02, (m, b)
    assert m.brier < b.brier, (m, b)
    assert m.ece < 0.1, m
    assert 0.2 < comparison.churn_rate < 0.8


def test_onnx_probabilities_match_sklearn(comparison: churn.Comparison) -> None:
    m = comparison.trained
    rows = _with_surprises(m.test, m.spec.features)
    x = frame_to_pandas(rows, m.spec)
    expected = m.pipeline.predict_proba(x)
    got = _scorer(m).score(rows.inputs(m.spec))
    assert got.labels == [str(v) for v in m.pipeline.predict(x)]
    assert got.probabilities is not None
    np.testing.assert_allclose(got.probabilities, expected, rtol=0, atol=1e-5)
