"""Metrics of a trained model on the held-out (newest) rows, beside a naive baseline.

Classifiers: accuracy, macro F1, ROC AUC (one-vs-rest macro for more than two classes) and
the same for the majority class of the training rows (its ROC AUC is 0.5: one constant
score). Regressors: MAE, RMSE, R² and the same for predicting the training mean.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

Array = np.ndarray[Any, np.dtype[Any]]


def _auc(y: Array, proba: Array, classes: list[str]) -> float | None:
    present = set(y.tolist())
    if len(present) < 2:
        return None  # undefined with one class in the test rows
    if len(classes) == 2:
        return float(roc_auc_score(y == classes[1], proba[:, 1]))
    if present != set(classes):
        return None
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))


def classification(
    y_train: Array, y_test: Array, predicted: Array, proba: Array, classes: list[str]
) -> dict[str, float | None]:
    values, counts = np.unique(y_train, return_counts=True)
    majority = values[np.argmax(counts)]
    base = np.full(y_test.shape, majority, dtype=object)
    labels = list(classes)
    return {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "macro_f1": float(f1_score(y_test, predicted, average="macro", labels=labels)),
        "roc_auc": _auc(y_test, proba, labels),
        "baseline_accuracy": float(accuracy_score(y_test, base)),
        "baseline_macro_f1": float(
            f1_score(y_test, base, average="macro", labels=labels, zero_division=0)
        ),
        "baseline_roc_auc": 0.5,
    }


def regression(y_train: Array, y_test: Array, predicted: Array) -> dict[str, float | None]:
    base = np.full(y_test.shape, float(np.mean(y_train)))
    return {
        "mae": float(mean_absolute_error(y_test, predicted)),
        "rmse": math.sqrt(float(mean_squared_error(y_test, predicted))),
        "r2": float(r2_score(y_test, predicted)),
        "baseline_mae": float(mean_absolute_error(y_test, base)),
        "baseline_rmse": math.sqrt(float(mean_squared_error(y_test, base))),
        "baseline_r2": float(r2_score(y_test, base)),
    }
