"""Builds the ``strawberry.Schema``: query roots of every feature, mutations, subscription,
scalars, limits (depth, aliases, tokens), parser/validation caches and error codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
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


@dataclass(frozen=True)
class QueryLimits:
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 5_000
    max_batch: int = 10


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


def build_schema(limits: QueryLimits | None = None) -> strawberry.Schema:
    limits = limits or QueryLimits()
    # The limiters mint a new rule class per instance, and the validation cache is keyed by
    # the rule classes: build them once so repeated queries hit the cache (~15 ms a request).
    limit_rules = [
        *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
    ]
    return CdmsSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(
            scalar_map=SCALAR_MAP, batching_config={"max_operations": limits.max_batch}
        ),
        extensions=[
            ErrorCodes,
            CubeExtensions,
            lambda: AddValidationRules(limit_rules),
            lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
            lambda: ParserCache(maxsize=256),
            lambda: ValidationCache(maxsize=256),
        ],
    )


schema = build_schema()
