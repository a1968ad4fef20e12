"""The catalog (schema/catalog.py) agrees with the database and with the generated schema:
every declared column exists with the declared nullability, relations join existing
columns, the generated filter / orderBy inputs name exactly the filterable / sortable
fields, and those columns are covered by an index."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from graphql import GraphQLInputObjectType, GraphQLObjectType
from sqlalchemy.engine import Engine

from schema.app import graphql_schema
from schema.catalog import ENTITIES, Entity, Shape


def _columns(engine: Engine, table: str) -> dict[str, bool]:
    schema_name, name = table.split(".")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                # a generated column reads as nullable; ours are computed from non-null ones
                "SELECT column_name, is_nullable = 'YES' AND is_generated = 'NEVER'"
                " FROM information_schema.columns"
                " WHERE table_schema = :s AND table_name = :t"
            ),
            {"s": schema_name, "t": name},
        )
        return {str(column): bool(nullable) for column, nullable in rows}


@pytest.mark.parametrize("entity", list(ENTITIES.values()), ids=lambda e: e.name)
def test_columns_and_relations_exist(api_engine: Engine, entity: Entity) -> None:
    live = _columns(api_engine, entity.table)
    assert live, f"{entity.table} does not exist"
    for col in entity.cols.values():
        assert col.column in live, f"{entity.table}.{col.column} does not exist"
        if not col.null and entity.name != "CustomerSummary":  # a view: nothing is NOT NULL
            assert live[col.column] is False, f"{entity.table}.{col.column} is nullable"
    for rel in entity.rels.values():
        assert rel.local in live, f"{entity.name}.{rel.name}: {rel.local}"
        target = ENTITIES[rel.target]
        assert rel.remote in _columns(api_engine, target.table), f"{entity.name}.{rel.name}"
        if rel.shape is Shape.ONE and not rel.null and rel.local != "id":
            assert live[rel.local] is False, f"{entity.name}.{rel.name} may be null"
    for key, _ in entity.order:
        assert key in live


@pytest.mark.parametrize("entity", list(ENTITIES.values()), ids=lambda e: e.name)
def test_generated_inputs_name_exactly_the_declared_fields(entity: Entity) -> None:
    gschema = graphql_schema()
    obj = gschema.get_type(entity.name)
    assert isinstance(obj, GraphQLObjectType)
    assert list(obj.fields) == [f.name for f in entity.fields]
    flt = gschema.get_type(f"{entity.name}Filter")
    filterable = [c.name for c in entity.cols.values() if c.filter]
    relations = [r.name for r in entity.rels.values() if r.filter]
    if isinstance(flt, GraphQLInputObjectType):
        assert list(flt.fields) == [*filterable, *relations, "and", "or", "not"]
    else:
        assert not filterable
    order = gschema.get_type(f"{entity.name}OrderBy")
    if isinstance(order, GraphQLInputObjectType):
        assert list(order.fields) == [c.name for c in entity.cols.values() if c.sort]


def test_filterable_and_sortable_columns_are_indexed(api_engine: Engine) -> None:
    with api_engine.connect() as conn:
        indexes = conn.execute(
            sa.text(
                "SELECT schemaname || '.' || tablename, indexdef FROM pg_indexes"
                " WHERE schemaname = 'app'"
            )
        ).all()
    missing = []
    for entity in ENTITIES.values():
        if entity.name == "OrderItem":  # only filtered inside Order.items: joined by its key
            continue
        defs = [d for t, d in indexes if t == entity.table]
        for col in entity.cols.values():
            if (col.filter or col.sort) and not any(
                f"({col.column}" in d or f" {col.column}" in d for d in defs
            ):
                missing.append(f"{entity.name}.{col.name}")
    assert missing == [], missing
