"""Typed filter inputs and their compilation to SQLAlchemy Core, orderings and cursors.

- Operator inputs (``IntFilter``, ``StringFilter``, ``OrderStatusEnumFilter`` ...) shared by
  the entity filters declared in :mod:`schema.inputs`.
- :func:`compile_filter` turns an entity filter (``and``/``or``/``not``, relation filters
  ``some``/``none`` as EXISTS) into one boolean expression over a given table alias.
- :func:`compile_order` turns an ``orderBy`` list into sort keys with a unique tie-breaker.
- :func:`encode_cursor` / :func:`decode_cursor` and :func:`keyset_condition` implement
  keyset pagination: a cursor holds the sort-key values of its row, so pages are stable
  under inserts (no offsets).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
import strawberry
from strawberry import UNSET

from db.errors import BadUserInputError
from schema import catalog
from schema.catalog import Entity, Field, Kind
from schema.enums import SortDirection

T = TypeVar("T")
E = TypeVar("E")


@strawberry.input(description="Comparison operators on an ordered value.")
class Filter(Generic[T]):
    eq: T | None = UNSET
    ne: T | None = UNSET
    gt: T | None = UNSET
    gte: T | None = UNSET
    lt: T | None = UNSET
    lte: T | None = UNSET
    in_: list[T] | None = strawberry.field(default=UNSET, name="in")
    not_in: list[T] | None = UNSET
    is_null: bool | None = UNSET


@strawberry.input(description="Comparison operators on an enum value.")
class EnumFilter(Generic[E]):
    eq: E | None = UNSET
    ne: E | None = UNSET
    in_: list[E] | None = strawberry.field(default=UNSET, name="in")
    not_in: list[E] | None = UNSET
    is_null: bool | None = UNSET


@strawberry.input(
    description="Operators on text; contains/startsWith are case-insensitive (% and _ literal)."
)
class StringFilter:
    eq: str | None = UNSET
    ne: str | None = UNSET
    in_: list[str] | None = strawberry.field(default=UNSET, name="in")
    not_in: list[str] | None = UNSET
    is_null: bool | None = UNSET
    contains: str | None = UNSET
    starts_with: str | None = UNSET


_COMBINATORS = {"and_", "or_", "not_"}


def parse_id(value: Any, what: str = "id") -> int:
    """A GraphQL ID (database id) as an int, or BAD_USER_INPUT."""
    try:
        n = int(str(value))
    except ValueError:
        raise BadUserInputError(f"{what} must be a numeric id, got {value!r}", field=what) from None
    if not -(2**63) <= n < 2**63:
        raise BadUserInputError(f"{what} is out of range: {value!r}", field=what)
    return n


def _bind_value(f: Field, value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if f.kind is Kind.ID:
        return parse_id(value, f.name)
    return value


def _given(value: Any) -> bool:
    return value is not UNSET and value is not None


def compile_ops(f: Field, col: sa.ColumnElement[Any], ops: Any) -> list[sa.ColumnElement[bool]]:
    out: list[sa.ColumnElement[bool]] = []
    for spec in dataclasses.fields(ops):
        value = getattr(ops, spec.name)
        if not _given(value):
            continue
        name = spec.name
        if name == "is_null":
            out.append(col.is_(None) if value else col.is_not(None))
        elif name in {"in_", "not_in"}:
            values = [_bind_value(f, v) for v in value]
            out.append(col.in_(values) if name == "in_" else col.not_in(values))
        elif name == "contains":
            out.append(col.icontains(value, autoescape=True))
        elif name == "starts_with":
            out.append(col.istartswith(value, autoescape=True))
        else:
            v = _bind_value(f, value)
            out.append(
                {
                    "eq": col == v,
                    "ne": col != v,
                    "gt": col > v,
                    "gte": col >= v,
                    "lt": col < v,
                    "lte": col <= v,
                }[name]
            )
    return out


def compile_filter(ent: Entity, table: sa.FromClause, flt: Any) -> sa.ColumnElement[bool]:
    """One boolean expression for ``flt`` (an entity filter input) over ``table``."""
    clauses: list[sa.ColumnElement[bool]] = []
    for spec in dataclasses.fields(flt):
        value = getattr(flt, spec.name)
        if not _given(value):
            continue
        name = spec.name
        if name == "and_":
            clauses.append(sa.and_(sa.true(), *(compile_filter(ent, table, v) for v in value)))
        elif name == "or_":
            clauses.append(sa.or_(sa.false(), *(compile_filter(ent, table, v) for v in value)))
        elif name == "not_":
            clauses.append(sa.not_(compile_filter(ent, table, value)))
        elif name in ent.relations:
            clauses.extend(_compile_relation(ent, table, ent.relations[name], value))
        else:
            f = ent.fields[name]
            clauses.extend(compile_ops(f, f.expr(table), value))
    if not clauses:
        return sa.true()
    return sa.and_(*clauses) if len(clauses) > 1 else clauses[0]


def _compile_relation(
    ent: Entity, table: sa.FromClause, rel: catalog.Relation, rf: Any
) -> list[sa.ColumnElement[bool]]:
    target = catalog.entity(rel.target)
    out: list[sa.ColumnElement[bool]] = []
    for quantifier in ("some", "none"):
        inner = getattr(rf, quantifier, UNSET)
        if not _given(inner):
            continue
        alias = target.table.alias()
        cond = sa.and_(
            alias.c[rel.remote] == table.c[rel.local], compile_filter(target, alias, inner)
        )
        exists = sa.exists().where(cond).correlate(table)
        out.append(exists if quantifier == "some" else ~exists)
    return out


# --- ordering ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SortKey:
    field: Field
    direction: SortDirection


def compile_order(ent: Entity, order_by: Sequence[Any] | None) -> tuple[SortKey, ...]:
    """``orderBy`` items (one field each) → sort keys ending in the unique tie-breaker."""
    keys: list[SortKey] = []
    if order_by:
        for item in order_by:
            chosen = [
                (spec.name, getattr(item, spec.name))
                for spec in dataclasses.fields(item)
                if _given(getattr(item, spec.name))
            ]
            if len(chosen) != 1:
                raise BadUserInputError(
                    "each orderBy item must name exactly one field, e.g. {orderedAt: DESC}",
                    field="orderBy",
                )
            name, direction = chosen[0]
            keys.append(SortKey(ent.fields[name], direction))
    else:
        keys = [SortKey(ent.fields[n], d) for n, d in ent.default_order]
    present = {k.field.name for k in keys}
    last = keys[-1].direction if keys else SortDirection.ASC
    for col in ent.unique:
        if col not in present:
            keys.append(SortKey(ent.fields.get(col) or Field(col, col, Kind.INT), last))
    return tuple(keys)


def order_clause(
    keys: Sequence[SortKey], table: sa.FromClause, *, reverse: bool = False
) -> list[sa.UnaryExpression[Any]]:
    out = []
    for k in keys:
        desc = (k.direction is SortDirection.DESC) != reverse
        col = k.field.expr(table)
        out.append(col.desc() if desc else col.asc())
    return out


def order_signature(keys: Sequence[SortKey]) -> str:
    return ",".join(f"{k.field.name}:{k.direction.value}" for k in keys)


# --- cursors ----------------------------------------------------------------------------


def _to_json(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _from_json(kind: Kind, value: Any) -> Any:
    if value is None:
        return None
    if kind is Kind.DATETIME:
        return dt.datetime.fromisoformat(value)
    if kind is Kind.DATE:
        return dt.date.fromisoformat(value)
    if kind is Kind.DECIMAL:
        return Decimal(value)
    if kind in {Kind.ID, Kind.INT}:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("not an integer")
        return value
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def encode_cursor(keys: Sequence[SortKey], row: Any) -> str:
    values = [_to_json(getattr(row, k.field.name)) for k in keys]
    raw = json.dumps([order_signature(keys), *values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(keys: Sequence[SortKey], cursor: str) -> list[Any]:
    """The sort-key values held by ``cursor``; BAD_USER_INPUT if it is not one of ours
    or was issued for another ordering."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if not isinstance(data, list) or len(data) != len(keys) + 1:
            raise ValueError("shape")
        if data[0] != order_signature(keys):
            raise BadUserInputError(
                "cursor was issued for another orderBy; restart pagination", field="cursor"
            )
        return [_from_json(k.field.kind, v) for k, v in zip(keys, data[1:], strict=True)]
    except (ValueError, binascii.Error, UnicodeDecodeError, TypeError):
        raise BadUserInputError("invalid cursor", field="cursor") from None


def keyset_condition(
    keys: Sequence[SortKey], table: sa.FromClause, values: Sequence[Any], *, before: bool
) -> sa.ColumnElement[bool]:
    """Rows strictly after (or, with ``before``, strictly before) the cursor's row."""
    cols = [k.field.expr(table) for k in keys]
    directions = {k.direction for k in keys}
    if len(directions) == 1:
        forward = (SortDirection.ASC in directions) != before
        lhs = sa.tuple_(*cols)
        rhs = sa.tuple_(*[sa.literal(v, type_=c.type) for c, v in zip(cols, values, strict=True)])
        return lhs > rhs if forward else lhs < rhs
    ors: list[sa.ColumnElement[bool]] = []
    for i, k in enumerate(keys):
        forward = (k.direction is SortDirection.ASC) != before
        eqs = [cols[j] == values[j] for j in range(i)]
        cmp = cols[i] > values[i] if forward else cols[i] < values[i]
        ors.append(sa.and_(*eqs, cmp))
    return sa.or_(*ors)
