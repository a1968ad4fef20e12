"""Builds the ``strawberry.Schema``: the catalog's generated types and query roots, the
resolver roots (cube, predictions, models), mutations, the subscription, scalars, parser
and validation caches and error codes. The request limits (tokens, depth, aliases,
expanded size, cost) are checked before the schema sees an operation, for every transport
(api/pipeline.py, api/rules.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import strawberry
from graphql import DocumentNode, GraphQLScalarType, GraphQLSchema, build_ast_schema, parse
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from schema.cube.extension import CubeReports
from schema.cube.queries import MODEL, CubeQueries
from schema.errors import ErrorCodes
from schema.mutations import Mutation
from schema.predictions import PredictionQueries
from schema.scalars import SCALAR_MAP, parse_date, parse_datetime, parse_money
from schema.subscriptions import OrderSubscriptions
from schema.types import EntityQueries
from schema.views import Hidden, hidden_fields, without
from schema.warehouse import WarehouseQueries, WarehouseSubscriptions


@strawberry.type
class Query(
    EntityQueries,  # type: ignore[misc]
    CubeQueries,
    PredictionQueries,
    WarehouseQueries,
):
    pass


@strawberry.type
class Subscription(OrderSubscriptions, WarehouseSubscriptions):
    pass


class CdmsSchema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Errors are classified (and unexpected ones logged) by ``schema.errors``."""


# documents Strawberry's own caches keep (operations that run through its resolvers): at
# most this many characters each, ~0.55 MB of tree; a longer one is parsed and validated
# each time (counted by entries only, 256 texts of 1 MB kept ~0.5 GB)
STRAWBERRY_CACHE_CHARS = 8_000


class _SmallParserCache(ParserCache):
    def on_parse(self) -> Iterator[None]:
        if len(self.execution_context.query or "") > STRAWBERRY_CACHE_CHARS:
            yield  # Strawberry parses it itself
            return
        yield from super().on_parse()


class _SmallValidationCache(ValidationCache):
    def on_validate(self) -> Iterator[None]:
        if len(self.execution_context.query or "") > STRAWBERRY_CACHE_CHARS:
            yield  # Strawberry validates it itself
            return
        yield from super().on_validate()


schema = CdmsSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(scalar_map=SCALAR_MAP),
    extensions=[
        ErrorCodes,
        CubeReports,
        lambda: _SmallParserCache(maxsize=128),
        lambda: _SmallValidationCache(maxsize=128),
    ],
)


_BUILDING = threading.Lock()  # one build of each schema, whichever thread asks first


def graphql_schema() -> GraphQLSchema:
    """graphql-core's view of the schema, built from its SDL (the public way to get one).
    Its custom scalars refuse what their parsers refuse (built from SDL, a scalar takes any
    value, an object where a Decimal goes included), and keep the value as sent: the
    executor converts it (schema.execute)."""
    with _BUILDING:
        return _built(frozenset())


@cache
def role_schema(role: str | None) -> GraphQLSchema:
    """The part of graphql_schema() ``role`` validates against: without the cube members
    it may not see (schema.views). The same object for roles that see the same members;
    graphql_schema() itself for those that see them all. Built on a role's first request
    (~0.2 s), once: the pipeline's checks run on several threads."""
    with _BUILDING:
        return _built(hidden_fields(MODEL, role))


@cache
def _sdl() -> DocumentNode:
    return parse(schema.as_str())


@cache
def _built(hidden: Hidden) -> GraphQLSchema:
    gschema = build_ast_schema(without(_sdl(), hidden))
    for name, parser in _PARSERS.items():
        scalar = gschema.type_map[name]
        assert isinstance(scalar, GraphQLScalarType)
        checked = _checked(parser)  # graphql-core 3.3 coerces through either name
        scalar.parse_value = checked  # type: ignore[method-assign,assignment]
        scalar.coerce_input_value = checked
    return gschema


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "Decimal": parse_money,
    "DateTime": parse_datetime,
    "Date": parse_date,
}


def _checked(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse_value(value: Any) -> Any:
        parse(value)  # raises: graphql-core reports the value as invalid (BAD_USER_INPUT)
        return value

    return parse_value
