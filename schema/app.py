"""Builds the ``strawberry.Schema``: query roots of every feature, mutations, subscription,
scalars, parser/validation caches and error codes. The request limits (tokens, depth,
aliases, expanded size, cost) are checked before the schema sees an operation, for every
transport (api/pipeline.py, api/rules.py)."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from schema.cube.extension import CubeExtensions
from schema.cube.queries import CubeQueries
from schema.customers.mutations import CustomerMutations
from schema.customers.queries import CustomerQueries
from schema.errors import ErrorCodes
from schema.feedback.mutations import FeedbackMutations
from schema.feedback.queries import FeedbackQueries
from schema.orders.mutations import OrderMutations
from schema.orders.queries import OrderQueries
from schema.orders.subscriptions import OrderSubscriptions
from schema.predictions.queries import PredictionQueries
from schema.products.mutations import ProductMutations
from schema.products.queries import ProductQueries
from schema.returns.mutations import ReturnMutations
from schema.returns.queries import ReturnQueries
from schema.scalars import SCALAR_MAP
from schema.tickets.mutations import SupportTicketMutations
from schema.tickets.queries import SupportTicketQueries


@strawberry.type
class Query(
    CustomerQueries,
    OrderQueries,
    ProductQueries,
    SupportTicketQueries,
    ReturnQueries,
    FeedbackQueries,
    CubeQueries,
    PredictionQueries,
):
    pass


@strawberry.type
class Mutation(
    CustomerMutations,
    ProductMutations,
    OrderMutations,
    ReturnMutations,
    FeedbackMutations,
    SupportTicketMutations,
):
    pass


@strawberry.type
class Subscription(OrderSubscriptions):
    pass


class CdmsSchema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Errors are classified (and unexpected ones logged) by ``schema.errors``."""


def build_schema() -> strawberry.Schema:
    return CdmsSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=[
            ErrorCodes,
            CubeExtensions,
            lambda: ParserCache(maxsize=256),
            lambda: ValidationCache(maxsize=256),
        ],
    )


schema = build_schema()
