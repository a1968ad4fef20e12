"""Shared pieces of mutations: one write transaction that also reads the changed node.

Writes go through ``Context.run_write`` (``db.engine.transaction``: one transaction, the
request's session settings and row-level security, database errors mapped to
``CdmsError``). The changed row is read in the same transaction, before COMMIT, so a
committed write always has its payload (a failure after the commit cannot turn an order
that was placed into an error that invites a second one).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from strawberry import UNSET

from db.errors import BadUserInputError, NotFoundError
from schema.catalog import Entity
from schema.context import Info

N = TypeVar("N")


async def write_and_read(
    info: Info,
    write: Callable[[Connection], Any],
    ent: Entity,
    build: Callable[[Row[Any]], N],
) -> N:
    """Run ``write`` (returns the changed row's id) and read the row, in one transaction;
    return the node."""

    def work(conn: Connection) -> Row[Any]:
        changed_id = write(conn)
        t = ent.table.alias("t")
        row = conn.execute(sa.select(*ent.columns(t)).where(t.c.id == changed_id)).first()
        if row is None:  # pragma: no cover - written by this very transaction
            raise NotFoundError(
                f"{ent.name} {changed_id} not found", entity=ent.name, id=changed_id
            )
        return row

    return build(await info.context.run_write(work))


def given_values(obj: Any, columns: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fields of an input object that were given (not UNSET), as column → value."""
    out: dict[str, Any] = {}
    for spec in dataclasses.fields(obj):
        value = getattr(obj, spec.name)
        if value is UNSET:
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        out[(columns or {}).get(spec.name, spec.name)] = value
    return out


def int_arg(value: int | None) -> sa.ColumnElement[Any]:
    """A GraphQL ``Int`` as an ``integer`` argument of a procedure call. Left untyped,
    SQLAlchemy types the literal -2**31 (GraphQL's lowest Int) BIGINT, and no function
    with an ``integer`` parameter matches a ``bigint`` argument."""
    return sa.literal(value, sa.Integer)


def insert_returning_id(table: sa.Table, values: Mapping[str, Any]) -> Callable[[Connection], int]:
    def run(conn: Connection) -> int:
        new_id = conn.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar_one()
        return int(new_id)

    return run


def update_returning_id(
    table: sa.Table, entity: str, row_id: int, values: Mapping[str, Any]
) -> Callable[[Connection], int]:
    if not values:
        raise BadUserInputError("nothing to update: give at least one field", field="input")

    def run(conn: Connection) -> int:
        found = conn.execute(
            sa.update(table).where(table.c.id == row_id).values(**values).returning(table.c.id)
        ).scalar_one_or_none()
        if found is None:
            raise NotFoundError(f"{entity} {row_id} not found", entity=entity, id=row_id)
        return int(found)

    return run


def call_returning_id(fn: sa.Function[Any], *, composite: bool) -> Callable[[Connection], int]:
    """Call a procedure that returns an id (or, with ``composite``, a row with an id)."""

    def run(conn: Connection) -> int:
        stmt = sa.select(fn.table_valued("id").c.id) if composite else sa.select(fn)
        return int(conn.execute(stmt).scalar_one())

    return run
