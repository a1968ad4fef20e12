"""Train, evaluate and export one model from the warehouse.

Data: the spec's feature query over every event old enough to have a final outcome
(``settle_days`` before the newest event in ``dw``). Split by time: the oldest 80% train,
the newest 20% evaluate; the exported model is the one evaluated. Numerics are float32
from the query on (so ONNX, which computes in float32, sees the same numbers).

Pipelines: a ColumnTransformer with an explicit median SimpleImputer for numerics and a
OneHotEncoder(handle_unknown="ignore") for categories; StandardScaler only in front of
the linear model, never in front of trees.

Cost at 1,000,000 orders (docs/models.md): the forests are bounded so that training takes
minutes, not half an hour: 50 trees, each drawing at most ``MAX_SAMPLES_PER_TREE`` rows (so
a tree costs the same at 200k or 1M rows), leaves of at least ``min_samples_leaf`` rows and
a capped depth (smaller trees: a smaller ONNX file that scores faster). The orders feature
query runs once per ``cdms ml train`` for the two order models (``FeatureCache``). Phases
(features, fit, evaluate, export) are timed and reported.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sqlalchemy.engine import Engine

from ml import evaluate
from ml.errors import InsufficientDataError
from ml.export import export
from ml.features import FeatureFrame, kinds_of, statement, to_frame
from ml.specs import SPECS, FeatureKind, ModelSpec, Task

log = logging.getLogger("cdms.ml")

TEST_SHARE = 0.2
MIN_TRAIN_ROWS = 100
MIN_TEST_ROWS = 20
BALANCE_POWER = 0.75
# Forest bounds, measured at 200k and 1M orders (docs/models.md: time and metric per choice).
# 50 trees score as well as 100 on every data set measured and halve fit, ONNX size and
# scoring time (a 500-order page runs two forests per request).
# One core: sklearn 1.9's threaded Parallel (n_jobs=-1) races on the process-wide warnings
# filters on Python 3.11 (one 1M run printed ~140 spurious "delayed should be used with
# Parallel" UserWarnings, which pytest's filterwarnings=error would turn into failures), and
# on this shared 2-core machine two threads gained 7% (docs/models.md).
FOREST: dict[str, Any] = {"n_estimators": 50, "max_depth": 10, "random_state": 0, "n_jobs": 1}
CLASSIFIER: dict[str, Any] = {**FOREST, "min_samples_leaf": 20}  # smooth rare-class odds
REGRESSOR: dict[str, Any] = {**FOREST, "min_samples_leaf": 20, "max_features": 0.5}
MAX_SAMPLES_PER_TREE = 50_000  # bootstrap draws per tree; fewer rows than this: all of them
TREES_PER_STEP = 10  # the fit grows the forest this many trees at a time (progress)

PHASES = ("features", "fit", "evaluate", "export")
# phase, done, total: called at the start of a phase (done 0) and as it advances
Progress = Callable[[str, int, int], None]

_NEWEST_EVENT = {
    "orders.sql": "SELECT max(ordered_at) FROM dw.fact_orders",
    "tickets.sql": "SELECT max(opened_at) FROM dw.fact_support",
    "churn.sql": "SELECT max(ordered_at) FROM dw.fact_orders",
}


@dataclass
class TrainedModel:
    spec: ModelSpec
    pipeline: Pipeline
    onnx: bytes
    classes: list[str] | None
    metrics: dict[str, float | None]
    feature_importances: list[dict[str, Any]]
    train_from: dt.datetime
    train_until: dt.datetime
    test_until: dt.datetime
    row_count: int
    test_row_count: int
    test: FeatureFrame  # the held-out rows (parity checks run on them)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def headline(self) -> float:
        value = self.metrics[self.spec.headline_metric]
        assert value is not None
        return value


def build_pipeline(spec: ModelSpec, rows: int | None = None) -> Pipeline:
    """The unfitted pipeline of ``spec``; ``rows``: training rows (bounds the forest's
    bootstrap sample to ``MAX_SAMPLES_PER_TREE``)."""
    numeric = [f.name for f in spec.features if f.kind is FeatureKind.NUMERIC]
    categories = [f.name for f in spec.features if f.kind is FeatureKind.CATEGORY]
    linear = spec.algorithm == "LogisticRegression"
    # trees compute in float32: one-hot columns in float32 spare a float64 copy of the matrix
    dtype = np.float64 if linear else np.float32
    num_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if linear:
        num_steps.append(("scale", StandardScaler()))
    prep = ColumnTransformer(
        [
            ("num", Pipeline(num_steps), numeric),
            (
                "cat",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=dtype),
                categories,
            ),
        ]
    )
    bounded = (
        {}
        if rows is None or rows <= MAX_SAMPLES_PER_TREE
        else {"max_samples": MAX_SAMPLES_PER_TREE}
    )
    estimator: Any
    if spec.algorithm == "RandomForestClassifier":
        estimator = RandomForestClassifier(**CLASSIFIER, **bounded)
    elif spec.algorithm == "RandomForestRegressor":
        estimator = RandomForestRegressor(**REGRESSOR, **bounded)
    elif linear:
        estimator = LogisticRegression(max_iter=1000, class_weight="balanced")
    else:  # pragma: no cover - specs are fixed
        raise ValueError(spec.algorithm)
    return Pipeline([("prep", prep), ("model", estimator)])


def partly_balanced_weights(y: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Per-row weights ``(n / (k * n_class)) ** 0.75``: rare outcomes count more, but less
    than with full balancing (which over-predicts them: accuracy falls to ~0.6); with none
    (or a square root) the forest only ever predicts 'delivered'. 0.75 gave the best macro F1
    on three seeds/sizes (docs/models.md)."""
    values, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    weights = (len(y) / (len(values) * counts)) ** BALANCE_POWER
    out: np.ndarray[Any, Any] = weights[inverse]
    return out


