"""Resolvers of the prediction fields, batched per request.

Three dataloaders per object kind and request (the work itself is ``ml.batch``'s and
``ml.stored``'s, shared with the compiled read path):
- stored: one SQL statement reading the stored predictions (``ml.stored``) of every
  object whose prediction the query asks for; a row by the active version of a model is
  the answer, as on the compiled path (and, like there, not logged again);
- features: one SQL statement for every object whose prediction the query asks for
  (``ml.feature_table.fetch``: the feature table by id for orders and tickets, the
  feature query for customers; shared by predictedStatus and predictedTotal of orders);
- prediction, per model: the features of every requested object without a current
  stored prediction, scored in ONE onnxruntime run, and queued for ``ml.prediction_log``.

An object the warehouse has not loaded yet (a brand-new order) gets null and the error
NOT_IN_WAREHOUSE (the next ETL run loads it; what-if queries score any features). No active
model: null and MODEL_UNAVAILABLE. The rest of the query answers either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import strawberry
from strawberry.dataloader import DataLoader

from ml import batch, stored
from ml.batch import Features, Predicted
from ml.errors import ModelUnavailableError
from ml.scorer import Scorer
from ml.serving import store_for
from ml.specs import ORDER_STATUS, ORDER_VALUE, SUPPORT_STATUS, ModelSpec
from schema.context import Info
from schema.predictions.types import LabelProbability, ModelRef, StatusPrediction, ValuePrediction

Prediction = StatusPrediction | ValuePrediction


class HasId(Protocol):
    id: strawberry.ID


def scorer(info: Info, spec: ModelSpec) -> Scorer:
    return store_for(info.context.engine).get(spec.name)


def _features_loader(info: Info, kind: str) -> DataLoader[int, Features]:
    async def load(ids: list[int]) -> Sequence[Features]:
        found = await info.context.db.run(lambda conn: batch.load(conn, kind, ids))
        return [found] * len(ids)

    return info.context.loader(("ml.features", kind), lambda: DataLoader(load_fn=load))


def _stored_loader(info: Info, kind: str) -> DataLoader[int, dict[int, dict[str, Any]]]:
    async def load(ids: list[int]) -> Sequence[dict[int, dict[str, Any]]]:
        rows = await info.context.db.run(lambda conn: stored.read(conn, kind, ids))
        return [rows] * len(ids)

    return info.context.loader(("ml.stored", kind), lambda: DataLoader(load_fn=load))


def _prediction_loader(
    info: Info, kind: str, spec: ModelSpec
) -> DataLoader[int, Prediction | BaseException]:
    features = _features_loader(info, kind)

    async def load(ids: list[int]) -> Sequence[Prediction | BaseException]:
        try:
            model = scorer(info, spec)
        except ModelUnavailableError as exc:
            return [exc] * len(ids)
        scored: dict[int, Predicted] = {}
        if kind in stored.BY_KIND:
            for i, rows in zip(ids, await _stored_loader(info, kind).load_many(ids), strict=True):
                row = rows.get(i)
                hit = None if row is None else stored.predicted(row, spec.name, model.version)
                if hit is not None:
                    scored[i] = hit
        missing = [i for i in ids if i not in scored]
        # one Features per feature batch (normally one for all ids: one model run)
        groups: dict[int, tuple[Features, list[int]]] = {}
        if missing:
            for i, found in zip(missing, await features.load_many(missing), strict=True):
                groups.setdefault(id(found), (found, []))[1].append(i)
        ctx = info.context
        # in the event loop: batches then resolve in a fixed order, and so do their errors
        # (the compiled path reproduces that order)
        for found, group in groups.values():
            scored.update(batch.score(ctx.engine, model, kind, found, group, ctx.actor))
        return [as_type(scored[i]) if i in scored else batch.not_in_warehouse(kind, i) for i in ids]

    return info.context.loader(("ml.predict", kind, spec.name), lambda: DataLoader(load_fn=load))


def as_type(p: Predicted) -> Prediction:
    """The GraphQL object of a prediction."""
    ref = ModelRef(name=p.model, version=p.version)
    if p.value is not None:
        return ValuePrediction(value=p.value, model=ref)
    assert p.label is not None and p.probability is not None
    probs = [LabelProbability(label=c, probability=v) for c, v in p.probabilities]
    return StatusPrediction(
        label=p.label, probability=p.probability, probabilities=probs, model=ref
    )


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
