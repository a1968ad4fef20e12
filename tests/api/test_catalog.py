"""The declarations agree with each other and with the database: tables and views match
the live catalogue; filter/orderBy inputs name only catalog fields that are filterable or
sortable; those columns are covered by an index."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from schema import catalog, inputs, tables

FILTERS = {
    "Customer": inputs.CustomerFilter,
    "Order": inputs.OrderFilter,
    "OrderItem": inputs.OrderItemFilter,
    "Product": inputs.ProductFilter,
    "Feedback": inputs.FeedbackFilter,
    "Return": inputs.ReturnFilter,
    "SupportTicket": inputs.SupportTicketFilter,
}
ORDER_BYS = {
    "Customer": inputs.CustomerOrderBy,
    "Order": inputs.OrderOrderBy,
    "Product": inputs.ProductOrderBy,
    "Feedback": inputs.FeedbackOrderBy,
    "Return": inputs.ReturnOrderBy,
    "SupportTicket": inputs.SupportTicketOrderBy,
}


@pytest.mark.parametrize("table", list(tables.metadata.tables.values()), ids=str)
def test_tables_match_the_database(api_engine: Engine, table: sa.Table) -> None:
    with api_engine.connect() as conn:
        live = dict(
            conn.execute(
                sa.text(
                    "SELECT column_name, is_nullable = 'YES' FROM information_schema.columns"
                    " WHERE table_schema = 'app' AND table_name = :t"
                ),
                {"t": table.name},
            ).all()
        )
    assert live, f"app.{table.name} does not exist"
    for col in table.columns:
        assert col.name in live, f"app.{table.name}.{col.name} does not exist"
        if not col.nullable and table.name != "customer_summary":
            assert live[col.name] is False, f"app.{table.name}.{col.name} is nullable"


@pytest.mark.parametrize("name", list(FILTERS))
def test_filter_inputs_name_filterable_fields(name: str) -> None:
    ent = catalog.entity(name)
    for spec in dataclasses.fields(FILTERS[name]):
        if spec.name in {"and_", "or_", "not_"} or spec.name in ent.relations:
            continue
        assert spec.name in ent.fields and ent.fields[spec.name].filterable, spec.name
    declared = {f.name for f in dataclasses.fields(FILTERS[name])}
    assert {f.name for f in ent.fields.values() if f.filterable} <= declared


@pytest.mark.parametrize("name", list(ORDER_BYS))
def test_order_by_inputs_name_sortable_fields(name: str) -> None:
    ent = catalog.entity(name)
    declared = {f.name for f in dataclasses.fields(ORDER_BYS[name])}
    assert declared == {f.name for f in ent.fields.values() if f.sortable}


def test_filterable_and_sortable_columns_are_indexed(api_engine: Engine) -> None:
    with api_engine.connect() as conn:
        indexes = conn.execute(
            sa.text("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'app'")
        ).all()
    missing = []
    for ent in catalog.ENTITIES.values():
        if ent.name == "OrderItem":  # only filtered inside Order.items: joined by primary key
            continue
        for f in ent.fields.values():
            if not (f.filterable or f.sortable):
                continue
            defs = [d for t, d in indexes if t == ent.table.name]
            if not any(
                f"({f.column}" in d or f" {f.column}" in d or f"({f.column})" in d for d in defs
            ):
                missing.append(f"{ent.name}.{f.name}")
    assert missing == [], missing
