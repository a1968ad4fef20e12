"""GraphQL types of predictions and of the model registry."""

from __future__ import annotations

import datetime as dt

import strawberry
from strawberry.scalars import JSON


@strawberry.type(description="Which model version made a prediction.")
class ModelRef:
    name: str
    version: int


@strawberry.type(description="One class of a classifier and its probability.")
class LabelProbability:
    label: str
    probability: float


@strawberry.type(description="A classifier's prediction: the likeliest label and every class.")
class StatusPrediction:
    label: str
    probability: float = strawberry.field(description="Probability of `label`.")
    probabilities: list[LabelProbability]
    model: ModelRef


@strawberry.type(description="A regressor's prediction.")
class ValuePrediction:
    value: float
    model: ModelRef


@strawberry.type
class FeatureImportance:
    feature: str
    importance: float = strawberry.field(description="Share of the model's importance (sum 1).")


@strawberry.type(description="One registered version of a prediction model.")
class Model:
    name: str
    version: int
    algorithm: str
    trained_at: dt.datetime
    metrics: JSON = strawberry.field(
        description="Evaluation on the newest 20% of events, with the naive baseline's."
    )
    features: list[str]
    feature_importances: list[FeatureImportance]
    active: bool
    training_rows: int
    training_from: dt.datetime | None
    training_until: dt.datetime | None
