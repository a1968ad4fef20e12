"""Serving: one onnxruntime session per model version, validated when loaded.

Imports only numpy and onnxruntime (and our own light modules): the API server scores
without scikit-learn. ``Scorer.runs`` counts ``session.run`` calls (batching is tested
by it). Inputs are the spec's columns, each ``[n, 1]``: float32 numerics (NaN = missing),
str categories ("" or any unknown value is ignored by the model's one-hot encoder).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from ml.errors import InvalidModelError
from ml.specs import FeatureKind, ModelSpec, Task

Array = np.ndarray[Any, np.dtype[Any]]

_ONNX_TYPES = {FeatureKind.NUMERIC: "tensor(float)", FeatureKind.CATEGORY: "tensor(string)"}


@dataclass(frozen=True)
class Scores:
    """A batch of predictions, in input row order."""

    labels: list[str] | None  # classifiers
    probabilities: Array | None  # classifiers: [n, len(classes)]
    values: Array | None  # regressors: [n]


@dataclass
class Scorer:
    spec: ModelSpec
    version: int
    classes: tuple[str, ...]
    sha256: str
    session: ort.InferenceSession
    runs: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def score(self, inputs: Mapping[str, Array]) -> Scores:
        """Run the model once over every row of ``inputs`` (one [n, 1] array per feature)."""
        feeds = {f.name: _as_input(f.kind, inputs[f.name]) for f in self.spec.features}
        with self._lock:
            self.runs += 1
        outputs = self.session.run(None, feeds)
        if self.spec.task is Task.CLASSIFICATION:
            labels = [str(v) for v in np.asarray(outputs[0]).reshape(-1)]
            proba = np.asarray(outputs[1], dtype=np.float64)
            return Scores(labels=labels, probabilities=proba, values=None)
        values = np.asarray(outputs[0], dtype=np.float64).reshape(-1)
        return Scores(labels=None, probabilities=None, values=values)


def _as_input(kind: FeatureKind, column: Array) -> Array:
    if kind is FeatureKind.NUMERIC:
        return np.asarray(column, dtype=np.float32).reshape(-1, 1)
    return np.asarray(column, dtype=object).astype(str).reshape(-1, 1)


def load(
    spec: ModelSpec,
    version: int,
    onnx: bytes,
    sha256: str,
    features: Sequence[Mapping[str, Any]],
    classes: Sequence[str] | None,
) -> Scorer:
    """A validated scorer, or InvalidModelError saying what is wrong with the version."""
    what = f"model {spec.name} version {version}"
    digest = hashlib.sha256(onnx).hexdigest()
    if digest != sha256:
        raise InvalidModelError(
            f"{what}: sha256 of the ONNX bytes is {digest[:12]}…, the registry says {sha256[:12]}…",
            name=spec.name,
            version=version,
            reason="sha256_mismatch",
        )
    expected = [f.as_json() for f in spec.features]
    if [dict(f) for f in features] != expected:
        raise InvalidModelError(
            f"{what}: its recorded features differ from the {spec.name} spec",
            name=spec.name,
            version=version,
            reason="features_mismatch",
        )
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InvalidModelError(
            f"{what}: the ONNX bytes do not load in onnxruntime: {first}",
            name=spec.name,
            version=version,
            reason="does_not_load",
        ) from None
    got = [(i.name, i.type, list(i.shape)[1:]) for i in session.get_inputs()]
    want = [(f.name, _ONNX_TYPES[f.kind], [1]) for f in spec.features]
    if got != want:
        raise InvalidModelError(
            f"{what}: graph inputs {[g[:2] for g in got]} do not match the spec's "
            f"{[w[:2] for w in want]}",
            name=spec.name,
            version=version,
            reason="inputs_mismatch",
        )
    labels = tuple(classes or ())
    n_out = len(session.get_outputs())
    if spec.task is Task.CLASSIFICATION:
        if n_out != 2 or not labels or not set(labels) <= set(spec.classes):
            raise InvalidModelError(
                f"{what}: a classifier needs outputs (label, probabilities) and classes "
                f"among {list(spec.classes)}",
                name=spec.name,
                version=version,
                reason="outputs_mismatch",
            )
    elif n_out != 1:
        raise InvalidModelError(
            f"{what}: a regressor has one output, this graph has {n_out}",
            name=spec.name,
            version=version,
            reason="outputs_mismatch",
        )
    scorer = Scorer(spec=spec, version=version, classes=labels, sha256=sha256, session=session)
    _smoke(scorer, what)
    scorer.runs = 0
    return scorer


def _smoke(scorer: Scorer, what: str) -> None:
    """One row of missing values must score (and give one probability per class)."""
    row = {
        f.name: np.array([[np.nan]] if f.kind is FeatureKind.NUMERIC else [[""]])
        for f in scorer.spec.features
    }
    try:
        scores = scorer.score(row)
    except Exception as exc:
        raise InvalidModelError(
            f"{what}: scoring a test row failed: {str(exc).strip()[:200]}",
            name=scorer.spec.name,
            version=scorer.version,
            reason="does_not_score",
        ) from None
    if scores.probabilities is not None and scores.probabilities.shape != (
        1,
        len(scorer.classes),
    ):
        raise InvalidModelError(
            f"{what}: probabilities have shape {scores.probabilities.shape}, expected "
            f"(1, {len(scorer.classes)})",
            name=scorer.spec.name,
            version=scorer.version,
            reason="outputs_mismatch",
        )
