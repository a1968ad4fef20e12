"""Predictions in the API: the prediction fields of orders, tickets and customers, the
what-if roots, and the model registry root.

A prediction field is read with its object, in the object's statement (schema/sql.py joins
the stored prediction of the active model version, ``ml.stored``). Where none is stored
(an object loaded since the last scoring, a model just activated, customers' current
features) the statement yields ``{"cdms:pending": id}`` and :func:`complete` computes those
after it: one feature statement per object kind (``ml.batch.load``), ONE model run per
model (``ml.batch.score_groups``, in worker threads), each prediction written where its
marker was, shaped by its selection. No active model: the field is null with
MODEL_UNAVAILABLE; an object without features: null with NOT_IN_WAREHOUSE.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, cast

import numpy as np
import strawberry
from graphql import GraphQLError
from starlette.concurrency import run_in_threadpool
from strawberry.scalars import JSON

from db.errors import BadUserInputError, CdmsError, camel
from ml import batch
from ml.batch import Predicted
from ml.errors import ModelUnavailableError
from ml.registry import list_versions
from ml.serving import store_for
from ml.specs import CHURN_RISK, ORDER_STATUS, ORDER_VALUE, SUPPORT_STATUS, FeatureKind, ModelSpec
from schema import plan as P
from schema.context import Context, F, Info, typed
from schema.sql import PENDING, Statement

ANALYSTS = frozenset({"admin", "analyst"})
PREDICTORS = frozenset({"admin", "analyst", "service"})

# --- types -------------------------------------------------------------------------------


class Failed:
    """A prediction that could not be made, left in the data for the field's resolver to
    raise (under Strawberry execution: the error gets the field's path)."""

    def __init__(self, error: CdmsError) -> None:
        self.error = error


def _keyed(name: str, returns: Any, doc: str | None = None) -> Any:
    """A field read from the statement's JSON (by response key) when the prediction came
    with its object, or from the attribute when a what-if query computed it."""

    def resolve(root: Any, info: strawberry.Info) -> Any:
        if isinstance(root, dict):
            value = root[info.path.key]
            if isinstance(value, Failed):
                raise value.error
            return value
        return getattr(root, name)

    resolve.__annotations__ = {**resolve.__annotations__, "return": returns}
    return strawberry.field(resolver=resolve, description=doc)


@strawberry.type(description="Which model version made a prediction.")
class ModelRef:
    name: str = _keyed("name", str)
    version: int = _keyed("version", int)


@strawberry.type(description="One class of a classifier and its probability.")
class LabelProbability:
    label: str = _keyed("label", str)
    probability: float = _keyed("probability", float)


@strawberry.type(description="A classifier's prediction: the likeliest label and every class.")
class StatusPrediction:
    label: str = _keyed("label", str)
    probability: float = _keyed(
        "probability",
        float,
        "Probability of `label` (a churn risk's: of `churned`, whatever the label).",
    )
    probabilities: list[LabelProbability] = _keyed("probabilities", list[LabelProbability])
    model: ModelRef = _keyed("model", ModelRef)


@strawberry.type(description="A regressor's prediction.")
class ValuePrediction:
    value: float = _keyed("value", float)
    model: ModelRef = _keyed("model", ModelRef)


@dataclass(frozen=True)
class _Ref:
    name: str
    version: int


@dataclass(frozen=True)
class _Class:
    label: str
    probability: float


@dataclass(frozen=True)
class _Computed:
    """A what-if prediction (StatusPrediction / ValuePrediction read its attributes)."""

    model: _Ref
    label: str | None = None
    probability: float | None = None
    probabilities: tuple[_Class, ...] = ()
    value: float | None = None


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


# --- what-if inputs ------------------------------------------------------------------------


def _nullable(description: str) -> Any:
    """A what-if input that may be null, and what its null means."""
    return strawberry.field(default=None, description=description)


@strawberry.input(description="An order as known when it is placed (order_status model).")
class OrderStatusInput:
    segment: str
    age_band: str
    country: str
    tenure_days: float
    prior_orders: int
    channel: str
    payment_method: str
    item_count: int
    line_count: int
    basket_value: float
    main_category: str
    category_count: int
    day_of_week: int = strawberry.field(description="ISO: 1 = Monday ... 7 = Sunday.")
    month: int
    discount_rate: float = 0.0
    prior_cancel_rate: float | None = _nullable("Null: no settled earlier orders.")
    prior_return_rate: float | None = _nullable("Null: no earlier lines.")


@strawberry.input(description="A support ticket as known when it is opened (support_status).")
class SupportStatusInput:
    category: str
    priority: str
    channel: str
    segment: str
    tenure_days: float
    prior_orders: int
    prior_tickets: int
    prior_resolved_rate: float | None = _nullable("Null: no earlier tickets.")
    order_value: float | None = _nullable("Null: the ticket is not about an order.")


@strawberry.input(description="An order's context before checkout (order_value model).")
class OrderValueInput:
    segment: str
    age_band: str
    country: str
    tenure_days: float
    prior_orders: int
    channel: str
    item_count: int
    line_count: int
    main_category: str
    category_count: int
    month: int
    prior_avg_value: float | None = _nullable("Null: no earlier orders.")


@strawberry.input(
    description="A customer as of a cut-off (churn_risk model: no order in the next 90 days)."
)
class ChurnRiskInput:
    segment: str
    country: str
    tenure_days: float
    recency_days: float = strawberry.field(description="Days since the last order.")
    orders_total: int = strawberry.field(description="Orders so far, not cancelled (>= 1).")
    orders_90d: int = strawberry.field(description="Orders in the last 90 days.")
    orders_365d: int = strawberry.field(description="Orders in the last 365 days.")
    revenue_365d: float = strawberry.field(description="Net amount of those orders.")
    mean_gap_days: float | None = _nullable("Mean days between orders; null: one order.")
    last_gap_days: float | None = _nullable("Days between the last two orders; null: one order.")


_RANGES: dict[str, tuple[float, float]] = {
    "recency_days": (0, 36_500),
    "orders_total": (1, 1e7),  # (churn_risk: a customer with no order is not scored)
    "orders_90d": (0, 1e7),
    "orders_365d": (0, 1e7),
    "revenue_365d": (0, 1e12),
    "mean_gap_days": (0, 36_500),
    "last_gap_days": (0, 36_500),
    "tenure_days": (0, 36_500),
    "prior_orders": (0, 1e7),
    "prior_tickets": (0, 1e7),
    "item_count": (1, 1e6),
    "line_count": (1, 1e5),
    "category_count": (1, 1e3),
    "basket_value": (0, 1e9),
    "order_value": (0, 1e9),
    "prior_avg_value": (0, 1e9),
    "discount_rate": (0, 1),
    "prior_cancel_rate": (0, 1),
    "prior_return_rate": (0, 10),
    "prior_resolved_rate": (0, 1),
    "day_of_week": (1, 7),
    "month": (1, 12),
}


# what-if categories that are an enum of the API (Segment, OrderChannel, PaymentMethod,
# TicketChannel, TicketCategory, TicketPriority): the enum's value (CONSUMER) or the stored
# spelling (consumer) are the same category
_ENUM_CATEGORIES = frozenset({"segment", "channel", "payment_method", "category", "priority"})


def to_row(spec: ModelSpec, value: Any) -> dict[str, np.ndarray[Any, Any]]:
    """One-row model inputs from a what-if input object (BAD_USER_INPUT if out of range);
    a category the model never saw is accepted (its encoder ignores it)."""
    fields = asdict(value)
    row: dict[str, np.ndarray[Any, Any]] = {}
    for f in spec.features:
        v = fields[f.name]
        if f.kind is FeatureKind.CATEGORY:
            text = str(v).strip()
            if f.name in _ENUM_CATEGORIES:
                text = text.lower()  # the API's CONSUMER is the rows' (and model's) consumer
            row[f.name] = np.array([[text]], dtype=object)
            continue
        if v is not None:
            lo, hi = _RANGES.get(f.name, (-math.inf, math.inf))
            if not (math.isfinite(float(v)) and lo <= float(v) <= hi):
                raise BadUserInputError(
                    f"{camel(f.name)} must be between {lo:g} and {hi:g}, got {v}",
                    field=f"input.{camel(f.name)}",
                    reason="out_of_range",
                )
        row[f.name] = np.array([[np.nan if v is None else float(v)]], dtype=np.float32)
    _counts_nest(fields)
    return row


# counts that contain each other (the smaller one's first): orders over windows, and an
# order's categories, lines (each at least one unit) and units
_NESTED = (
    ("orders_90d", "orders_365d"),
    ("orders_365d", "orders_total"),
    ("category_count", "line_count"),
    ("line_count", "item_count"),
)


def _counts_nest(fields: dict[str, Any]) -> None:
    """BAD_USER_INPUT for counts no customer or order can have: more orders in 90 days than
    in 365, or in 365 days than in all; more categories than lines, or lines than units."""
    for inner, outer in _NESTED:
        a, b = fields.get(inner), fields.get(outer)
        if a is not None and b is not None and a > b:
            raise BadUserInputError(
                f"{camel(inner)} ({a}) cannot exceed {camel(outer)} ({b})",
                field=f"input.{camel(inner)}",
                reason="inconsistent",
            )


def as_type(p: Predicted) -> Any:
    """A computed prediction as StatusPrediction / ValuePrediction read it."""
    probabilities = tuple(_Class(c, v) for c, v in p.probabilities)
    return _Computed(_Ref(p.model, p.version), p.label, p.probability, probabilities, p.value)


def _what_if(info: Info, spec: ModelSpec, value: object) -> Any:
    row = to_row(spec, value)  # validates before the model is even looked up
    model = store_for(info.context.engine).get(spec.name)
    found = batch.predicted(model, model.score(row), 0)
    [digest] = batch.digests(spec, row)
    batch.log(info.context.engine, "what_if", [(None, found, digest)], info.context.actor)
    return as_type(found)


def _root(description: str, roles: frozenset[str]) -> Callable[[F], F]:
    """A root field for ``roles`` (api/access.py reads the metadata)."""
    return typed(strawberry.field(description=description, metadata={"roles": roles}))


@strawberry.type
class PredictionQueries:
    @_root("Predict an order's final outcome from its features.", PREDICTORS)
    def predict_order_status(self, info: Info, input: OrderStatusInput) -> StatusPrediction:
        return cast(StatusPrediction, _what_if(info, ORDER_STATUS, input))

    @_root("Predict whether a support ticket ends resolved.", PREDICTORS)
    def predict_support_status(self, info: Info, input: SupportStatusInput) -> StatusPrediction:
        return cast(StatusPrediction, _what_if(info, SUPPORT_STATUS, input))

    @_root("Estimate an order's total before checkout.", PREDICTORS)
    def predict_order_value(self, info: Info, input: OrderValueInput) -> ValuePrediction:
        return cast(ValuePrediction, _what_if(info, ORDER_VALUE, input))

    @_root(
        "Probability that a customer places no order in the next 90 days (churn_risk).",
        PREDICTORS,
    )
    def predict_churn_risk(self, info: Info, input: ChurnRiskInput) -> StatusPrediction:
        return cast(StatusPrediction, _what_if(info, CHURN_RISK, input))

    @_root("Registered model versions, newest first per model.", ANALYSTS)
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


# --- computing what the statement left pending ----------------------------------------------


def _walk(value: Any, steps: tuple[str | None, ...], path: list[str | int], out: list[Any]) -> None:
    """Collect ``(holder, key, path)`` of every value at ``steps`` below ``value``."""
    if value is None:
        return
    head, rest = steps[0], steps[1:]
    if head is None:
        for i, item in enumerate(value or ()):
            _walk(item, rest, [*path, i], out)
        return
    if value.__class__ is not dict:
        return
    if not rest:
        out.append((value, head, [*path, head]))
        return
    _walk(value.get(head), rest, [*path, head], out)


async def complete(
    ctx: Context, stmt: Statement, data: dict[str, Any], *, markers: bool = False
) -> list[GraphQLError]:
    """Compute the predictions ``data`` (the statement's response, changed in place) holds
    as pending markers; returns the errors of those left null (or, with ``markers``,
    leaves a :class:`Failed` in their place)."""
    sites: list[tuple[dict[str, Any], str, list[str | int], P.Predict]] = []
    for site in stmt.predictions:
        found: list[Any] = []
        _walk(data, site.path, [], found)
        for holder, key, path in found:
            value = holder.get(key)
            if value.__class__ is dict and PENDING in value:
                sites.append((holder, key, path, site.predict))
    if not sites:
        return []
    store = store_for(ctx.engine)
    models: dict[tuple[str, str], list[int]] = defaultdict(list)
    for holder, key, _, sel in sites:
        models[(sel.prediction.kind, sel.prediction.model)].append(int(holder[key][PENDING]))
    unavailable: dict[str, CdmsError] = {}
    wanted: dict[str, list[int]] = defaultdict(list)
    for (kind, model), ids in models.items():
        try:
            store.get(model)
        except ModelUnavailableError as exc:
            unavailable[model] = exc
            continue
        wanted[kind].extend(ids)
    features: dict[str, batch.Features] = {}
    for kind, ids in wanted.items():
        # (in a mutation's payload, on its write transaction: the objects it wrote are
        # not committed yet)
        load = partial(batch.load, kind=kind, ids=[*dict.fromkeys(ids)])
        features[kind] = await ctx.read(load)
    by_model: dict[str, list[tuple[str, list[int]]]] = defaultdict(list)
    for (kind, model), ids in models.items():
        if model not in unavailable:
            by_model[model].append((kind, ids))
    runs = [
        run_in_threadpool(
            batch.score_groups,
            ctx.engine,
            store.get(model),
            [(kind, features[kind], ids) for kind, ids in groups],
            ctx.actor,
            ctx.after_commit,  # (a payload's: logged once its objects are committed)
        )
        for model, groups in by_model.items()
    ]
    scored: dict[tuple[str, str], dict[int, Predicted]] = {}
    for (model, groups), results in zip(by_model.items(), await asyncio.gather(*runs), strict=True):
        for (kind, _), result in zip(groups, results, strict=True):
            scored[(kind, model)] = result
    errors: list[GraphQLError] = []
    for holder, key, path, sel in sites:
        p = sel.prediction
        object_id = int(holder[key][PENDING])
        found_p = scored.get((p.kind, p.model), {}).get(object_id)
        if found_p is not None:
            holder[key] = render(sel.fields, found_p)
            continue
        error = unavailable.get(p.model) or batch.not_in_warehouse(p.kind, object_id)
        if markers:
            holder[key] = Failed(error)
        else:
            holder[key] = None
            errors.append(GraphQLError(error.message, path=path, original_error=error))
    return errors


def render(fields: tuple[P.PredSel, ...], p: Predicted) -> dict[str, Any]:
    """A computed prediction shaped by its selection."""
    values: dict[str, Any] = {
        "label": p.label,
        "probability": p.probability,
        "value": p.value,
        "name": p.model,
        "version": p.version,
    }
    out: dict[str, Any] = {}
    for f in fields:
        if f.name == "__typename":
            out[f.key] = f.typename
        elif f.name == "model":
            out[f.key] = render(f.fields, p)
        elif f.name == "probabilities":
            out[f.key] = [
                {
                    m.key: m.typename if m.name == "__typename" else (c if m.name == "label" else v)
                    for m in f.fields
                }
                for c, v in p.probabilities
            ]
        else:
            out[f.key] = values[f.name]
    return out
