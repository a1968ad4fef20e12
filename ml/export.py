"""sklearn pipeline → ONNX bytes (skl2onnx, pinned in pyproject).

One graph input per feature, shaped ``[None, 1]``: float32 for numerics, strings for
categories, named like the feature. Classifiers output ``label`` and ``probabilities``
(a plain tensor: ``zipmap`` off).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.pipeline import Pipeline

from ml.specs import FeatureKind, ModelSpec, Task

TARGET_OPSET = 17


def initial_types(spec: ModelSpec) -> list[tuple[str, Any]]:
    return [
        (
            f.name,
            FloatTensorType([None, 1])
            if f.kind is FeatureKind.NUMERIC
            else StringTensorType([None, 1]),
        )
        for f in spec.features
    ]


@contextmanager
def _no_bootstrap_replay(estimator: Any) -> Iterator[None]:
    """skl2onnx walks the pipeline with ``dir()``, and sklearn's ``dir()`` evaluates every
    property, a forest's ``estimators_samples_`` too: it re-draws the bootstrap sample of
    every tree (weighted draws over all training rows), four times per export - 16 s of a
    20 s export at 150k rows. The trees are built; conversion never uses those samples.
    Marking the forest as not bootstrapped while converting makes that property cheap."""
    if not isinstance(estimator, RandomForestClassifier | RandomForestRegressor):
        yield
        return
    bootstrap = estimator.bootstrap
    estimator.bootstrap = False
    try:
        yield
    finally:
        estimator.bootstrap = bootstrap


def export(pipeline: Pipeline, spec: ModelSpec) -> bytes:
    estimator = pipeline.steps[-1][1]
    options: dict[int, dict[str, Any]] = {}
    if spec.task is Task.CLASSIFICATION:
        options[id(estimator)] = {"zipmap": False}
    with _no_bootstrap_replay(estimator):
        model = to_onnx(
            pipeline,
            initial_types=initial_types(spec),
            options=options,
            target_opset={"": TARGET_OPSET, "ai.onnx.ml": 3},
        )
    data: bytes = model.SerializeToString()
    return data
