"""sklearn pipeline → ONNX bytes (skl2onnx, pinned in pyproject).

One graph input per feature, shaped ``[None, 1]``: float32 for numerics, strings for
categories, named like the feature. Classifiers output ``label`` and ``probabilities``
(a plain tensor: ``zipmap`` off).
"""

from __future__ import annotations

from typing import Any

from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
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


def export(pipeline: Pipeline, spec: ModelSpec) -> bytes:
    estimator = pipeline.steps[-1][1]
    options: dict[int, dict[str, Any]] = {}
    if spec.task is Task.CLASSIFICATION:
        options[id(estimator)] = {"zipmap": False}
    model = to_onnx(
        pipeline,
        initial_types=initial_types(spec),
        options=options,
        target_opset={"": TARGET_OPSET, "ai.onnx.ml": 3},
    )
    data: bytes = model.SerializeToString()
    return data
