"""Builds the ``strawberry.Schema``: the catalog's generated types and query roots, the
resolver roots (cube, predictions, models), mutations, the subscription, scalars, parser
and validation caches and error codes. The request limits (tokens, depth, aliases,
expanded size, cost) are checked before the schema sees an operation, for every transport
(api/pipeline.py, api/rules.py)."""

from __future__ import annotations

from functools import cache
from typing import Any

import strawberry
from graphql import GraphQLSchema, build_schema
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from schema.cube.extension import CubeReports
from schema.cube.queries import CubeQueries
from schema.errors import ErrorCodes
from schema.mutations import Mutation
from schema.predictions import PredictionQueries
from schema.scalars import SCALAR_MAP
from schema.subscriptions import Subscription
from schema.types import EntityQueries


@strawberry.type
class Query(EntityQueries, CubeQueries, PredictionQueries):  # type: ignore[misc,valid-type]
    pass


class CdmsSchema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Errors are classified (and unexpected ones logged) by ``schema.errors``."""


schema = CdmsSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(scalar_map=SCALAR_MAP),
    extensions=[
        ErrorCodes,
        CubeReports,
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ],
)


@cache
def graphql_schema() -> GraphQLSchema:
    """graphql-core's view of the schema, built from its SDL (the public way to get one)."""
    return build_schema(schema.as_str())
