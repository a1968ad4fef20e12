"""Resolvers of the prediction fields, batched per request.

Two dataloaders per object kind and request:
- features: one SQL statement (``ml/sql/<kind>.sql`` restricted to ``= ANY(:ids)``) for
  every object whose prediction the query asks for (shared by predictedStatus and
  predictedTotal of orders);
- prediction, per model: the features of every requested object, scored in ONE
  onnxruntime run.

An object the warehouse has not loaded yet (a brand-new order) gets null and the error
NOT_IN_WAREHOUSE (the next ETL run loads it; what-if queries score any features). No active
model: null and MODEL_UNAVAILABLE. The rest of the query answers either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import strawberry
from strawberry.dataloader import DataLoader

from ml.errors import ModelUnavailableError, NotInWarehouseError
from ml.features import FeatureFrame, kinds_of, load_ids
from ml.scorer import Scorer, Scores
from ml.serving import store_for
from ml.specs import ORDER_STATUS, ORDER_VALUE, SUPPORT_STATUS, ModelSpec
from schema.context import Info
from schema.predictions.types import LabelProbability, ModelRef, StatusPrediction, ValuePrediction

Prediction = StatusPrediction | ValuePrediction

# object kind -> (feature query, the models that read it, entity name in errors)
_KINDS: dict[str, tuple[str, tuple[ModelSpec, ...], str]] = {
    "order": ("orders.sql", (ORDER_STATUS, ORDER_VALUE), "order"),
    "ticket": ("tickets.sql", (SUPPORT_STATUS,), "support ticket"),
    "customer": ("customers.sql", (ORDER_VALUE,), "customer"),
}


class HasId(Protocol):
    id: strawberry.ID


def scorer(info: Info, spec: ModelSpec) -> Scorer:
    return store_for(info.context.engine).get(spec.name)


def _features_loader(info: Info, kind: str) -> DataLoader[int, tuple[FeatureFrame, int] | None]:
    sql_file, specs, _ = _KINDS[kind]
    kinds = kinds_of(*specs)

    async def batch(ids: list[int]) -> Sequence[tuple[FeatureFrame, int] | None]:
        frame = await info.context.db.run(lambda conn: load_ids(conn, sql_file, ids, kinds))
        where = {int(k): i for i, k in enumerate(frame.keys)}
        return [(frame, where[i]) if i in where else None for i in ids]

    return info.context.loader(("ml.features", kind), lambda: DataLoader(load_fn=batch))


def _prediction_loader(
    info: Info, kind: str, spec: ModelSpec
) -> DataLoader[int, Prediction | BaseException]:
    features = _features_loader(info, kind)
    entity = _KINDS[kind][2]

    async def batch(ids: list[int]) -> Sequence[Prediction | BaseException]:
        try:
            model = scorer(info, spec)
        except ModelUnavailableError as exc:
            return [exc] * len(ids)
        rows = await features.load_many(ids)
        found = [(pos, r) for pos, r in enumerate(rows) if r is not None]
        out: list[Prediction | BaseException] = [
            NotInWarehouseError(
                f"{entity} {i} is not in the warehouse yet (the next ETL run loads it)",
                entity=entity,
                id=i,
            )
            for i in ids
        ]
        if not found:
            return out
        inputs = {
            f.name: np.array([r[0].columns[f.name][r[1]] for _, r in found]).reshape(-1, 1)
            for f in spec.features
        }
        scores = model.score(inputs)
        for j, (pos, _) in enumerate(found):
            out[pos] = prediction(model, scores, j)
        return out

    return info.context.loader(("ml.predict", kind, spec.name), lambda: DataLoader(load_fn=batch))


def prediction(model: Scorer, scores: Scores, j: int) -> Prediction:
    ref = ModelRef(name=model.name, version=model.version)
    if scores.values is not None:
        return ValuePrediction(value=round(float(scores.values[j]), 2), model=ref)
    assert scores.probabilities is not None and scores.labels is not None
    probs = [
        LabelProbability(label=c, probability=float(p))
        for c, p in zip(model.classes, scores.probabilities[j], strict=True)
    ]
    label = scores.labels[j]
    best = next((p.probability for p in probs if p.label == label), 0.0)
    return StatusPrediction(label=label, probability=best, probabilities=probs, model=ref)


async def _predict(info: Info, kind: str, spec: ModelSpec, key: int) -> Any:
    """The prediction for ``key``; the loader raises the key's error (field null + code)."""
    return await _prediction_loader(info, kind, spec).load(key)


async def order_predicted_status(root: HasId, info: Info) -> StatusPrediction | None:
    """The order's predicted final outcome, as of when it was placed."""
    result: StatusPrediction = await _predict(info, "order", ORDER_STATUS, int(root.id))
    return result


async def order_predicted_total(root: HasId, info: Info) -> ValuePrediction | None:
    """The order's total as estimated before checkout (not from its line prices)."""
    result: ValuePrediction = await _predict(info, "order", ORDER_VALUE, int(root.id))
    return result


async def ticket_predicted_status(root: HasId, info: Info) -> StatusPrediction | None:
    """Whether the ticket will end resolved, as of when it was opened."""
    result: StatusPrediction = await _predict(info, "ticket", SUPPORT_STATUS, int(root.id))
    return result


async def customer_expected_order_value(root: HasId, info: Info) -> ValuePrediction | None:
    """The value model on the customer's current features and their usual basket/channel."""
    result: ValuePrediction = await _predict(info, "customer", ORDER_VALUE, int(root.id))
    return result
