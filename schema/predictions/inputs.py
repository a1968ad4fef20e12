"""What-if inputs: the features of a hypothetical object, validated.

GraphQL itself refuses a missing required feature or a value of the wrong type
(``BAD_USER_INPUT``); ``validate`` adds the ranges. A category the model never saw is
accepted: the model's encoder ignores it and the prediction still comes back.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
import strawberry

from db.errors import BadUserInputError
from ml.specs import FeatureKind, ModelSpec


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
    prior_cancel_rate: float | None = strawberry.field(
        default=None, description="Null: no settled earlier orders."
    )
    prior_return_rate: float | None = strawberry.field(
        default=None, description="Null: no earlier lines."
    )


@strawberry.input(description="A support ticket as known when it is opened (support_status).")
class SupportStatusInput:
    category: str
    priority: str
    channel: str
    segment: str
    tenure_days: float
    prior_orders: int
    prior_tickets: int
    prior_resolved_rate: float | None = strawberry.field(
        default=None, description="Null: no earlier tickets."
    )
    order_value: float | None = strawberry.field(
        default=None, description="Null: the ticket is not about an order."
    )


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
    prior_avg_value: float | None = strawberry.field(
        default=None, description="Null: no earlier orders."
    )


_RANGES: dict[str, tuple[float, float]] = {
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


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def to_row(spec: ModelSpec, value: Any) -> dict[str, np.ndarray[Any, Any]]:
    """One-row model inputs from a what-if input object (BadUserInputError if out of range)."""
    fields = asdict(value)
    row: dict[str, np.ndarray[Any, Any]] = {}
    for f in spec.features:
        v = fields[f.name]
        if f.kind is FeatureKind.CATEGORY:
            row[f.name] = np.array([[str(v).strip()]], dtype=object)
            continue
        if v is not None:
            lo, hi = _RANGES.get(f.name, (-math.inf, math.inf))
            if not (math.isfinite(float(v)) and lo <= float(v) <= hi):
                raise BadUserInputError(
                    f"{_camel(f.name)} must be between {lo:g} and {hi:g}, got {v}",
                    field=f"input.{_camel(f.name)}",
                    reason="out_of_range",
                )
        row[f.name] = np.array([[np.nan if v is None else float(v)]], dtype=np.float32)
    return row
