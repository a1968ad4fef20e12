"""The loads, each declared in one place: target, natural key, write disposition, sources.

What a row of each table is, in terms of the ``app`` rows, is the view ``<table>_source``
(``db/sql/0011_freshness_pipeline.sql``): the load reads it, and so do online features
(``ml/online.py``) for objects not loaded yet. A step's other SQL lives in
``etl/sql/<step>.sql`` as named statements (``-- name: x``). Three dispositions exist:

``scd2``   a dimension: type-1 columns overwritten on every version, tracked columns close
           the current version and open a new one (``stage``/``type1``/``close``/``open``/
           ``new`` statements), then facts whose event falls in a new version are re-keyed.
``merge``  a fact: the natural keys changed or deleted in the window go to ``_keys``
           (``changed``), dim_date is extended to cover them (``dates``), the view's rows
           for those keys are upserted (``INSERT ... ON CONFLICT DO UPDATE ... WHERE IS
           DISTINCT FROM``), and facts whose source row is gone are deleted.
``snapshot`` a periodic snapshot derived from app (``etl.load.run_snapshot``): the series
           of the entities changed in the window are recomputed from the first day their
           changes can move (checked against the stored day before it, rebuilt whole when
           it differs) and rewritten where they differ, the others extended.
``monthly`` a monthly snapshot derived from the facts loaded before it
           (``etl.load.run_monthly``): the months a change in the window can move are
           recomputed, the earlier ones stay.

Every row written carries the run's id (``run_id``, lineage), and a fact step logs what it
touched in ``dw.etl_touched`` for the steps after the load (``etl/pipeline.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent / "sql"


class Disposition(Enum):
    SCD2 = "scd2"
    MERGE = "merge"
    SNAPSHOT = "snapshot"
    MONTHLY = "monthly"


@dataclass(frozen=True)
class DimRef:
    """A fact's reference to an SCD2 dimension."""

    dimension: str  # step name of the dimension, e.g. "dim_customer"
    key_column: str  # surrogate key column in the fact, e.g. "customer_key"
    id_column: str  # natural id column in the fact, e.g. "customer_id"
    nullable: bool = False  # the fact may have no such entity (feedback without product)


@dataclass(frozen=True)
class Step:
    name: str
    table: str  # qualified target table
    disposition: Disposition
    key: tuple[tuple[str, str], ...]  # natural key: (column, SQL type)
    source_table: str  # the app table whose rows become the target's rows
    source_key: tuple[str, ...]  # its key columns, in the order of ``key``
    # the app tables whose updated_at the ``changed``/``stage`` statement reads (the lag)
    change_sources: tuple[str, ...]
    scope_expr: str = ""  # merge: the ``dates`` statement's key expression, for the semi-join
    # dw.etl_source_delete.source values whose deletes/truncates concern this step
    delete_sources: tuple[str, ...] = ()
    event_column: str = ""  # merge: the event time that picks the dimension version
    dims: tuple[DimRef, ...] = ()

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.key)

    @property
    def view(self) -> str:
        """The view defining the table's rows over app (``dw.fact_orders_source``)."""
        return f"{self.table}_source"

    @property
    def reads(self) -> tuple[str, ...]:
        """What the step reads: its view and the app tables of its window (a monthly
        snapshot reads the warehouse instead of a view)."""
        if self.disposition is Disposition.MONTHLY:
            return ("dw.fact_orders", *self.change_sources)
        return (self.view, *self.change_sources)

    def source(self, scope: str) -> str:
        """The view's rows (alias ``s``) whose keys satisfy ``scope``: ``TRUE``, or
        :meth:`keys_scope`."""
        return f"SELECT * FROM {self.view} AS s WHERE {scope}"

    def keys_scope(self) -> str:
        """The view's rows whose key is in ``_keys``. A one-column key is an array (an
        init plan), which PostgreSQL pushes below the GROUP BY of ``fact_orders_source``
        to the index of app.orders; a semi-join would aggregate every order first."""
        if len(self.key) == 1:
            (k,) = self.key_columns
            return f"s.{k} = ANY(ARRAY(SELECT {k} FROM _keys))"
        cols = ", ".join(self.key_columns)
        return f"({', '.join(f's.{c}' for c in self.key_columns)}) IN (SELECT {cols} FROM _keys)"

    def sql(self) -> dict[str, str]:
        return load_sql(self.name)


_CUSTOMER = DimRef("dim_customer", "customer_key", "customer_id")
_PRODUCT = DimRef("dim_product", "product_key", "product_id")