def frame_to_pandas(frame: FeatureFrame, spec: ModelSpec) -> pd.DataFrame:
    return pd.DataFrame({f.name: frame.columns[f.name] for f in spec.features})


_DW_TABLES = (
    "fact_orders", "fact_sales", "fact_returns", "fact_support",
    "dim_customer", "dim_product", "dim_date",
)  # fmt: skip
_STALE_STATS = sa.text(
    "SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'dw'"
    " AND relname = ANY(:tables) AND (coalesce(last_analyze, last_autoanalyze) IS NULL"
    " OR n_mod_since_analyze > 0.1 * greatest(n_live_tup, 1000))"
)


def analyze_if_stale(engine: Engine) -> list[str]:
    """ANALYZE the warehouse tables the feature queries read when their statistics are
    missing or stale (right after a load, before autovacuum gets to them): without them the
    planner may nest-loop a whole-table training query (minutes instead of seconds)."""
    with engine.connect() as conn:
        stale = [str(r[0]) for r in conn.execute(_STALE_STATS, {"tables": list(_DW_TABLES)})]
    for name in stale:
        assert name in _DW_TABLES  # a fixed identifier, never a value from outside
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ANALYZE dw.{name}"))
        except sa.exc.DBAPIError as exc:  # not the owner: the planner does without
            log.warning("cannot ANALYZE dw.%s: %s", name, str(exc.orig).strip())
    return stale


