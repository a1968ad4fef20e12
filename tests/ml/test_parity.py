"""ONNX parity: the exported graph predicts what the sklearn pipeline predicts, on held-out
rows, rows with categories never seen in training and rows with missing values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ml import scorer
from ml.features import FeatureFrame
from ml.specs import FeatureKind
from ml.train import TrainedModel, frame_to_pandas


def _with_surprises(frame: FeatureFrame, spec_features: Any) -> FeatureFrame:
    """The held-out rows, then a copy with every category unseen, then one with every
    numeric missing, then one mixing both on alternate features."""
    parts = [frame.columns]
    unseen, missing, mixed = {}, {}, {}
    for i, f in enumerate(spec_features):
        col = frame.columns[f.name]
        if f.kind is FeatureKind.CATEGORY:
            unseen[f.name] = np.full(col.shape, "never-seen-before", dtype=object)
            missing[f.name] = col
            mixed[f.name] = unseen[f.name] if i % 2 else np.full(col.shape, "", dtype=object)
        else:
            unseen[f.name] = col
            missing[f.name] = np.full(col.shape, np.nan, dtype=np.float32)
            mixed[f.name] = missing[f.name] if i % 2 else col
    parts += [unseen, missing, mixed]
    n = len(frame)
    return FeatureFrame(
        keys=np.arange(4 * n, dtype=np.int64),
        event_at=frame.event_at * 4,
        columns={f.name: np.concatenate([p[f.name] for p in parts]) for f in spec_features},
    )


def _scorer(m: TrainedModel) -> scorer.Scorer:
    import hashlib

    return scorer.load(
        m.spec,
        1,
        m.onnx,
        hashlib.sha256(m.onnx).hexdigest(),
        [f.as_json() for f in m.spec.features],
        m.classes,
    )


@pytest.mark.parametrize("name", ["order_status", "support_status"])
def test_classifier_labels_identical_and_probabilities_within_1e5(
    trained: dict[str, TrainedModel], name: str
) -> None:
    m = trained[name]
    rows = _with_surprises(m.test, m.spec.features)
    x = frame_to_pandas(rows, m.spec)
    expected_proba = m.pipeline.predict_proba(x)
    expected_labels = m.pipeline.predict(x)
    got = _scorer(m).score(rows.inputs(m.spec))
    assert got.labels is not None and got.probabilities is not None
    assert got.probabilities.shape == expected_proba.shape
    assert got.labels == [str(v) for v in expected_labels]
    np.testing.assert_allclose(got.probabilities, expected_proba, rtol=0, atol=1e-5)
    assert len(rows) >= 400  # enough rows for the comparison to mean something


def test_regressor_within_1e5_relative_and_no_row_beyond_1e4(
    trained: dict[str, TrainedModel],
) -> None:
    m = trained["order_value"]
    rows = _with_surprises(m.test, m.spec.features)
    expected = m.pipeline.predict(frame_to_pandas(rows, m.spec))
    got = _scorer(m).score(rows.inputs(m.spec)).values
    assert got is not None
    rel = np.abs(got - expected) / np.maximum(np.abs(expected), 1e-9)
    assert float(np.median(rel)) <= 1e-5
    assert float(np.max(rel)) <= 1e-4


def test_unseen_categories_and_missing_values_still_predict(
    trained: dict[str, TrainedModel],
) -> None:
    for m in trained.values():
        rows = _with_surprises(m.test, m.spec.features)
        scores = _scorer(m).score(rows.inputs(m.spec))
        if scores.probabilities is not None:
            assert np.all(np.isfinite(scores.probabilities))
            np.testing.assert_allclose(scores.probabilities.sum(axis=1), 1.0, atol=1e-5)
        else:
            assert scores.values is not None and np.all(np.isfinite(scores.values))


def test_forest_sizes_and_session_load_stay_modest(trained: dict[str, TrainedModel]) -> None:
    import time

    for m in trained.values():
        assert len(m.onnx) < 40_000_000
        t0 = time.perf_counter()
        _scorer(m)
        assert time.perf_counter() - t0 < 5.0