STEPS: tuple[Step, ...] = (
    Step(
        name="dim_customer",
        table="dw.dim_customer",
        disposition=Disposition.SCD2,
        key=(("customer_id", "bigint"),),
        source_table="app.customers",
        source_key=("id",),
        change_sources=("app.customers",),
        delete_sources=("customers",),
    ),
    Step(
        name="dim_product",
        table="dw.dim_product",
        disposition=Disposition.SCD2,
        key=(("product_id", "bigint"),),
        source_table="app.products",
        source_key=("id",),
        change_sources=("app.products",),
        delete_sources=("products",),
    ),
    # Lines before orders: a line that names a product missing from dim_product fails the
    # run before any fact of that change is written.
    Step(
        name="fact_sales",
        table="dw.fact_sales",
        disposition=Disposition.MERGE,
        key=(("order_id", "bigint"), ("line_no", "integer")),
        source_table="app.order_items",
        source_key=("order_id", "line_no"),
        change_sources=("app.order_items", "app.orders"),
        scope_expr="(i.order_id, i.line_no)",
        delete_sources=("orders", "order_items"),
        event_column="ordered_at",
        dims=(_CUSTOMER, _PRODUCT),
    ),
    Step(
        name="fact_orders",
        table="dw.fact_orders",
        disposition=Disposition.MERGE,
        key=(("order_id", "bigint"),),
        source_table="app.orders",
        source_key=("id",),
        change_sources=("app.orders", "app.order_items"),
        scope_expr="o.id",
        delete_sources=("orders", "order_items"),
        event_column="ordered_at",
        dims=(_CUSTOMER,),
    ),
    Step(
        name="fact_returns",
        table="dw.fact_returns",
        disposition=Disposition.MERGE,
        key=(("return_id", "bigint"),),
        source_table="app.returns",
        source_key=("id",),
        change_sources=("app.returns", "app.order_items"),
        scope_expr="r.id",
        delete_sources=("returns",),
        event_column="requested_at",
        dims=(_CUSTOMER, _PRODUCT),
    ),
    Step(
        name="fact_feedback",
        table="dw.fact_feedback",
        disposition=Disposition.MERGE,
        key=(("feedback_id", "bigint"),),
        source_table="app.feedback",
        source_key=("id",),
        change_sources=("app.feedback",),
        scope_expr="f.id",
        delete_sources=("feedback",),
        event_column="created_at",
        dims=(_CUSTOMER, DimRef("dim_product", "product_key", "product_id", nullable=True)),
    ),
    Step(
        name="fact_support",
        table="dw.fact_support",
        disposition=Disposition.MERGE,
        key=(("ticket_id", "bigint"),),
        source_table="app.support_tickets",
        source_key=("id",),
        change_sources=("app.support_tickets",),
        scope_expr="t.id",
        delete_sources=("support_tickets",),
        event_column="opened_at",
        dims=(_CUSTOMER,),
    ),
    # Daily stock per product (semantic cube ``stock``): after the facts whose movements
    # it derives from.
    Step(
        name="fact_stock_daily",
        table="dw.fact_stock_daily",
        disposition=Disposition.SNAPSHOT,
        key=(("product_id", "bigint"), ("snapshot_date", "date")),
        source_table="app.products",
        source_key=("id",),
        change_sources=("app.products", "app.order_items", "app.orders", "app.returns"),
        # (a truncate of the movements' tables rebuilds every series: the facts are then
        # compared whole, without deltas, so the products that lost movements are unknown)
        delete_sources=("products", "orders", "order_items", "returns"),
    ),
    # RFM scores and segment per customer and month (cubes ``rfm``, ``segmentMigration``):
    # after fact_orders, which it reads, with the rules of semantic/models/rules/rfm.yml.
    Step(
        name="fact_customer_rfm",
        table="dw.fact_customer_rfm",
        disposition=Disposition.MONTHLY,
        key=(("customer_id", "bigint"), ("month", "date")),
        source_table="app.orders",
        source_key=("customer_id",),
        change_sources=("app.orders", "app.order_items"),
        delete_sources=("orders", "order_items"),
    ),
)

STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STEPS)
FACT_STEPS: tuple[Step, ...] = tuple(s for s in STEPS if s.disposition is Disposition.MERGE)
DIM_STEPS: tuple[Step, ...] = tuple(s for s in STEPS if s.disposition is Disposition.SCD2)


def facts_referencing(dimension: str) -> list[tuple[Step, DimRef]]:
    """The facts (and their reference) whose keys point into ``dimension``."""
    return [(s, d) for s in FACT_STEPS for d in s.dims if d.dimension == dimension]


_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def load_sql(step: str) -> dict[str, str]:
    """The named statements of ``etl/sql/<step>.sql`` (text after ``-- name: x`` lines)."""
    text = (SQL_DIR / f"{step}.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)
    out: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        out[name] = body.strip().rstrip(";")
    return out