class FeatureCache:
    """The feature rows of one training run, one frame per SQL file, each loaded once.

    A frame holds every event up to the newest in ``dw``; a spec takes the events before
    its own settle time. The two order models share ``orders.sql``, so ``cdms ml train``
    runs the most expensive query once, not twice. Slicing is exact: a row's features use
    only what was known at its event time, whatever the scope's end.
    """

    def __init__(self) -> None:
        self._frames: dict[str, tuple[dt.datetime, FeatureFrame]] = {}

    def events(self, engine: Engine, spec: ModelSpec) -> tuple[dt.datetime, FeatureFrame]:
        """(newest event time, every event of ``spec``'s query with every target)."""
        if spec.sql not in self._frames:
            analyze_if_stale(engine)
            with engine.connect() as conn:
                newest = conn.execute(sa.text(_NEWEST_EVENT[spec.sql])).scalar()
                if newest is None:
                    raise InsufficientDataError(
                        f"{spec.name}: the warehouse holds no events yet (run cdms etl run)",
                        model=spec.name,
                    )
                sharing = [s for s in SPECS.values() if s.sql == spec.sql] or [spec]
                rows = conn.execute(
                    statement(spec.sql, "before"), {"until": newest + dt.timedelta(microseconds=1)}
                ).all()
                frame = to_frame(rows, kinds_of(*sharing), sorted({s.target for s in sharing}))
                del rows
            self._frames[spec.sql] = (newest, frame)
        return self._frames[spec.sql]


def dataset(
    engine: Engine, spec: ModelSpec, cache: FeatureCache | None = None
) -> tuple[FeatureFrame, np.ndarray[Any, Any]]:
    """Every settled event of ``spec`` (oldest first) and its target."""
    newest, frame = (cache or FeatureCache()).events(engine, spec)
    until = newest - dt.timedelta(days=spec.settle_days) + dt.timedelta(microseconds=1)
    settled = bisect_left(frame.event_at, until)  # rows are ordered by event time
    if settled < len(frame):
        frame = frame.take(np.arange(settled))
    y = frame.columns[spec.target]
    if spec.task is Task.CLASSIFICATION:
        keep = np.isin(y, np.array(spec.classes, dtype=object))
        frame = frame.take(keep)
        y = y[keep].astype(str)
    else:
        y = y.astype(np.float64)
    return frame, y


