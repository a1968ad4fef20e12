"""The request pipeline parses and validates a query text once (an LRU per process), and
still decides every request for its principal and variables."""

from __future__ import annotations

from graphql import OperationType
from sqlalchemy.engine import Engine

from api.auth import Principal
from api.pipeline import Operation, Pipeline, Policy
from schema.app import graphql_schema

ADMIN = Principal("admin", None, "t:admin", "t:admin")


def test_a_repeated_query_is_parsed_and_validated_once(api_engine: Engine) -> None:
    pipeline = Pipeline(graphql_schema(), api_engine, Policy())
    query = "query CacheProbe($n: Int) { customers(first: $n) { totalCount } }"
    kinds = (OperationType.QUERY,)
    first = pipeline.check(query, Operation(query, {"n": 1}), ADMIN, kinds)
    again = pipeline.check(query, Operation(query, {"n": 2}), ADMIN, kinds)
    assert again.document is first.document  # the same parse, validated once
    assert again.shape is first.shape  # measured once
    assert (first.cost, again.cost) == (1, 2)  # decided per request
