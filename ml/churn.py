"""``churn_risk`` against a recency-only baseline: ROC AUC and calibration on the same
time split (``ml.train.time_split``: the newest 20% of cut-offs evaluate; training rows
whose 90-day window reaches the evaluation period are dropped).

The baseline is a logistic regression of the target on ``log1p(recency_days)`` alone, fit
on the training rows: the rule of thumb "the longer since the last order, the likelier
gone", calibrated. Calibration is the expected calibration error over ten equal-width
probability bins (the mean |predicted - observed| weighted by the bin's rows) and the
Brier score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sqlalchemy.engine import Engine

from ml.specs import CHURN_RISK
from ml.train import TrainedModel, dataset, frame_to_pandas, time_split, train

Array = np.ndarray[Any, np.dtype[Any]]
BINS = 10


@dataclass(frozen=True)
class Scores:
    roc_auc: float
    brier: float
    ece: float

    def as_json(self) -> dict[str, float]:
        return {"roc_auc": self.roc_auc, "brier": self.brier, "ece": self.ece}


@dataclass(frozen=True)
class Comparison:
    model: Scores
    recency_baseline: Scores
    churn_rate: float  # observed share of churned in the evaluation rows
    train_rows: int
    test_rows: int
    trained: TrainedModel


def scores(churned: Array, p: Array) -> Scores:
    bins = np.minimum((p * BINS).astype(int), BINS - 1)
    ece = sum(
        abs(float(p[bins == b].mean()) - float(churned[bins == b].mean())) * (bins == b).mean()
        for b in range(BINS)
        if (bins == b).any()
    )
    return Scores(
        roc_auc=float(roc_auc_score(churned, p)),
        brier=float(brier_score_loss(churned, p)),
        ece=float(ece),
    )


def compare(engine: Engine) -> Comparison:
    """Train ``churn_risk`` and the recency baseline on the same split; score both."""
    trained = train(engine, CHURN_RISK)
    frame, y = dataset(engine, CHURN_RISK)
    train_ix, test_ix = time_split(frame, CHURN_RISK)
    churned = y == "churned"
    recency = np.log1p(np.nan_to_num(frame.columns["recency_days"].astype(np.float64)))
    baseline = LogisticRegression().fit(recency[train_ix].reshape(-1, 1), churned[train_ix])
    p_base = baseline.predict_proba(recency[test_ix].reshape(-1, 1))[:, 1]
    assert trained.classes is not None
    x_test = frame_to_pandas(frame.take(test_ix), CHURN_RISK)
    p_model = trained.pipeline.predict_proba(x_test)[:, trained.classes.index("churned")]
    return Comparison(
        model=scores(churned[test_ix], p_model),
        recency_baseline=scores(churned[test_ix], p_base),
        churn_rate=float(churned[test_ix].mean()),
        train_rows=len(train_ix),
        test_rows=len(test_ix),
        trained=trained,
    )