def time_split(
    frame: FeatureFrame, spec: ModelSpec
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Row indexes (oldest first) of the training and the evaluation rows: the newest
    ``TEST_SHARE`` evaluate. A spec whose target looks ``horizon_days`` ahead trains only on
    rows whose window closes before the first evaluation row (no leakage)."""
    n = len(frame)
    n_train = n - math.ceil(n * TEST_SHARE)
    order = np.arange(n)
    train_ix, test_ix = order[:n_train], order[n_train:]
    if spec.horizon_days and n_train < n:
        test_from = frame.event_at[n_train]
        reach = dt.timedelta(days=spec.horizon_days)
        train_ix = train_ix[[t + reach <= test_from for t in frame.event_at[:n_train]]]
    return train_ix, test_ix


def _quiet(phase: str, done: int, total: int) -> None:
    return None


def fit(
    pipeline: Pipeline,
    x: pd.DataFrame,
    y: np.ndarray[Any, Any],
    on_trees: Callable[[int, int], None],
) -> None:
    """Fit ``pipeline``; a forest grows ``TREES_PER_STEP`` trees at a time (warm start,
    which builds the same trees as one call) and reports ``on_trees(done, total)``."""
    model = pipeline.named_steps["model"]
    if not isinstance(model, RandomForestClassifier | RandomForestRegressor):
        on_trees(0, 1)
        pipeline.fit(x, y)
        on_trees(1, 1)
        return
    matrix = pipeline.named_steps["prep"].fit_transform(x)
    weights = partly_balanced_weights(y) if isinstance(model, RandomForestClassifier) else None
    total = int(model.n_estimators)
    on_trees(0, total)
    model.set_params(warm_start=True)
    for done in range(TREES_PER_STEP, total + TREES_PER_STEP, TREES_PER_STEP):
        model.set_params(n_estimators=min(done, total))
        model.fit(matrix, y, sample_weight=weights)
        on_trees(min(done, total), total)
    model.set_params(warm_start=False)


def train(
    engine: Engine,
    spec: ModelSpec,
    *,
    cache: FeatureCache | None = None,
    progress: Progress = _quiet,
) -> TrainedModel:
    """Train ``spec`` on the warehouse, evaluate it on the newest 20%, export it to ONNX.

    ``cache`` shares feature rows between the models of one run; ``progress`` hears each
    phase of ``PHASES`` start and advance. ``TrainedModel.seconds`` times every phase.
    """
    t0 = time.perf_counter()
    progress("features", 0, 1)
    frame, y = dataset(engine, spec, cache)
    n = len(frame)
    n_test = math.ceil(n * TEST_SHARE)
    n_train = n - n_test
    if n_train < MIN_TRAIN_ROWS or n_test < MIN_TEST_ROWS:
        raise InsufficientDataError(
            f"{spec.name}: {n} settled events in the warehouse; need at least "
            f"{MIN_TRAIN_ROWS + MIN_TEST_ROWS} to train and evaluate",
            model=spec.name,
            rows=n,
        )
    train_ix, test_ix = time_split(frame, spec)
    n_train = len(train_ix)
    y_train, y_test = y[train_ix], y[test_ix]
    if spec.task is Task.CLASSIFICATION and len(set(y_train.tolist())) < 2:
        raise InsufficientDataError(
            f"{spec.name}: the training events all have the same outcome", model=spec.name
        )
    train_frame, test_frame = frame.take(train_ix), frame.take(test_ix)
    x_train = frame_to_pandas(train_frame, spec)
    x_test = frame_to_pandas(test_frame, spec)
    progress("features", 1, 1)
    t_features = time.perf_counter()

    pipeline = build_pipeline(spec, rows=n_train)
    fit(pipeline, x_train, y_train, lambda done, total: progress("fit", done, total))
    t_fit = time.perf_counter()

    progress("evaluate", 0, 1)
    classes: list[str] | None = None
    if spec.task is Task.CLASSIFICATION:
        classes = [str(c) for c in pipeline.classes_]
        proba = pipeline.predict_proba(x_test)
        predicted = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
        metrics = evaluate.classification(y_train, y_test, predicted, proba, classes)
    else:
        metrics = evaluate.regression(y_train, y_test, pipeline.predict(x_test))
    feature_importances = importances(pipeline, spec)
    progress("evaluate", 1, 1)
    t_evaluate = time.perf_counter()

    progress("export", 0, 1)
    onnx = export(pipeline, spec)
    progress("export", 1, 1)
    t_end = time.perf_counter()
    return TrainedModel(
        spec=spec,
        pipeline=pipeline,
        onnx=onnx,
        classes=classes,
        metrics=metrics,
        feature_importances=feature_importances,
        train_from=train_frame.event_at[0],
        train_until=train_frame.event_at[-1],
        test_until=test_frame.event_at[-1],
        row_count=n_train,
        test_row_count=n_test,
        test=test_frame,
        seconds={
            "features": t_features - t0,
            "fit": t_fit - t_features,
            "evaluate": t_evaluate - t_fit,
            "export": t_end - t_evaluate,
            "total": t_end - t0,
        },
    )


def importances(pipeline: Pipeline, spec: ModelSpec) -> list[dict[str, Any]]:
    """Importance per input feature (one-hot columns summed back), largest first, sum 1.

    Forests: impurity importances; the linear model: |coefficient| on the scaled inputs.
    """
    prep: ColumnTransformer = pipeline.named_steps["prep"]
    model = pipeline.named_steps["model"]
    raw = (
        np.abs(np.asarray(model.coef_)).sum(axis=0)
        if hasattr(model, "coef_")
        else np.asarray(model.feature_importances_)
    )
    numeric = [f.name for f in spec.features if f.kind is FeatureKind.NUMERIC]
    categories = [f.name for f in spec.features if f.kind is FeatureKind.CATEGORY]
    encoder: OneHotEncoder = prep.named_transformers_["cat"]
    widths = [1] * len(numeric) + [len(c) for c in encoder.categories_]
    bounds = np.cumsum([0, *widths])
    per = {
        name: float(raw[bounds[i] : bounds[i + 1]].sum())
        for i, name in enumerate(numeric + categories)
    }
    total = sum(per.values()) or 1.0
    ranked = sorted(per.items(), key=lambda kv: -kv[1])
    return [{"feature": k, "importance": v / total} for k, v in ranked]
