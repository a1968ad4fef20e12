"""The four model specs: what each predicts, from which features, with which algorithm.

A spec is the contract between the feature SQL (``ml/sql/*.sql`` select exactly these
columns, in this order, plus the key, the event time and the target), training (the
sklearn pipeline is built from the feature kinds), the ONNX graph (one input per feature,
named like it) and serving (what-if inputs are validated against it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FeatureKind(enum.StrEnum):
    NUMERIC = "numeric"  # float32 input; missing values imputed (median)
    CATEGORY = "category"  # string input; one-hot, unknown values ignored


class Task(enum.StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


@dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    description: str

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind.value}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: Task
    algorithm: str
    description: str
    features: tuple[Feature, ...]
    target: str
    # the SQL file under ml/sql/ that yields key, event_at, target and the features
    sql: str
    # for classifiers: the labels the model may predict (training checks the data has them)
    classes: tuple[str, ...] = ()
    # training uses events at least this old, so their outcome is final
    settle_days: int = 0
    # a target that looks this far past the event: training drops the rows whose window
    # reaches into the evaluation period (no leakage across the time split)
    horizon_days: int = 0
    # a risk model: the class whose probability a prediction's ``probability`` reports,
    # whatever the likeliest label (None: the label's own probability)
    reports: str | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def headline_metric(self) -> str:
        """The metric a new version must not be worse in to be activated."""
        return "macro_f1" if self.task is Task.CLASSIFICATION else "mae"

    @property
    def higher_is_better(self) -> bool:
        return self.task is Task.CLASSIFICATION

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


N, C = FeatureKind.NUMERIC, FeatureKind.CATEGORY

_CUSTOMER = (
    Feature("segment", C, "customer segment at the event time (SCD2 version)"),
    Feature("age_band", C, "age band at signup"),
    Feature("country", C, "customer country at the event time"),
    Feature("tenure_days", N, "days from signup to the event"),
    Feature("prior_orders", N, "orders the customer placed before the event"),
)

ORDER_STATUS = ModelSpec(
    name="order_status",
    task=Task.CLASSIFICATION,
    algorithm="RandomForestClassifier",
    description="An order's final outcome (delivered, cancelled, returned), as of its placing.",
    features=(
        *_CUSTOMER,
        Feature("prior_cancel_rate", N, "share of settled earlier orders that were cancelled"),
        Feature("prior_return_rate", N, "returns requested before the order per earlier line"),
        Feature("channel", C, "order channel"),
        Feature("payment_method", C, "payment method"),
        Feature("item_count", N, "units in the basket"),
        Feature("line_count", N, "lines in the basket"),
        Feature("basket_value", N, "gross basket value before discount"),
        Feature("discount_rate", N, "discount / gross"),
        Feature("main_category", C, "category holding most of the basket's units"),
        Feature("category_count", N, "distinct categories in the basket"),
        Feature("day_of_week", N, "ISO day of week of the order (1 = Monday)"),
        Feature("month", N, "month of the order (1-12)"),
    ),
    target="status",
    sql="orders.sql",
    classes=("cancelled", "delivered", "returned"),
    settle_days=60,
)

SUPPORT_STATUS = ModelSpec(
    name="support_status",
    task=Task.CLASSIFICATION,
    algorithm="LogisticRegression",
    description="Whether a support ticket ends resolved (resolved or closed).",
    features=(
        Feature("category", C, "ticket category"),
        Feature("priority", C, "ticket priority"),
        Feature("channel", C, "ticket channel"),
        Feature("segment", C, "customer segment at opening"),
        Feature("tenure_days", N, "days from signup to opening"),
        Feature("prior_orders", N, "orders the customer placed before opening"),
        Feature("prior_tickets", N, "tickets the customer opened before"),
        Feature("prior_resolved_rate", N, "share of earlier tickets resolved before opening"),
        Feature("order_value", N, "net value of the ticket's order (missing: no order)"),
    ),
    target="outcome",
    sql="tickets.sql",
    classes=("resolved", "unresolved"),
    settle_days=30,
)

ORDER_VALUE = ModelSpec(
    name="order_value",
    task=Task.REGRESSION,
    algorithm="RandomForestRegressor",
    description="An order's total (net) from the customer and context known before checkout.",
    features=(
        *_CUSTOMER,
        Feature("prior_avg_value", N, "mean net value of the customer's earlier orders"),
        Feature("channel", C, "order channel"),
        Feature("item_count", N, "units in the basket"),
        Feature("line_count", N, "lines in the basket"),
        Feature("main_category", C, "category holding most of the basket's units"),
        Feature("category_count", N, "distinct categories in the basket"),
        Feature("month", N, "month of the order (1-12)"),
    ),
    target="net",
    sql="orders.sql",
)

CHURN_RISK = ModelSpec(
    name="churn_risk",
    task=Task.CLASSIFICATION,
    algorithm="RandomForestClassifier",
    description=(
        "Whether a customer with at least one order places none in the next 90 days, "
        "from the warehouse as of a cut-off."
    ),
    features=(
        Feature("segment", C, "customer segment at the cut-off (SCD2 version)"),
        Feature("country", C, "customer country at the cut-off"),
        Feature("tenure_days", N, "days from signup to the cut-off"),
        Feature("recency_days", N, "days from the last order to the cut-off"),
        Feature("orders_total", N, "orders (not cancelled) before the cut-off"),
        Feature("orders_90d", N, "orders in the 90 days before the cut-off"),
        Feature("orders_365d", N, "orders in the 365 days before the cut-off"),
        Feature("revenue_365d", N, "net amount of those orders"),
        Feature("mean_gap_days", N, "mean days between orders (missing: one order)"),
        Feature("last_gap_days", N, "days between the last two orders (missing: one order)"),
    ),
    target="churn",
    sql="churn.sql",
    classes=("active", "churned"),
    settle_days=90,
    horizon_days=90,
    reports="churned",  # Customer.churnRisk.probability is the risk, also when "active"
)

SPECS: dict[str, ModelSpec] = {
    s.name: s for s in (ORDER_STATUS, SUPPORT_STATUS, ORDER_VALUE, CHURN_RISK)
}


def spec(name: str) -> ModelSpec:
    """The spec called ``name``; an unknown name is a BadUserInputError."""
    from db.errors import BadUserInputError

    found = SPECS.get(name)
    if found is None:
        raise BadUserInputError(
            f"unknown model {name!r}; expected one of {', '.join(SPECS)}",
            field="model",
            reason="unknown",
        )
    return found
