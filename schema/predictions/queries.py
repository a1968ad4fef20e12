"""Query roots: what-if predictions for integrators, and the model registry."""

from __future__ import annotations

from typing import cast

import strawberry
from strawberry.scalars import JSON

from ml import batch
from ml.registry import list_versions
from ml.scorer import Scores
from ml.specs import ORDER_STATUS, ORDER_VALUE, SUPPORT_STATUS, ModelSpec
from schema.context import Info
from schema.fields import described
from schema.predictions.inputs import (
    OrderStatusInput,
    OrderValueInput,
    SupportStatusInput,
    to_row,
)
from schema.predictions.resolvers import Prediction, as_type, scorer
from schema.predictions.types import (
    FeatureImportance,
    Model,
    StatusPrediction,
    ValuePrediction,
)


def _what_if(info: Info, spec: ModelSpec, value: object) -> Prediction:
    row = to_row(spec, value)  # validates before the model is even looked up
    model = scorer(info, spec)
    scores: Scores = model.score(row)
    found = batch.predicted(model, scores, 0)
    batch.log(info.context.engine, "what_if", [(None, found)], info.context.actor)
    return as_type(found)


@strawberry.type
class PredictionQueries:
    @described("Predict an order's final outcome from its features.")
    def predict_order_status(self, info: Info, input: OrderStatusInput) -> StatusPrediction:
        result = _what_if(info, ORDER_STATUS, input)
        assert isinstance(result, StatusPrediction)
        return result

    @described("Predict whether a support ticket ends resolved.")
    def predict_support_status(self, info: Info, input: SupportStatusInput) -> StatusPrediction:
        result = _what_if(info, SUPPORT_STATUS, input)
        assert isinstance(result, StatusPrediction)
        return result

    @described("Estimate an order's total before checkout.")
    def predict_order_value(self, info: Info, input: OrderValueInput) -> ValuePrediction:
        result = _what_if(info, ORDER_VALUE, input)
        assert isinstance(result, ValuePrediction)
        return result

    @described("Registered model versions, newest first per model.")
    async def models(
        self, info: Info, name: str | None = None, active_only: bool = False
    ) -> list[Model]:
        versions = await info.context.db.run(lambda conn: list_versions(conn, name))
        return [
            Model(
                name=v.name,
                version=v.version,
                algorithm=v.algorithm,
                trained_at=v.trained_at,
                metrics=cast(JSON, v.metrics),
                features=[f["name"] for f in v.features],
                feature_importances=[
                    FeatureImportance(feature=i["feature"], importance=i["importance"])
                    for i in v.feature_importances
                ],
                active=v.active,
                training_rows=v.row_count,
                training_from=v.train_from,
                training_until=v.train_until,
            )
            for v in versions
            if v.active or not active_only
        ]
